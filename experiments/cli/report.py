"""Write the report of a grid's results (report.md, report.csv and report.json), or of
two grids compared.

    python scripts/report.py RESULTS_DIR [--out DIR | --out FILE.md] [--figures DIR]
                             [--baseline RULE] [--candidates RULE,...] [--config FILE]
    python scripts/report.py GRID_DIR OTHER_GRID_DIR [--out DIR | --out FILE.md]

The synthetic problem's result gets a table of where each lane ends (final x, the mean over
the last tenth of the steps, the first step near the optimum). A grid's report (default in
RESULTS_DIR) starts with the key findings: whether the grid is
complete (the runs of its plan still missing, running or failed), each candidate's best
setting against the baseline's, and setting by setting how many settings favour each
rule after Holm's correction, and by how much. Then, per setting, mean ± std over seeds
of the final and best validation metrics and the final training loss; the best setting
per rule; for a candidate that takes the baseline's hyperparameters, the paired
comparison per setting (t interval, paired t-test, d_z, Wilcoxon, Holm-adjusted p); and
the provenance of the runs (commands, commits, library versions). report.csv holds one
row per test, report.json everything. The comparison: --baseline/--candidates, else the
``analysis:`` mapping of --config or of the config grid.yaml names, else Adam against
AMSGrad (and any other rule). --out is a folder (report.md, .csv, .json in it; a results
root holding several grids: one subfolder per grid) or a .md file (.csv and .json next to
it). It links the figures of ``scripts/plot.py`` (--figures; default figures/ next to the
report, else RESULTS_DIR/figures).

With two grid folders (a grid and a --set copy of it, or the same grid run by two versions
of the code), the settings both hold are compared, first minus second: paired by seed
where the seeds match, else unpaired (Welch's t-test); the report names what differs
between the grids (config keys, commits, library versions). It goes to
GRID_DIR/vs_<other grid>.md (.csv, .json), or --out.

Exit status: 0 when written, 2 when the results cannot be read or an option is wrong, 3
when the report's folder cannot be written (a full disk, a read-only file system, no
permission, a file in the way: choose another with --out).
"""
import argparse
import os
import sys

from experiments.results import faults
from experiments.analysis import (grids, grids_report, records, report, synthetic_figure,
                                  synthetic_report)
from experiments.analysis.stats import choose_comparison


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _program():
    """The name the user called: amsgrad-report installed, report.py from a checkout."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return name if name in ("amsgrad-report", "report.py") else "report.py"


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


def _parser():
    parser = _Parser(prog=_program(), description=__doc__.split("\n\n")[0],
                     epilog=__doc__.split("\n\n")[-1])
    parser.add_argument("results_dir", metavar="RESULTS_DIR")
    parser.add_argument("other_dir", metavar="OTHER_GRID_DIR", nargs="?",
                        help="a second grid's folder: compare the two grids")
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
    return parser


def _one_grid_runs(folder):
    """The runs of the one grid in ``folder``; ResultsError if it holds several."""
    found = records.group_grids(records.load_grid(folder))
    if len(found) > 1:
        raise records.ResultsError(f"{folder!r} holds {len(found)} grids; give two grid "
                                   "folders to compare (e.g. results/logreg results/other)")
    return next(iter(found.values()))


def _two_grids(args):
    """Compare the grids of RESULTS_DIR and OTHER_GRID_DIR; returns the paths written."""
    used = [flag for flag, value in (("--figures", args.figures), ("--baseline", args.baseline),
                                     ("--candidates", args.candidates),
                                     ("--config", args.config)) if value]
    if used:
        raise records.ResultsError(f"{', '.join(used)}: for one grid's report, not for two "
                                   "grids compared")
    result = grids.compare_grids(_one_grid_runs(args.results_dir),
                                 _one_grid_runs(args.other_dir))
    md = grids_report.comparison_paths(args.out or args.results_dir, result["names"])[0]
    with faults.writing_to(os.path.dirname(md) or ".", "--out"):
        return grids_report.write_grid_comparison(result, md)


def _synthetic(args):
    """The report of each synthetic result under RESULTS_DIR (report.md beside its
    trajectories, or in --out); returns the paths written."""
    folders, written = synthetic_figure.synthetic_dirs(args.results_dir), []
    for folder in folders:
        md = None  # beside the trajectories
        if args.out is not None:  # as a grid's: the .md, the folder, a subfolder each
            md = report.report_paths(args.out if len(folders) == 1 else os.path.join(
                args.out, os.path.basename(os.path.normpath(folder))))[0]
        with faults.writing_to(os.path.dirname(md or folder) or ".", "--out"):
            paths = synthetic_report.write_synthetic_report(folder, md)
        print(f"wrote {', '.join(paths)}")
        written += paths
    return written


def _each_grid(args):
    """The report of each grid (and synthetic result) under RESULTS_DIR; returns the
    paths written."""
    written = _synthetic(args)
    if written and not records.find_runs(args.results_dir):
        return written
    grids_found = records.group_grids(records.load_grid(args.results_dir))
    several = len(grids_found) > 1
    if several and ((args.out or "").endswith(".md") or args.figures):
        raise records.ResultsError(
            f"{args.results_dir!r} holds {len(grids_found)} grids; --out FILE.md and "
            "--figures need a single grid's folder (--out DIR gets a subfolder per grid)")
    for folder, runs in grids_found.items():
        baseline, candidates = _comparison(args, runs)
        md, figures = _targets(args, folder, several)
        title = " vs ".join(records.rule_label(u) for u in [baseline, *candidates]) \
            + f": {os.path.basename(os.path.normpath(folder))}"
        with faults.writing_to(os.path.dirname(md) or ".", "--out"):
            paths = report.write_report(runs, md, figures, title=title, baseline=baseline,
                                        candidates=candidates)
        print(f"wrote {', '.join(paths)}")
        written += paths
    return written


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        if args.out and os.path.splitext(args.out)[1] not in ("", ".md") \
                and not os.path.isdir(args.out):
            raise records.ResultsError(f"--out {args.out!r}: give a folder or a .md file")
        if args.other_dir is not None:
            print(f"wrote {', '.join(_two_grids(args))}")
        else:
            _each_grid(args)
    except faults.StorageError as e:
        print(f"error: {e}", file=sys.stderr)
        return faults.EXIT_STATUS
    except (records.ResultsError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
