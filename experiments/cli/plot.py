"""Draw the post's figures for a results folder.

    python scripts/plot.py RESULTS_DIR [--out DIR] [--quiet]

RESULTS_DIR is a grid's folder (``results/<grid>/``, run folders below it), a folder
with the synthetic problem's ``trajectories.csv``, or a root holding several of these.
Per metric: the full curves, the last epochs, the best epochs and the mean over seeds
with its 95% band. Figures go to ``<folder>/figures/`` (or ``--out``; ``--out/<folder
name>/`` when RESULTS_DIR holds several), as PNG and PDF; the synthetic problem's figure
is redrawn where ``run_grid.py`` drew it, ``<folder>/synthetic.png``, unless ``--out``
is given. The progress bar shows on a terminal only.

Exit status: 0 when written, 2 when the results cannot be read, 3 when a figures
folder cannot be written (a full disk, a read-only file system, no permission, a file
in the way: choose another with --out).
"""
import argparse
import os
import sys

from tqdm import tqdm

from experiments.results import faults
from experiments.analysis import figures, records


def _jobs(results_dir):
    """What to plot: ``[(kind, folder, runs or None)]``."""
    jobs = [("synthetic", folder, None) for folder in figures.synthetic_dirs(results_dir)]
    for folder, runs in records.group_grids(records.find_runs(results_dir)).items():
        jobs.append(("grid", folder, runs))
    return jobs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n")[-1])
    parser.add_argument("results_dir", metavar="RESULTS_DIR")
    parser.add_argument("--out", metavar="DIR", help="folder for the figures")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        if not os.path.isdir(args.results_dir):
            raise records.ResultsError(f"results folder {args.results_dir!r} does not exist")
        jobs = _jobs(args.results_dir)
        if not jobs:
            raise records.ResultsError(f"no runs (no */config.yaml) and no "
                                     f"{figures.SYNTHETIC_FILE} in {args.results_dir!r}")
        n_figures = sum(1 if kind == "synthetic" else len(figures.figure_names())
                        for kind, _, _ in jobs)
        written = []
        with tqdm(total=n_figures, desc="figures", unit="fig",
                  disable=True if args.quiet else None) as bar:  # on a terminal only
            for kind, folder, runs in jobs:
                if args.out is None:  # the synthetic figure: in place, not a second copy
                    out = folder if kind == "synthetic" else os.path.join(folder, "figures")
                elif len(jobs) == 1:
                    out = args.out
                else:
                    out = os.path.join(args.out, os.path.basename(os.path.normpath(folder)))
                with faults.writing_to(out, "--out"):
                    if kind == "synthetic":
                        written += figures.save_synthetic(folder, out)
                        bar.update()
                    else:
                        title = os.path.basename(os.path.normpath(folder))
                        written += figures.plot_grid(runs, out, title=title,
                                                     progress=bar.update)
    except records.ResultsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except faults.StorageError as e:
        print(f"error: {e}", file=sys.stderr)
        return faults.EXIT_STATUS
    if not args.quiet:
        for folder in sorted({os.path.dirname(p) for p in written}):
            print(f"wrote {sum(os.path.dirname(p) == folder for p in written)} files to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
