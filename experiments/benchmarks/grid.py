"""A grid's runs grouped (one compiled program per group) vs one after another.

For a config, times an epoch (training and validation) of N of its runs in three
ways, in one process so the ratios compare like with like: the grouped JAX engine for
each ``--group-sizes`` K (every group of the grid trained, compilation timed apart),
the single-run JAX engine one run after another, and the Theano engine one run after
another (when this Python has Theano, or in the interpreter ``--theano-python`` names,
as a subprocess). The one-after-another ways time
``--sequential`` runs and scale to N. Prints seconds per epoch of all N runs, the
ratio to the fastest way, the achieved GFLOP/s against the model's FLOP
count (:func:`experiments.models.costs`), the memory XLA plans for a group's
epoch program per run, and the projected wall time of the full grid.

    python scripts/benchmark.py grid --config configs/logreg.yaml --epochs 2 \\
        --theano-python .venvs/theano/bin/python
"""
import os
import time
from importlib.util import find_spec

import numpy as np

import jax

from experiments import models
from experiments.config import ConfigError
from experiments.config.overrides import load_with_overrides
from experiments.config.run_keys import RunConfig
from experiments.config.schedules import learning_rate
from experiments.config.runs import expand_grid
from experiments.data import DataError, DataRequest, epoch_batches
from experiments.config import run_keys
from experiments.engines import devices, get_engine
from experiments.engines.jax_group import GroupEngine
from experiments.training import grouping


def add_arguments(parser):
    parser.add_argument("--config", default="configs/logreg.yaml",
                        help="grid config (default %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="set a config key, as run_grid.py --set (repeatable), e.g. "
                             "precision=default")
    parser.add_argument("--data-dir", help="data folder (default: $AMSGRAD_DATA_DIR, ...)")
    parser.add_argument("--runs", type=int, help="the first N runs of the grid (default all)")
    parser.add_argument("--group-sizes", default="120,24",
                        help="comma-separated K to time; 'auto': as run_grid.py chooses by "
                             "default on this device (default %(default)s)")
    parser.add_argument("--layouts", default="default",
                        help="grouped engine layouts, comma-separated: default, shared, "
                             "per_run, loop (default %(default)s)")
    parser.add_argument("--epochs", type=int, default=2,
                        help="epochs timed per way, after one epoch that compiles "
                             "(default %(default)s)")
    parser.add_argument("--sequential", type=int, default=2,
                        help="runs timed one after another, scaled to N (default %(default)s)")
    parser.add_argument("--engines", default="jax,theano",
                        help="one-after-another engines (default %(default)s; theano only "
                             "where installed; '' for none)")
    parser.add_argument("--theano-python", metavar="PYTHON",
                        help="time the Theano engine in this interpreter (a Theano "
                             "environment), in a subprocess of this run")
    parser.add_argument("--train-subset", type=int, help="first N training examples")
    parser.add_argument("--val-subset", type=int, help="first N validation examples")


def _load(args):
    config = load_with_overrides(args.config, getattr(args, "set", ()))
    runs = expand_grid(config)[:args.runs]
    fixed = config.fixed
    request = DataRequest(fixed["dataset"], fixed["subtract_mean"],
                          args.train_subset or fixed["train_subset"],
                          args.val_subset or fixed["val_subset"])
    return config, runs, request.load(args.data_dir, quiet=True)


def _engine_args(run):
    """A run's model spec, optimizer and setup keys, as the trainer gives them."""
    config = RunConfig.from_run(run)
    return (models.get_model(config.model, config.dataset), config.optimizer(),
            config.setup_keys())


def _plans(seeds, epoch, dataset, batch_size, flip):
    return {s: epoch_batches(s, epoch, len(dataset.y_train), batch_size, flip) for s in seeds}


def _lr(run, epoch, n_epochs):
    return learning_rate(run["learning_rate"], epoch, n_epochs, run["lr_schedule"])


