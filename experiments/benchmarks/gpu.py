"""Grouped training speed on one accelerator, and the projected time of each full grid.

For each model and group size K (runs trained by one program, 24 runs per seed as in
the grids), times the compiled epoch loop of the grouped engine on random data of the
real shapes held on the device (``--steps`` steps after one call that compiles), and
the validation pass; prints images/s, achieved TFLOP/s against the model's FLOP count,
the memory XLA plans, and the projected wall time of the full grid (120 runs x 150
epochs of 391 steps, validation every epoch) trained in groups of K. Then the other
precisions (``tf32``: XLA's default for float32 on GPUs; ``highest``: full float32;
``bf16``: bfloat16 compute with float32 weights) at each model's best K, and the
best projection per model and for all four setups together.

Measurements run in order of importance and stop starting new ones after
``--budget`` seconds; ``--tiny`` runs everything small on a CPU (a CI check).

    scripts/gpu_check.sh                  # on the GPU machine
    python scripts/benchmark.py gpu --tiny
"""
import gc
import math
import time

import jax
import numpy as np

from experiments import models
from experiments.config.setup_keys import SetupKeys
from experiments.data import Dataset, epoch_batches
from experiments.engines.jax_group import GroupEngine, clear_programs
from experiments.optimizers import Optimizer

FULL = {"runs": 120, "epochs": 150, "train": 50_000, "val": 10_000, "batch": 128}
PRECISIONS = {"tf32": ("default", None), "highest": ("highest", None),
              "bf16": ("default", "bfloat16")}
TINY = dict(models="logreg,cifarnet", group_sizes="1,2", precisions="tf32,highest",
            steps=2, n_train=64, n_val=32, batch_size=8, val_batch_size=16, budget=120)


def add_arguments(parser):
    parser.add_argument("--models", default="vgg,small_vgg,cifarnet,logreg",
                        help="comma-separated, most important first (default %(default)s)")
    parser.add_argument("--group-sizes", default="1,8,24,120",
                        help="K to time at the first precision (default %(default)s)")
    parser.add_argument("--precisions", default="tf32,bf16,highest",
                        help="the first at every K, the others at each model's best K "
                             "(default %(default)s)")
    parser.add_argument("--layouts", default="",
                        help="other grouped-engine layouts to time at each model's best K, "
                             "e.g. 'loop' (default: none)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (default %(default)s)")
    parser.add_argument("--n-train", type=int, default=FULL["train"],
                        help="random training images on the device (default %(default)s)")
    parser.add_argument("--n-val", type=int, default=2048,
                        help="validation images timed, scaled to 10,000 (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=FULL["batch"])
    parser.add_argument("--val-batch-size", type=int, default=1024)
    parser.add_argument("--budget", type=float, default=420,
                        help="seconds after which no new measurement starts (default %(default)s)")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny sizes for a CPU check: " + ", ".join(
                            f"--{k.replace('_', '-')} {v}" for k, v in TINY.items()))


def _dataset(spec, args, cache):
    key = tuple(spec.input_shape)
    if key not in cache:
        rng = np.random.default_rng(0)
        cache.clear()  # one dataset on the device at a time
        cache[key] = Dataset(spec.dataset, rng.random((args.n_train,) + key, np.float32),
                             rng.integers(0, 10, args.n_train).astype(np.int32),
                             rng.random((args.n_val,) + key, np.float32),
                             rng.integers(0, 10, args.n_val).astype(np.int32),
                             flip=spec.dataset == "cifar10")
    return cache[key]


