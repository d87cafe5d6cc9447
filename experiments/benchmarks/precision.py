"""What the faster precisions change: one setting trained at highest and emulated precisions.

For each model of ``--models`` (``configs/<model>.yaml``), the setting ``--only`` picks
(default Adam, lr 0.001, beta2 0.999, bias correction on), seeds 0..``--seeds``-1, and
each of ``--precisions``, trains ``--epochs`` epochs at a constant learning rate (the
grids' linear schedule is within 3% of it in their first 5 of 150 epochs) on the first
``--train-subset`` training and ``--val-subset`` validation images, with
``run_grid`` (``--set precision=... --set epochs=... ...``; results under ``--results``,
so a rerun trains only what is missing). Then, for the first and the last epoch: mean
and sd over seeds of the training loss and accuracy and of the validation loss and
accuracy, and each precision's difference from ``highest`` paired by seed (mean and
sd of the differences) beside the seed sd at ``highest``. ``--out`` also writes the
tables as Markdown.

    python scripts/benchmark.py precision --data-dir DATA    # the study of docs/benchmarks.md
"""
import os
import time

import numpy as np

from experiments.config import ConfigError
from experiments.config.overrides import load_with_overrides
from experiments.data import DataError
from experiments.grid.runner import GridOptions, run_grid
from experiments.results.store import RunStore

METRICS = ("loss", "acc", "val_loss", "val_acc")
ONLY = ("updater=adam", "lr=0.001", "b2=0.999", "bc=on")


def add_arguments(parser):
    parser.add_argument("--models", default="cifarnet,small_vgg",
                        help="configs/<model>.yaml for each (default %(default)s)")
    parser.add_argument("--precisions", default="highest,tf32_emulated,bf16_emulated",
                        help="the first is the reference (default %(default)s)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    parser.add_argument("--epochs", default="cifarnet=5,small_vgg=1",
                        help="epochs per model, model=N,... (default %(default)s)")
    parser.add_argument("--train-subset", default="cifarnet=8000,small_vgg=5000",
                        help="first N training images per model (default %(default)s)")
    parser.add_argument("--val-subset", type=int, default=5000,
                        help="first N validation images (default %(default)s)")
    parser.add_argument("--only", action="append", default=None, metavar="KEY=VALUE",
                        help=f"the setting, as run_grid.py --only (default {' '.join(ONLY)})")
    parser.add_argument("--results", default="results/precision_study",
                        help="results folder (default %(default)s)")
    parser.add_argument("--data-dir", help="data folder (default: $AMSGRAD_DATA_DIR, ...)")
    parser.add_argument("--out", help="also write the tables as Markdown to this file")


def _per_model(text, models, what):
    try:
        pairs = dict(item.split("=") for item in text.split(",") if item)
        values = {m: int(pairs[m]) for m in models}
    except (ValueError, KeyError):
        raise SystemExit(f"benchmark precision: --{what} {text!r}: expected model=N for "
                         f"each of {', '.join(models)}") from None
    if min(values.values()) < 1:
        raise SystemExit(f"benchmark precision: --{what}: numbers must be positive")
    return values


def _train(model, precision, args, epochs, subset):
    """Train one model at one precision; ``(grid folder, wall seconds)``."""
    items = [f"precision={precision}", f"epochs={epochs}", "lr_schedule=constant",
             f"train_subset={subset}", f"val_subset={args.val_subset}"]
    config = load_with_overrides(os.path.join("configs", f"{model}.yaml"), items)
    only = tuple(args.only or ONLY) + tuple(f"seed={s}" for s in range(args.seeds))
    print(f"\n{model} at {precision}: python scripts/run_grid.py configs/{model}.yaml "
          + " ".join(f"--set {i}" for i in items) + " " + " ".join(f"--only {o}" for o in only)
          + f" --group-size {args.seeds}", flush=True)
    began = time.perf_counter()
    summary = run_grid(config, GridOptions(results_dir=args.results, data_dir=args.data_dir,
                                           only=only, group_size=args.seeds, quiet=True))
    if summary["failed"]:
        raise SystemExit(f"benchmark precision: runs failed: {', '.join(summary['failed'])}")
    return summary["plan"], time.perf_counter() - began


def _curves(the_plan):
    """``{seed: curves rows}`` of a trained plan."""
    return {run["seed"]: RunStore(os.path.join(the_plan.grid_dir, run["run_id"])).read_curves()
            for run in the_plan.runs}


def _at(curves, epoch, metric):
    return np.array([curves[s][epoch][metric] for s in sorted(curves)])


def _tables(model, results, epochs):
    """Markdown lines of one model: means and sds, then differences from the first
    precision, at the first and the last epoch."""
    reference = next(iter(results))
    means = ["| model | epoch | precision | " + " | ".join(METRICS) + " | s/run-epoch |",
             "|---|---|---|" + "---|" * (len(METRICS) + 1)]
    diffs = ["| model | epoch | precision | " + " | ".join(f"d {m}" for m in METRICS) + " |",
             "|---|---|---|" + "---|" * len(METRICS)]
    for epoch in sorted({0, epochs - 1}):
        spread = {m: _at(results[reference][0], epoch, m).std(ddof=1) for m in METRICS}
        for precision, (curves, seconds) in results.items():
            cells = [f"{_at(curves, epoch, m).mean():.4f} ± {_at(curves, epoch, m).std(ddof=1):.4f}"
                     for m in METRICS]
            means.append(f"| {model} | {epoch + 1} | {precision} | " + " | ".join(cells)
                         + f" | {seconds:.0f} |")
            if precision == reference:
                diffs.append(f"| {model} | {epoch + 1} | seed sd at {reference} | "
                             + " | ".join(f"{spread[m]:.4f}" for m in METRICS) + " |")
                continue
            d = {m: _at(curves, epoch, m) - _at(results[reference][0], epoch, m) for m in METRICS}
            diffs.append(f"| {model} | {epoch + 1} | {precision} | " + " | ".join(
                f"{d[m].mean():+.4f} ± {d[m].std(ddof=1):.4f}" for m in METRICS) + " |")
    return means, diffs


def run(args):
    models = [m for m in args.models.split(",") if m]
    precisions = [p for p in args.precisions.split(",") if p]
    epochs = _per_model(args.epochs, models, "epochs")
    subsets = _per_model(args.train_subset, models, "train-subset")
    if args.seeds < 2:
        raise SystemExit("benchmark precision: --seeds must be at least 2 (a spread)")
    began, lines = time.perf_counter(), []
    for model in models:
        results = {}
        for precision in precisions:
            try:
                the_plan, seconds = _train(model, precision, args, epochs[model], subsets[model])
            except (ConfigError, DataError) as e:
                raise SystemExit(f"benchmark precision: {e}") from None
            per_run_epoch = seconds / (args.seeds * epochs[model])
            results[precision] = (_curves(the_plan), per_run_epoch)
        means, diffs = _tables(model, results, epochs[model])
        lines += ["", *means, "", *diffs]
    text = "\n".join(lines)
    print(text + f"\n\nwall time {time.perf_counter() - began:.0f} s")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text.lstrip("\n") + "\n")
    return 0