def time_grouped(runs, dataset, size, layout, epochs, flip):
    """``(seconds per epoch of all runs, compile s, bytes per run, groups, layout)``;
    bytes per run: the group's stacked arrays and XLA's temporaries for its epoch."""
    # 'auto' as the grid runner chooses it (run_grid's default), on this device
    room = dict(zip(("platform", "memory"), grouping.device_room())) if size == "auto" else {}
    groups = grouping.group_runs(runs, size, **room)
    total, compile_s, per_run = 0.0, 0.0, 0
    batch, val_batch = int(runs[0]["batch_size"]), int(runs[0]["val_batch_size"])
    for group in groups:
        spec, _, setup = _engine_args(group[0])
        engine = GroupEngine(spec, dataset, [_engine_args(r)[1] for r in group],
                             [r["seed"] for r in group], setup=setup,
                             layout=None if layout == "default" else layout)
        layout = engine.layout if layout == "default" else layout
        for epoch in range(epochs + 1):
            began = time.perf_counter()
            compiled = engine.compile_seconds
            engine.train_epoch(epoch, [_lr(r, epoch, r["epochs"]) for r in group],
                               [True] * len(group),
                               _plans(engine.seed_order, epoch, dataset, batch, flip))
            engine.evaluate(val_batch)
            spent = time.perf_counter() - began - (engine.compile_seconds - compiled)
            if epoch:
                total += spent / epochs
        compile_s += engine.compile_seconds
        stats = engine.epoch_program.memory_analysis()
        temp = getattr(stats, "temp_size_in_bytes", 0) if stats is not None else 0
        per_run = max(per_run, (temp + engine.carry_bytes()) / len(group))
    return total, compile_s, per_run, groups, layout


def time_sequential(engine_name, runs, dataset, epochs, flip):
    """``(seconds per epoch of one run, compile s)``, the mean over ``runs``."""
    Engine = get_engine(engine_name).load()
    per_epoch, compile_s = [], []
    for run in runs:
        began = time.perf_counter()
        spec, optimizer, setup = _engine_args(run)
        engine = Engine(spec, dataset, optimizer, run["seed"], setup=setup)
        times = []
        for epoch in range(epochs + 1):
            start = time.perf_counter()
            engine.train_epoch(epoch, _lr(run, epoch, run["epochs"]),
                               *_plans([run["seed"]], epoch, dataset,
                                       int(run["batch_size"]), flip)[run["seed"]])
            engine.evaluate(int(run["val_batch_size"]))
            times.append(time.perf_counter() - start)
        steady = float(np.mean(times[1:]))
        per_epoch.append(steady)
        compile_s.append(time.perf_counter() - began - sum(times) + times[0] - steady)
    return float(np.mean(per_epoch)), float(np.mean(compile_s))


def time_sequential_in(python, engine_name, args):
    """:func:`time_sequential` run by another interpreter (e.g. the Theano
    environment's), on the same config and data; returns its result."""
    import json
    import subprocess
    from pathlib import Path
    root = str(Path(__file__).resolve().parents[2])
    settings = {k: getattr(args, k) for k in ("config", "set", "data_dir", "runs",
                                              "train_subset", "val_subset", "epochs",
                                              "sequential")}
    code = ("import json, sys, types\n"
            "from experiments.benchmarks import grid\n"
            "a = types.SimpleNamespace(**json.loads(sys.argv[1]))\n"
            "config, runs, data = grid._load(a)\n"
            "flip = config.fixed['augmentation'] == 'flip'\n"
            "print(json.dumps(grid.time_sequential(sys.argv[2], runs[:a.sequential], data, "
            "a.epochs, flip)))\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    done = subprocess.run([python, "-c", code, json.dumps(settings), engine_name], env=env,
                          cwd=os.getcwd(), capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"benchmark grid: {engine_name} in {python} failed: {last}")
    return tuple(json.loads(done.stdout.strip().splitlines()[-1]))


def _duration(seconds):
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def _checked(args):
    """The group sizes and layouts asked for; SystemExit with one line if not sensible."""
    if args.epochs < 1 or args.sequential < 0 or (args.runs is not None and args.runs < 1):
        raise SystemExit("benchmark grid: --epochs and --runs must be positive, "
                         "--sequential >= 0")
    try:
        sizes = [grouping.parse_group_size(s) for s in args.group_sizes.split(",") if s]
    except ValueError as e:
        raise SystemExit(f"benchmark grid: {e}") from None
    layouts = [s.strip() for s in args.layouts.split(",") if s.strip()]
    for layout in layouts:
        if layout not in ("default", "shared", "per_run", "loop"):
            raise SystemExit(f"benchmark grid: unknown layout {layout!r}")
    return sizes, layouts


