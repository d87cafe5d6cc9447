"""Draw the post's figures for a results folder.

    python scripts/plot.py RESULTS_DIR [--out DIR] [--metrics M,...] [--formats F,...]
                           [--y-range panel|shared] [--quiet]
    python scripts/plot.py RESULTS_DIR --tensorboard [--out DIR]

RESULTS_DIR is a grid's folder (``results/<grid>/``, run folders below it), a folder
with the synthetic problem's ``trajectories.csv``, or a root holding several of these.
Per metric (``--metrics``, default loss, val_loss, acc, val_acc): the full curves, the
last epochs, the best epochs and the mean over seeds with its 95% band, each panel's
y-range fitted to its own runs (``--y-range shared``: one range for all panels). Figures
go to ``<folder>/figures/`` (or ``--out``; ``--out/<folder name>/`` when RESULTS_DIR holds
several), as PNG and PDF (``--formats``, e.g. png,pdf,svg); the synthetic problem's
figure is redrawn where ``run_grid.py`` drew it, ``<folder>/synthetic.png``, unless
``--out`` is given. The progress bar shows on a terminal only.

``--tensorboard`` writes TensorBoard event files of the runs instead of figures, from their
stored curves (:func:`experiments.analysis.event_files.export_tensorboard`; a grid trained
without ``--log tensorboard`` then shows in ``tensorboard --logdir RESULTS_DIR``, HPARAMS
too): into each run's folder, or ``--out/<grid>/<run id>/``. Needs the ``.[tensorboard]``
extra.

Exit status: 0 when written, 2 when the results cannot be read or an option is wrong
(one line naming it), 3 when a figures
folder cannot be written (a full disk, a read-only file system, no permission, a file
in the way: choose another with --out).
"""
import argparse
import os
import shlex
import sys

from tqdm import tqdm

from experiments.results import faults
from experiments.results.metrics import get_metric, metrics
from experiments.analysis import event_files, figures, records


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _metrics(text):
    """``val_acc,loss`` -> ``('val_acc', 'loss')``, each a metric of the curves."""
    chosen = tuple(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    for metric in chosen:
        try:
            get_metric(metric)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    if not chosen:
        raise argparse.ArgumentTypeError("no metric given")
    return chosen


def _formats(text):
    try:
        return figures.check_formats(text.split(","))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _program():
    """The name the user called: amsgrad-plot installed, plot.py from a checkout."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return name if name in ("amsgrad-plot", "plot.py") else "plot.py"


def _parser():
    parser = _Parser(prog=_program(), description=__doc__.split("\n\n")[0],
                     epilog=__doc__.split("\n\n")[-1])
    parser.add_argument("results_dir", metavar="RESULTS_DIR")
    parser.add_argument("--out", metavar="DIR", help="folder for the figures")
    parser.add_argument("--metrics", type=_metrics, metavar="M,...",
                        help="only these metrics' figures, comma-separated (default: "
                             f"{','.join(m.name for m in metrics())})")
    parser.add_argument("--formats", type=_formats, default=figures.FORMATS, metavar="F,...",
                        help="file formats, comma-separated, any matplotlib writes "
                             "(default: png,pdf)")
    parser.add_argument("--y-range", choices=figures.Y_RANGES, default="panel",
                        help="full and mean views: fit each panel's y-range to its runs "
                             "(panel, the default) or one range to all (shared)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--tensorboard", action="store_true",
                        help="write TensorBoard event files of the runs instead of figures "
                             "(into each run's folder, or --out/<grid>/<run id>/), for "
                             "tensorboard --logdir RESULTS_DIR")
    return parser


def _export(args):
    """``--tensorboard``: the event files, and how to look at them."""
    if args.metrics is not None or args.formats != figures.FORMATS or args.y_range != "panel":
        raise records.ResultsError("--metrics, --formats and --y-range are options of the "
                                   "figures, not of --tensorboard")
    with faults.writing_to(args.out or args.results_dir, "--out"):
        paths = event_files.export_tensorboard(args.results_dir, out_dir=args.out)
    logdir = shlex.quote(os.fspath(args.out or args.results_dir))
    print(f"wrote {len(paths)} TensorBoard event file{'s' if len(paths) != 1 else ''}; "
          f"to see them: tensorboard --logdir {logdir}")


def _jobs(results_dir):
    """What to plot: ``[(kind, folder, runs or None)]``."""
    jobs = [("synthetic", folder, None) for folder in figures.synthetic_dirs(results_dir)]
    for folder, runs in records.group_grids(records.find_runs(results_dir)).items():
        jobs.append(("grid", folder, runs))
    return jobs


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        if not os.path.isdir(args.results_dir):
            raise records.ResultsError(f"results folder {args.results_dir!r} does not exist")
        if args.tensorboard:
            _export(args)
            return 0
        jobs = _jobs(args.results_dir)
        if not jobs:
            raise records.ResultsError(f"no runs (no */config.yaml) and no "
                                     f"{figures.SYNTHETIC_FILE} in {args.results_dir!r}")
        n_figures = sum(1 if kind == "synthetic" else len(figures.figure_names(args.metrics))
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
                        written += figures.save_synthetic(folder, out, args.formats)
                        bar.update()
                    else:
                        title = os.path.basename(os.path.normpath(folder))
                        written += figures.plot_grid(
                            runs, out, title=title, progress=bar.update, metrics=args.metrics,
                            formats=args.formats, y_range=args.y_range)
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