def _hparams(k):
    return Optimizer.of(("adam", "amsgrad")[k % 2], beta2=(0.99, 0.999)[k // 2 % 2],
                           bias_correction=k // 4 % 2 == 0)


def measure(model, size, precision, layout, args, data_cache):
    """One configuration: a dict of timings and projections, or ``{'error': ...}``."""
    spec = models.get_model(model)
    dataset = _dataset(spec, args, data_cache)
    seeds = [k // 24 for k in range(size)]  # 24 runs per seed, as in the grids
    matmul, dtype = PRECISIONS[precision]
    engine = None
    try:
        engine = GroupEngine(spec, dataset, [_hparams(k) for k in range(size)], seeds,
                             setup=SetupKeys(precision=matmul), compute_dtype=dtype, layout=layout)
        used = engine.layout
        plans = {}
        for s in engine.seed_order:
            indices, flips = epoch_batches(s, 0, args.n_train, args.batch_size, dataset.flip)
            plans[s] = (indices[:args.steps], None if flips is None else flips[:args.steps])
        lrs, active = [1e-4] * size, [True] * size
        began = time.perf_counter()
        engine.train_epoch(0, lrs, active, plans)  # compiles
        engine.evaluate(args.val_batch_size)
        first = time.perf_counter() - began
        began = time.perf_counter()
        losses, _ = engine.train_epoch(1, lrs, active, plans)
        step = (time.perf_counter() - began) / args.steps
        began = time.perf_counter()
        engine.evaluate(args.val_batch_size)
        val = (time.perf_counter() - began) * FULL["val"] / args.n_val
        stats = engine.epoch_program.memory_analysis()
        memory = (getattr(stats, "temp_size_in_bytes", 0) if stats is not None else 0) \
            + engine.carry_bytes()
    except Exception as error:  # out of memory above all: report and go on
        text = " ".join(str(error).split())
        oom = any(s in text for s in ("RESOURCE_EXHAUSTED", "Out of memory", "out of memory"))
        return {"error": "out of memory" if oom else f"{type(error).__name__}: {text[:160]}"}
    finally:
        del engine
        clear_programs()
        gc.collect()
    costs = models.costs(spec)
    steps_per_epoch = -(-FULL["train"] // FULL["batch"])
    epoch = step * steps_per_epoch * FULL["batch"] / args.batch_size + val
    groups = math.ceil(FULL["runs"] / size)
    return {"compile": first - step * args.steps, "step": step, "val": val,
            "images": size * args.batch_size / step,
            "tflops": size * args.batch_size * costs["train_flops"] / step / 1e12,
            "memory": memory, "epoch": epoch, "grid": epoch * FULL["epochs"] * groups,
            "finite": bool(np.isfinite(losses).all()), "layout": used}


def _duration(seconds):
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def _row(model, size, precision, layout, r):
    head = f"{model:10s}{size:>5d} {precision:8s}{r.get('layout', layout):8s}"
    if "error" in r:
        return f"{head}  {r['error']}"
    return (f"{head}{r['compile']:8.1f}{r['step'] * 1e3:10.2f}{r['images']:11.0f}"
            f"{r['tflops']:9.2f}{r['memory'] / 2 ** 30:9.2f}{r['epoch']:9.1f}"
            f"{_duration(r['grid']):>11s}{'' if r['finite'] else '  (loss not finite)'}")


def _checked(args):
    """The models, group sizes and precisions asked for; SystemExit with one line if not
    sensible."""
    if args.tiny:
        for key, value in TINY.items():
            setattr(args, key, value)
    try:
        names = [m for m in args.models.split(",") if m]
        for m in names:
            models.get_model(m)
        sizes = [int(k) for k in args.group_sizes.split(",") if k]
        precisions = [p for p in args.precisions.split(",") if p]
        unknown = [p for p in precisions if p not in PRECISIONS]
        if unknown or not precisions or not sizes or min(sizes) < 1 or args.steps < 1:
            raise ValueError(f"precisions from {', '.join(PRECISIONS)}, positive group sizes "
                             f"and steps (got {args.precisions!r}, {args.group_sizes!r})")
        if args.n_train < args.steps * args.batch_size:
            raise ValueError(f"--n-train {args.n_train} is less than --steps x --batch-size")
    except ValueError as e:
        raise SystemExit(f"benchmark gpu: {e}") from None
    return names, sizes, precisions


class _Session:
    """The measurements of one run of the check, in order of importance, none started
    after ``budget`` seconds."""

    def __init__(self, args):
        self.args, self.start = args, time.perf_counter()
        self.results, self.skipped, self.data_cache = {}, [], {}

    def attempt(self, model, size, precision, layout):
        if time.perf_counter() - self.start > self.args.budget:
            self.skipped.append(f"{model} K={size} {precision} {layout}")
            return None
        r = measure(model, size, precision, None if layout == "auto" else layout, self.args,
                    self.data_cache)
        self.results[model, size, precision, layout] = r
        print(_row(model, size, precision, layout, r), flush=True)
        return r

    def best_size(self, model):
        done = {k[1]: r for k, r in self.results.items() if k[0] == model and "grid" in r}
        return min(done, key=lambda k: done[k]["grid"]) if done else None

    def summary(self, names, precisions):
        """The best projected grid per model and precision, and all four setups'."""
        print("\nbest projected full grid per model (120 runs x 150 epochs):")
        total = {p: 0.0 for p in precisions}
        for model in names:
            line = []
            for p in precisions:
                mine = [(r["grid"], k[1]) for k, r in self.results.items()
                        if k[0] == model and k[2] == p and "grid" in r]
                if mine:
                    grid, size = min(mine)
                    line.append(f"{p} {_duration(grid)} (K={size})")
                    total[p] += grid
                else:
                    total[p] = math.nan
            print(f"  {model:10s}" + "; ".join(line or ["not measured"]))
        measured = [m for m in names if self.best_size(m) is not None]
        if set(measured) >= set(models.model_names()):
            print("  all four setups (480 runs): " + "; ".join(
                f"{p} {_duration(t)}" for p, t in total.items() if not math.isnan(t)))
        if self.skipped:
            print(f"not measured (budget or memory): {', '.join(self.skipped)}")
        print(f"wall time {time.perf_counter() - self.start:.0f} s")


def run(args):
    names, sizes, precisions = _checked(args)

    device = jax.devices()[0]
    print(f"grouped engine on {device.platform} ({device.device_kind}), jax {jax.__version__}; "
          f"{args.steps} timed steps of {args.batch_size}, random data on the device; grids "
          f"projected at {FULL['runs']} runs x {FULL['epochs']} epochs x "
          f"{-(-FULL['train'] // FULL['batch'])} steps, budget {args.budget:.0f} s", flush=True)
    print(f"{'model':10s}{'K':>5s} {'prec':8s}{'layout':8s}{'first s':>8s}{'ms/step':>10s}"
          f"{'images/s':>11s}{'TFLOP/s':>9s}{'GiB':>9s}{'s/epoch':>9s}{'full grid':>11s}",
          flush=True)
    session = _Session(args)
    for model in names:  # largest groups first: they decide the projections
        for size in sorted(sizes, reverse=True):
            session.attempt(model, size, precisions[0], "auto")
    for precision in precisions[1:]:
        for model in names:
            if session.best_size(model) is not None:
                session.attempt(model, session.best_size(model), precision, "auto")
    for layout in [s for s in args.layouts.split(",") if s]:
        for model in names:
            if session.best_size(model) is not None:
                session.attempt(model, session.best_size(model), precisions[0], layout)
    session.summary(names, precisions)
    return 0