def _sequential_rows(args, runs, dataset, flip):
    """The rows of the one-run-after-another ways (each engine asked for)."""
    rows, n, timed = [], len(runs), runs[:args.sequential]
    for name in [e.strip() for e in args.engines.split(",") if e.strip()] if timed else ():
        _, optimizer, setup = _engine_args(timed[0])
        problem = get_engine(name).problem(setup, [optimizer.rule])
        if problem:  # the run's setup as it is, or not at all
            print(f"{name}: skipped: {problem}")
            continue
        if name == "theano" and args.theano_python:
            per_epoch, compile_s = time_sequential_in(args.theano_python, name, args)
        elif name == "theano" and find_spec("theano") is None:
            print("theano: not installed in this Python (see --theano-python); skipped")
            continue
        else:
            per_epoch, compile_s = time_sequential(name, timed, dataset, args.epochs, flip)
        rows.append((f"{name} one after another ({len(timed)} timed)", f"{n}x1",
                     compile_s * n, per_epoch * n, "-"))
    return rows


def _record(rows, flops, spec, precision, args):
    """Keep the fastest grouped JAX way's rate, and the Theano engine's, for the grid's
    cost line (:mod:`experiments.grid.cost`); say where."""
    ways = {}
    for name, shape, _, seconds, _ in rows:
        engine = "jax" if name.startswith("grouped") else name.split()[0]
        if engine in ("jax", "theano") and (engine not in ways or seconds < ways[engine][0]):
            ways[engine] = (seconds, int(shape.split("x")[1]))
    for engine, (seconds, k) in ways.items():
        device = devices.device_name(jax.devices()[0] if engine == "jax" else None)
        path = devices.record_rate(device, engine, spec.name, precision, flops / seconds,
                                   "benchmark.py grid", group_size=k, config=args.config)
    if ways:
        print(f"rates kept in {path} for the grids' cost lines: "
              + "; ".join(f"{e} {flops / s / 1e12:.3g} TFLOP/s" for e, (s, _) in ways.items()))


def _table(rows, flops, n, epochs):
    best = min(r[3] for r in rows if r[0].startswith("grouped"))
    fastest = min(r[3] for r in rows)  # a sequential way may win on a tiny grid
    print(f"\n{'way':34s}{'groups':>8s}{'compile s':>11s}{'s/epoch':>10s}{'GFLOP/s':>9s}"
          f"{'MiB/run':>9s}{'x fastest':>11s}")
    for name, shape, compile_s, seconds, memory in rows:
        print(f"{name:34s}{shape:>8s}{compile_s:11.1f}{seconds:10.2f}{flops / seconds / 1e9:9.1f}"
              f"{memory:>9s}{seconds / fastest:11.1f}")
    print(f"\nprojected full grid ({n} runs x {epochs} epochs): grouped {_duration(best * epochs)}"
          + "".join(f"; {r[0]} {_duration(r[3] * epochs)}" for r in rows
                    if not r[0].startswith("grouped")))


def run(args):
    sizes, layouts = _checked(args)
    try:
        config, runs, dataset = _load(args)
    except (ConfigError, DataError) as e:
        raise SystemExit(f"benchmark grid: {e}") from None
    spec = models.get_model(config.fixed["model"], config.fixed["dataset"])
    flip = config.fixed["augmentation"] == "flip"
    n, batch = len(runs), int(config.fixed["batch_size"])
    steps = -(-len(dataset.y_train) // batch)
    costs = models.costs(spec)
    flops = n * sum(models.epoch_flops(spec, len(dataset.y_train), len(dataset.y_val), batch,
                                       int(config.fixed["val_batch_size"])))
    device = jax.devices()[0]
    print(f"grid {config.name}: {n} runs, {args.epochs} epochs timed per way; "
          f"{len(dataset.y_train)} train / {len(dataset.y_val)} val examples, {steps} steps "
          f"of {batch}; {device.platform} ({device.device_kind}, {os.cpu_count()} CPUs); "
          f"jax {jax.__version__}")
    print(f"model {spec.name}: {costs['params']:,} parameters; per example "
          f"{costs['forward_flops'] / 1e6:.3f} MFLOP forward, {costs['train_flops'] / 1e6:.3f} "
          f"MFLOP training; an epoch of all runs is {flops / 1e9:.1f} GFLOP (validation in "
          f"whole batches)")
    rows = []
    for size in sizes:
        for layout in layouts:
            total, compile_s, per_run, groups, used = time_grouped(
                runs, dataset, size, layout, args.epochs, flip)
            shape = f"{len(groups)}x{max(len(g) for g in groups)}"
            rows.append((f"grouped K={size} ({used})", shape, compile_s, total,
                         f"{per_run / 2 ** 20:.1f}" if per_run else "-"))
    rows += _sequential_rows(args, runs, dataset, flip)
    _table(rows, flops, n, int(config.fixed["epochs"]))
    _record(rows, flops, spec, run_keys.setup_of(config.fixed).precision, args)
    return 0
