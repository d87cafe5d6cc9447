"""Write the Markdown report of a grid's results.

    python scripts/report.py RESULTS_DIR [--out FILE] [--figures DIR]

The report (default ``RESULTS_DIR/report.md``) holds, per setting, mean ± std over
seeds of the final and best validation metrics and the final training loss; the best
setting per optimizer; and the paired Adam-AMSGrad comparison per setting (t interval,
paired t-test, Wilcoxon, Holm-adjusted p). It links the figures of
``scripts/plot.py`` (default ``RESULTS_DIR/figures``). A results root holding several
grids gets one report per grid, in each grid's folder.

Exit status: 0 when written, 2 when the results cannot be read, 3 when the report's
folder cannot be written (a full disk, a read-only file system, no permission, a file
in the way: choose another with --out).
"""
import argparse
import os
import sys

from experiments.results import storage
from experiments.analysis import records, report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n")[-1])
    parser.add_argument("results_dir", metavar="RESULTS_DIR")
    parser.add_argument("--out", metavar="FILE", help="report file (default RESULTS_DIR/report.md)")
    parser.add_argument("--figures", metavar="DIR",
                        help="folder of the figures to link (default RESULTS_DIR/figures)")
    args = parser.parse_args(argv)
    try:
        grids = records.group_grids(records.load_grid(args.results_dir))
        if len(grids) > 1 and (args.out or args.figures):
            raise records.ResultsError(
                f"{args.results_dir!r} holds {len(grids)} grids; --out and --figures "
                "need a single grid's folder")
        for folder, runs in grids.items():
            out = args.out or os.path.join(folder, "report.md")
            figures = args.figures or os.path.join(folder, "figures")
            title = f"Adam vs AMSGrad: {os.path.basename(os.path.normpath(folder))}"
            with storage.writing_to(os.path.dirname(out) or ".", "--out"):
                report.write_report(runs, out, figures, title=title)
            print(f"wrote {out}")
    except storage.StorageError as e:
        print(f"error: {e}", file=sys.stderr)
        return storage.EXIT_STATUS
    except (records.ResultsError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
