"""Grouped training speed on one accelerator, and the projected time of each full grid.

Three phases, in order of importance (``--phases``), on random data of the real shapes
held on the device:

1. ``auto``: for each model, the groups ``--group-size auto`` makes of the model's grid
   (``configs/<model>.yaml``) from this device's free memory, and the largest of them
   timed: whether it fits, and the memory XLA plans against auto's estimate.
2. ``epoch``: one full epoch (391 steps, 10,000 validation images) of
   ``--epoch-model`` at auto's group size, at ``highest`` (full float32, the configs')
   and ``tf32`` (XLA's float32 default on a GPU: TF32 where the GPU has it).
3. ``sweep``: for each model and group size K (runs trained by one program, 24 runs per
   seed as in the grids), ``--steps`` steps of the compiled epoch loop after one call
   that compiles, and the validation pass; then the other precisions (``tf32``;
   ``highest``; ``bf16``: bfloat16 compute with float32 weights) at each model's best K.

Each measurement prints images/s, achieved TFLOP/s against the model's FLOP count, the
memory XLA plans, and the projected wall time of the full grid (120 runs x 150 epochs of
391 steps, validation every epoch) in groups of K; then the best projection per model
and for all four setups. The best rate of each model at ``tf32`` and ``highest`` is kept
(:mod:`experiments.engines.devices`, as precisions ``default`` and ``highest``) for the
grids' cost lines. ``--markdown`` writes the rows as docs/benchmarks.md's table takes them.

Time: no measurement starts after ``--budget`` seconds, nor one whose time predicted
beforehand (its FLOPs at :data:`EFFICIENCY` of the device's peak at its precision, plus
the longest compilation of that model so far) would end past it; SIGINT (what
``scripts/gpu_check.sh``'s hard time limit sends) stops the check, and what was measured
is still summarised. ``--tiny`` runs everything small on a CPU (a CI check).

    scripts/gpu_check.sh                  # on the GPU machine
    python scripts/benchmark.py gpu --tiny
"""
import gc
import math
import time
from pathlib import Path

import jax
import numpy as np

from experiments import models
from experiments.config import load_config
from experiments.config.runs import expand_grid
from experiments.config.setup_keys import SetupKeys
from experiments.data import Dataset, epoch_batches
from experiments.engines import devices, run_bytes
from experiments.engines.jax_group import GroupEngine, clear_programs
from experiments.optimizers import Optimizer
from experiments.training import grouping

FULL = {"runs": 120, "epochs": 150, "train": 50_000, "val": 10_000, "batch": 128}
PRECISIONS = {"tf32": ("default", None), "highest": ("highest", None),
              "bf16": ("default", "bfloat16")}
#: This check's precisions as a run's ``precision`` key names them (bf16 here is
#: bfloat16 compute, no setup's), and the units of the device's peak they run on.
SETUP_NAME = {"tf32": "default", "highest": "highest"}
PEAK_AS = {"tf32": "default", "highest": "highest", "bf16": "bf16"}
EFFICIENCY = 0.3  # the share of the peak a measurement is assumed to reach, beforehand
TINY = dict(models="logreg,cifarnet", group_sizes="1,2", precisions="tf32,highest",
            steps=2, n_train=64, n_val=32, batch_size=8, val_batch_size=16, budget=120)
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def add_arguments(parser):
    parser.add_argument("--models", default="vgg,small_vgg,cifarnet,logreg",
                        help="comma-separated, most important first (default %(default)s)")
    parser.add_argument("--phases", default="auto,epoch,sweep",
                        help="which phases, comma-separated (default %(default)s)")
    parser.add_argument("--epoch-model", default="cifarnet",
                        help="the model of the epoch phase (default %(default)s)")
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
    parser.add_argument("--markdown", help="also write the rows as a Markdown table here")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny sizes for a CPU check: " + ", ".join(
                            f"--{k.replace('_', '-')} {v}" for k, v in TINY.items()))


