"""Write the report of a grid's results: report.md, report.csv and report.json.

    python scripts/report.py RESULTS_DIR [--out DIR | --out FILE.md] [--figures DIR]
                             [--baseline RULE] [--candidates RULE,...] [--config FILE]

The report (default in RESULTS_DIR) holds, per setting, mean ± std over seeds of the
final and best validation metrics and the final training loss; the best setting per
rule; each candidate's best setting against the baseline's; and, for a candidate that
takes the baseline's hyperparameters, the paired comparison per setting (t interval,
paired t-test, d_z, Wilcoxon, Holm-adjusted p). report.csv holds one row per test,
report.json everything. The comparison: --baseline/--candidates, else the ``analysis:``
mapping of --config or of the config grid.yaml names, else Adam against AMSGrad (and any
other rule). --out is a folder (report.md, .csv, .json in it; a results root holding
several grids: one subfolder per grid) or a .md file (.csv and .json next to it). It
links the figures of ``scripts/plot.py`` (--figures; default figures/ next to the report,
else RESULTS_DIR/figures).

Exit status: 0 when written, 2 when the results cannot be read or an option is wrong, 3
when the report's folder cannot be written (a full disk, a read-only file system, no
permission, a file in the way: choose another with --out).
"""
import argparse
import os
import sys

from experiments.results import faults
from experiments.analysis import records, report
from experiments.analysis.stats import choose_comparison


def _comparison(args, runs):
    """(baseline, candidates) of the flags, else of the config's analysis: mapping."""
    named = report.read_analysis(runs, args.config)
    baseline = args.baseline or named.get("baseline")
    candidates = [c.strip() for c in args.candidates.split(",") if c.strip()] \
        if args.candidates else named.get("candidates")
    if args.baseline and not args.candidates and baseline in (candidates or ()):
        candidates = [c for c in candidates if c != baseline] or None
    updaters = {r.updater for r in runs}
    try:
        return choose_comparison(updaters, baseline, candidates)
    except ValueError as e:
        wrong = "--baseline" if args.baseline and args.baseline not in updaters else \
            "--candidates" if args.candidates else "--config"
        raise records.ResultsError(f"{wrong}: {e}") from None


def _targets(args, folder, several):
    """(report.md path, figures folder) of one grid."""
    if args.out is None:
        md = os.path.join(folder, "report.md")
    elif several:
        md = report.report_paths(os.path.join(args.out, os.path.basename(
            os.path.normpath(folder))))[0]
    else:
        md = report.report_paths(args.out)[0]
    near = os.path.join(os.path.dirname(md) or ".", "figures")
    figures = args.figures or (near if os.path.isdir(near) else os.path.join(folder, "figures"))
    return md, figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n")[-1])
    parser.add_argument("results_dir", metavar="RESULTS_DIR")
    parser.add_argument("--out", metavar="DIR|FILE.md",
                        help="folder for report.md/.csv/.json, or the report's .md file "
                             "(default RESULTS_DIR)")
    parser.add_argument("--figures", metavar="DIR",
                        help="folder of the figures to link (default figures/ next to the "
                             "report, else RESULTS_DIR/figures)")
    parser.add_argument("--baseline", metavar="RULE", help="the rule compared against")
    parser.add_argument("--candidates", metavar="RULE,...",
                        help="the rules compared with the baseline (comma-separated)")
    parser.add_argument("--config", metavar="FILE",
                        help="config whose analysis: mapping names the comparison "
                             "(default: the config grid.yaml names, if it is there)")
    args = parser.parse_args(argv)
    try:
        if args.out and os.path.splitext(args.out)[1] not in ("", ".md") \
                and not os.path.isdir(args.out):
            raise records.ResultsError(f"--out {args.out!r}: give a folder or a .md file")
        grids = records.group_grids(records.load_grid(args.results_dir))
        several = len(grids) > 1
        if several and ((args.out or "").endswith(".md") or args.figures):
            raise records.ResultsError(
                f"{args.results_dir!r} holds {len(grids)} grids; --out FILE.md and --figures "
                "need a single grid's folder (--out DIR gets a subfolder per grid)")
        for folder, runs in grids.items():
            baseline, candidates = _comparison(args, runs)
            md, figures = _targets(args, folder, several)
            title = " vs ".join(records.rule_label(u) for u in [baseline, *candidates]) \
                + f": {os.path.basename(os.path.normpath(folder))}"
            with faults.writing_to(os.path.dirname(md) or ".", "--out"):
                paths = report.write_report(runs, md, figures, title=title,
                                            baseline=baseline, candidates=candidates)
            print(f"wrote {', '.join(paths)}")
    except faults.StorageError as e:
        print(f"error: {e}", file=sys.stderr)
        return faults.EXIT_STATUS
    except (records.ResultsError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