def _dataset(spec, n_train, n_val, cache):
    key = (tuple(spec.input_shape), n_train, n_val)
    if key not in cache:
        rng = np.random.default_rng(0)
        cache.clear()  # one dataset in memory at a time
        shape = tuple(spec.input_shape)
        cache[key] = Dataset(spec.dataset, rng.random((n_train,) + shape, np.float32),
                             rng.integers(0, 10, n_train).astype(np.int32),
                             rng.random((n_val,) + shape, np.float32),
                             rng.integers(0, 10, n_val).astype(np.int32),
                             flip=spec.dataset == "cifar10")
    return cache[key]


def _hparams(k):
    return Optimizer.of(("adam", "amsgrad")[k % 2], beta2=(0.99, 0.999)[k // 2 % 2],
                           bias_correction=k // 4 % 2 == 0)


def _timed(engine, dataset, size, steps, args):
    """``(seconds a step, seconds of the validation pass, losses)`` after a first call
    that compiles; ``(first call seconds)`` as the fourth."""
    plans = {}
    for s in engine.seed_order:
        indices, flips = epoch_batches(s, 0, len(dataset.y_train), args.batch_size, dataset.flip)
        plans[s] = (indices[:steps], None if flips is None else flips[:steps])
    lrs, active = [1e-4] * size, [True] * size
    began = time.perf_counter()
    engine.train_epoch(0, lrs, active, plans)  # compiles
    engine.evaluate(args.val_batch_size)
    first = time.perf_counter() - began
    began = time.perf_counter()
    losses, _ = engine.train_epoch(1, lrs, active, plans)
    step = (time.perf_counter() - began) / steps
    began = time.perf_counter()
    engine.evaluate(args.val_batch_size)
    return step, time.perf_counter() - began, losses, first


def measure(model, size, precision, layout, args, data_cache, steps=None, n_val=None):
    """One configuration: a dict of timings and projections, or ``{'error': ...}``;
    ``steps`` and ``n_val`` (default ``--steps``, ``--n-val``): what is timed."""
    steps, n_val = steps or args.steps, n_val or args.n_val
    spec = models.get_model(model)
    dataset = _dataset(spec, args.n_train, n_val, data_cache)
    seeds = [k // 24 for k in range(size)]  # 24 runs per seed, as in the grids
    matmul, dtype = PRECISIONS[precision]
    engine = None
    try:
        engine = GroupEngine(spec, dataset, [_hparams(k) for k in range(size)], seeds,
                             setup=SetupKeys(precision=matmul), compute_dtype=dtype, layout=layout)
        used = engine.layout
        step, val, losses, first = _timed(engine, dataset, size, steps, args)
        val *= FULL["val"] / n_val
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
    return {"compile": first - step * steps, "step": step, "val": val,
            "images": size * args.batch_size / step,
            "tflops": size * args.batch_size * costs["train_flops"] / step / 1e12,
            "memory": memory, "epoch": epoch, "grid": epoch * FULL["epochs"] * groups,
            "finite": bool(np.isfinite(losses).all()), "layout": used, "steps": steps}


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
    """The models, group sizes, precisions and phases asked for; SystemExit with one
    line if not sensible."""
    if args.tiny:
        for key, value in TINY.items():
            setattr(args, key, value)
    try:
        names = [m for m in args.models.split(",") if m]
        for m in names + ([args.epoch_model] if args.epoch_model else []):
            models.get_model(m)
        sizes = [int(k) for k in args.group_sizes.split(",") if k]
        precisions = [p for p in args.precisions.split(",") if p]
        unknown = [p for p in precisions if p not in PRECISIONS]
        if unknown or not precisions or not sizes or min(sizes) < 1 or args.steps < 1:
            raise ValueError(f"precisions from {', '.join(PRECISIONS)}, positive group sizes "
                             f"and steps (got {args.precisions!r}, {args.group_sizes!r})")
        phases = [p for p in args.phases.split(",") if p]
        if set(phases) - {"auto", "epoch", "sweep"}:
            raise ValueError(f"--phases from auto, epoch, sweep (got {args.phases!r})")
        if args.n_train < args.steps * args.batch_size:
            raise ValueError(f"--n-train {args.n_train} is less than --steps x --batch-size")
    except ValueError as e:
        raise SystemExit(f"benchmark gpu: {e}") from None
    return names, sizes, precisions, phases


class _Session:
    """The measurements of one run of the check, in order of importance, none started
    after ``budget`` seconds or predicted to end after it."""

    def __init__(self, args):
        self.args, self.start = args, time.perf_counter()
        self.results, self.skipped, self.data_cache, self.compiles = {}, [], {}, {}
        self.device = jax.devices()[0]
        self.device_name = devices.device_name(self.device)
        self.notes = []

    def predicted(self, model, size, precision, steps, n_val):
        """Seconds the measurement should take at most: its FLOPs at :data:`EFFICIENCY`
        of the device's peak (0 where no peak is known), twice (the first call and the
        timed one), plus the model's longest compilation so far."""
        top = devices.peak(self.device_name, PEAK_AS[precision])
        c = models.costs(models.get_model(model))
        flops = size * (steps * self.args.batch_size * c["train_flops"]
                        + n_val * c["forward_flops"])
        work = 2 * flops / (EFFICIENCY * top[0]) if top else 0.0
        return work + self.compiles.get(model, 0)

    def attempt(self, model, size, precision, layout, steps=None, n_val=None, tag=None):
        steps, n_val = steps or self.args.steps, n_val or self.args.n_val
        elapsed = time.perf_counter() - self.start
        ahead = self.predicted(model, size, precision, steps, n_val)
        if elapsed + ahead > self.args.budget:
            self.skipped.append(f"{model} K={size} {precision} {tag or layout}")
            return None
        r = measure(model, size, precision, None if layout == "auto" else layout, self.args,
                    self.data_cache, steps, n_val)
        if "compile" in r:
            self.compiles[model] = max(self.compiles.get(model, 0), r["compile"])
        self.results[model, size, precision, tag or layout] = r
        print(_row(model, size, precision, layout, r), flush=True)
        return r

    def best_size(self, model):
        done = {k[1]: r for k, r in self.results.items() if k[0] == model and "grid" in r}
        return min(done, key=lambda k: done[k]["grid"]) if done else None

    def note(self, text):
        self.notes.append(text)
        print(text, flush=True)

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


def _auto_size(model, session):
    """The largest group ``--group-size auto`` makes of ``configs/<model>.yaml``'s runs
    from this device's free memory now, and that free memory."""
    platform, free = grouping.device_room(session.device)
    runs = expand_grid(load_config(str(CONFIGS / f"{model}.yaml")))
    groups = grouping.group_runs(runs, "auto", memory=free, platform=platform)
    return max(len(g) for g in groups), free


def check_auto(names, session):
    """Phase ``auto``: each model's group of auto's choice, timed; fits or not, and the
    memory XLA plans against auto's estimate. Returns ``{model: K}``."""
    sizes = {}
    for model in names:
        k, free = _auto_size(model, session)
        sizes[model] = k
        estimate = run_bytes(models.get_model(model), session.args.batch_size)
        r = session.attempt(model, k, "tf32", "auto", tag="auto K")
        gib = lambda b: f"{b / 2 ** 30:.2f} GiB"  # noqa: E731
        outcome = ("not measured (budget)" if r is None else r["error"] if "error" in r
                   else f"XLA planned {gib(r['memory'])} ({gib(r['memory'] / k)} a run): fits")
        session.note(f"auto {model}: K={k} of {FULL['runs']} runs, from {gib(free)} free x "
                     f"{grouping.MEMORY_FRACTION} at an estimated {gib(estimate)} a run "
                     f"({gib(k * estimate)} in all); {outcome}")
    return sizes


def check_epoch(model, size, session):
    """Phase ``epoch``: one full epoch of ``model`` in groups of ``size`` at highest and
    at tf32 (the GPU's default), and how much faster the default is."""
    args = session.args
    steps, n_val = -(-args.n_train // args.batch_size), args.n_val if args.tiny else FULL["val"]
    seconds = {}
    for precision in ("highest", "tf32"):
        r = session.attempt(model, size, precision, "auto", steps, n_val, tag="full epoch")
        if r and "epoch" in r:
            seconds[precision] = r["epoch"]
    shown = ", ".join(f"{p} {s:.1f} s" for p, s in seconds.items()) or "not measured"
    ratio = (f": tf32 {seconds['highest'] / seconds['tf32']:.2f}x as fast"
             if len(seconds) == 2 else "")
    session.note(f"one {model} epoch, {size} run{'s' if size != 1 else ''} ({steps} steps of "
                 f"{args.batch_size}, {n_val} validation images): {shown}{ratio}")


def sweep(names, sizes, precisions, session):
    """Phase ``sweep``: every K at the first precision, the others at each best K."""
    for model in names:  # largest groups first: they decide the projections
        for size in sorted(sizes, reverse=True):
            session.attempt(model, size, precisions[0], "auto")
    for precision in precisions[1:]:
        for model in names:
            if session.best_size(model) is not None:
                session.attempt(model, session.best_size(model), precision, "auto")
    for layout in [s for s in session.args.layouts.split(",") if s]:
        for model in names:
            if session.best_size(model) is not None:
                session.attempt(model, session.best_size(model), precisions[0], layout)


def keep_rates(session):
    """The best rate of each model at tf32 and highest, for the grids' cost lines."""
    best = {}
    for (model, size, precision, _), r in session.results.items():
        if precision in SETUP_NAME and "epoch" in r:
            spec = models.get_model(model)
            flops = size * sum(models.epoch_flops(spec, FULL["train"], FULL["val"],
                                                  FULL["batch"], session.args.val_batch_size))
            if flops / r["epoch"] > best.get((model, precision), (0,))[0]:
                best[model, precision] = (flops / r["epoch"], size)
    for (model, precision), (rate, size) in best.items():
        path = devices.record_rate(session.device_name, "jax", model, SETUP_NAME[precision],
                                   rate, "benchmark.py gpu", group_size=size)
        print(f"rate kept in {path}: {model} {SETUP_NAME[precision]} {rate / 1e12:.3g} TFLOP/s")


def write_markdown(path, session):
    """The rows as docs/benchmarks.md's table takes them, then the notes."""
    lines = ["| model | K | precision | images/s | TFLOP/s | GiB | s/epoch (group) | full grid |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for (model, size, precision, tag), r in session.results.items():
        what = f"{precision} ({tag})" if tag in ("auto K", "full epoch") else precision
        lines.append(f"| {model} | {size} | {what} | " + (
            f"{r['error']} | | | | |" if "error" in r else
            f"{r['images']:.0f} | {r['tflops']:.2f} | {r['memory'] / 2 ** 30:.2f} | "
            f"{r['epoch']:.1f} | {_duration(r['grid'])} |"))
    text = "\n".join(lines + [""] + [f"- {n}" for n in session.notes])
    Path(path).write_text(f"On {session.device_name}, jax {jax.__version__}:\n\n{text}\n",
                          encoding="utf-8")


def run(args):
    names, sizes, precisions, phases = _checked(args)
    session = _Session(args)
    print(f"grouped engine on {session.device.platform} ({session.device.device_kind}), jax "
          f"{jax.__version__}; {args.steps} timed steps of {args.batch_size}, random data on "
          f"the device; grids projected at {FULL['runs']} runs x {FULL['epochs']} epochs x "
          f"{-(-FULL['train'] // FULL['batch'])} steps, budget {args.budget:.0f} s; phases "
          f"{', '.join(phases)}", flush=True)
    print(f"{'model':10s}{'K':>5s} {'prec':8s}{'layout':8s}{'first s':>8s}{'ms/step':>10s}"
          f"{'images/s':>11s}{'TFLOP/s':>9s}{'GiB':>9s}{'s/epoch':>9s}{'full grid':>11s}",
          flush=True)
    try:
        auto = check_auto(names, session) if "auto" in phases else {}
        if "epoch" in phases and args.epoch_model:
            size = auto.get(args.epoch_model) or _auto_size(args.epoch_model, session)[0]
            check_epoch(args.epoch_model, size, session)
        if "sweep" in phases:
            sweep(names, sizes, precisions, session)
    except KeyboardInterrupt:  # the hard time limit of scripts/gpu_check.sh
        print("stopped by SIGINT (the time limit): what was measured follows", flush=True)
    session.summary(names, precisions)
    if not args.tiny:  # tiny batches say nothing of a grid's rate
        keep_rates(session)
    if args.markdown:
        write_markdown(args.markdown, session)
    return 0
