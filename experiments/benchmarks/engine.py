"""Per-step training time of each model in each engine (JAX, Theano, PyTorch), side by side.

The JAX and Theano engines are timed as the trainer drives them:
``get_engine(name).load()(spec, data, Optimizer.of('amsgrad'), seed).train_epoch(epoch, lr,
indices, flips)`` runs ``--steps`` training steps (gather, flip, forward, backward,
AMSGrad update). The JAX engine runs them as one compiled call over a device-resident
training set; the Theano engine, the original post's stack, calls its compiled step once
per batch (it is timed where Theano imports: the Theano environment). The same step in
eager PyTorch on the CPU (the same layers, flips, clipped cross-entropy and
``Adam(amsgrad=True)``) is a further reference when ``torch`` is importable. Random
float32 data of the model's input shape stands in for the dataset (the cost does not
depend on the pixels), the same for every engine.

Each engine is built and called once (``compile s``: building, compiling and the first
call, less one steady call; for PyTorch the warm-up), then ``--repeats`` more times; the
fastest of those gives ``ms/step``. Ratios are to the first engine of ``--engines`` (JAX
by default), so ``theano/jax`` above 1 means the JAX engine is faster.

    python scripts/benchmark.py engine                  # every engine importable here
    python scripts/benchmark.py engine --engines jax,theano --models cifarnet --steps 5
"""
import csv
import io
import math
import os
import time
from types import SimpleNamespace

import numpy as np

from experiments import models
from experiments.engines import get_engine
from experiments.optimizers import Optimizer
from experiments.results.files import atomic_write_text

#: Engines this benchmark can time; 'torch' is the eager PyTorch reference.
ENGINES = ("jax", "theano", "torch")

#: Steps per timed call when ``--steps`` is not given: enough to swamp the per-call
#: overhead, few enough that the default run of all four models takes minutes.
DEFAULT_STEPS = {"logreg": 50, "cifarnet": 10, "small_vgg": 4, "vgg": 2}


def add_arguments(parser):
    parser.add_argument("--models", nargs="+", default=list(models.model_names()),
                        choices=models.model_names(), metavar="MODEL",
                        help="models to time (default: all: %(default)s)")
    parser.add_argument("--engines",
                        help=f"comma-separated, from {', '.join(ENGINES)}; ratios are to the "
                             "first (default: every one importable here, jax first)")
    parser.add_argument("--steps", type=int,
                        help="training steps per timed call (default per model: "
                             + ", ".join(f"{m} {s}" for m, s in DEFAULT_STEPS.items()) + ")")
    parser.add_argument("--batch", "--batch-size", dest="batch", type=int, default=128,
                        help="batch size (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="timed calls after the first one; the best counts "
                             "(default %(default)s)")
    parser.add_argument("--csv", metavar="PATH", help="also write the table to this CSV file")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


# ---- which engines --------------------------------------------------------------------

def importable(name):
    """``None`` if engine ``name``'s library imports here, else why not (one line)."""
    try:
        if name == "jax":
            import jax  # noqa: F401
        elif name == "theano":
            import experiments.engines.theano_env  # noqa: F401  (sets Theano's flags first)
        elif name == "torch":
            import torch  # noqa: F401
    except ImportError as error:
        return f"not importable ({error})"
    except Exception as error:  # an installed but broken library (e.g. Theano's flags)
        return f"fails to import ({type(error).__name__}: {str(error).splitlines()[0]})"
    return None


def choose_engines(text):
    """``(engines, notes)`` from the ``--engines`` value; ``SystemExit`` with one line for
    an unknown, repeated or unimportable engine."""
    if text is None:
        engines, notes = [], []
        for name in ENGINES:
            problem = importable(name)
            if problem is None:
                engines.append(name)
            elif name != "theano" or "fails" in problem:  # no Theano: the modern stack
                notes.append(f"{name} {problem}: not timed")
        if "jax" not in engines:
            raise SystemExit(f"benchmark engine: jax {importable('jax')}")
        return engines, notes
    engines = [e.strip() for e in text.split(",") if e.strip()]
    unknown = [e for e in engines if e not in ENGINES]
    if unknown or not engines or len(set(engines)) != len(engines):
        raise SystemExit(f"benchmark engine: --engines {text!r}: give distinct names from "
                         f"{', '.join(ENGINES)}, comma-separated")
    for name in engines:
        problem = importable(name)
        if problem is not None:
            raise SystemExit(f"benchmark engine: --engines {name}: {problem}")
    return engines, []


def describe(name):
    """One line: the engine's library version and where it runs."""
    if name == "jax":
        import jax
        device = jax.devices()[0]
        return f"jax {jax.__version__} on {device.platform} ({device.device_kind})"
    if name == "theano":
        from experiments.engines.theano_env import theano
        return (f"theano {theano.__version__} on cpu, floatX {theano.config.floatX}, "
                f"blas {theano.config.blas.ldflags or 'through numpy'}")
    import torch
    return f"torch {torch.__version__} on cpu, {torch.get_num_threads()} threads (eager)"


# ---- timing ---------------------------------------------------------------------------

def fake_data(spec, n, seed=0):
    """A stand-in dataset of ``n`` random float32 images of the model's input shape."""
    rng = np.random.default_rng(seed)
    x = rng.random((n,) + tuple(spec.input_shape), dtype=np.float32)
    y = rng.integers(0, 10, n).astype(np.int32)
    return SimpleNamespace(x_train=x, y_train=y, x_val=x[:1], y_val=y[:1],
                           flip=spec.dataset == "cifar10")


def plan(spec, steps, batch_size, seed=0):
    """An epoch's ``(indices, flips)`` over :func:`fake_data` (flips for CIFAR-10)."""
    rng = np.random.default_rng(seed)
    indices = rng.permutation(steps * batch_size).astype(np.int32).reshape(steps, batch_size)
    flips = rng.random(indices.shape) < 0.5 if spec.dataset == "cifar10" else None
    return indices, flips


def best_of(build, repeats):
    """``(first-call overhead s, best call s)`` of ``call = build()``, ``call(epoch)``:
    build and call once, then ``repeats`` more calls; the overhead is the first
    (building included) less the best."""
    start = time.perf_counter()
    call = build()
    call(0)
    first = time.perf_counter() - start
    best = math.inf
    for epoch in range(1, repeats + 1):
        start = time.perf_counter()
        call(epoch)  # every engine returns host floats: the work is done
        best = min(best, time.perf_counter() - start)
    return max(first - best, 0.0), best


def time_engine(name, spec, steps, batch_size, repeats):
    """``(compile s, seconds per step)`` of engine ``name``'s ``train_epoch``."""
    if name == "torch":
        return time_torch(spec, steps, batch_size, repeats)
    data = fake_data(spec, steps * batch_size)
    indices, flips = plan(spec, steps, batch_size)

    def build():
        engine = get_engine(name).load()(spec, data, Optimizer.of("amsgrad"), 0)
        return lambda epoch: engine.train_epoch(epoch, 1e-3, indices, flips)

    compile_s, best = best_of(build, repeats)
    return compile_s, best / steps


def torch_model(spec):
    """The spec as a ``torch.nn.Sequential`` (Lasagne's alpha is torch's alpha / n):
    each layer type's modules from one table, then the layer's nonlinearity."""
    import torch
    from torch import nn

    class GlobalMean(nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3))

    table = {  # (layer, input shape) -> modules
        models.Conv2DLayer: lambda l, shape: [nn.Conv2d(
            shape[0], l.num_filters, l.filter_size, bias=l.b,
            padding=l.filter_size // 2 if l.pad == "same" else 0)],
        models.DenseLayer: lambda l, shape: [nn.Flatten(),
                                             nn.Linear(math.prod(shape), l.num_units, bias=l.b)],
        models.BatchNormLayer: lambda l, shape: [nn.BatchNorm2d(shape[0], eps=l.epsilon,
                                                                momentum=l.alpha)],
        models.NonlinearityLayer: lambda l, shape: [],
        models.MaxPool2DLayer: lambda l, shape: [nn.MaxPool2d(l.pool_size)],
        models.DropoutLayer: lambda l, shape: [nn.Dropout(l.p)],
        models.LocalResponseNormalization2DLayer: lambda l, shape: [
            nn.LocalResponseNorm(l.n, l.alpha * l.n, l.beta, l.k)],
        models.GlobalPoolLayer: lambda l, shape: [GlobalMean()],
    }
    activation = {"relu": lambda: [nn.ReLU()], "softmax": lambda: [nn.Softmax(dim=1)],
                  "linear": lambda: []}
    layers = []
    for layer, shape, _ in models.layer_shapes(spec):
        layers += models.implementation(table, layer, "the PyTorch benchmark")(layer, shape)
        layers += activation[getattr(layer, "nonlinearity", "linear")]()
    return torch.nn.Sequential(*layers)


def time_torch(spec, steps, batch_size, repeats):
    """``(warm-up s, seconds per step)`` of the same training step in eager PyTorch."""
    import torch
    data = fake_data(spec, steps * batch_size)
    x_all, y_all = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train).long()
    indices, flips = plan(spec, steps, batch_size)

    def build():
        torch.manual_seed(0)
        model = torch_model(spec).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, amsgrad=True)

        def epoch(_):
            for i in range(steps):
                idx = torch.from_numpy(indices[i]).long()
                x = x_all[idx]
                if flips is not None:
                    f = torch.from_numpy(flips[i])[:, None, None, None]
                    x = torch.where(f, x.flip(-1), x)
                probs = model(x).clamp(1e-7, 1 - 1e-7)
                loss = -probs.gather(1, y_all[idx][:, None]).log().mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            return float(loss.detach())
        return epoch

    warmup_s, best = best_of(build, repeats)
    return warmup_s, best / steps


# ---- the table ------------------------------------------------------------------------

def columns(engines):
    """The table's column names (the CSV's header)."""
    base = engines[0]
    return (["model", "params", "steps"] + [f"{e} ms/step" for e in engines]
            + [f"{e}/{base}" for e in engines[1:]] + [f"{e} compile s" for e in engines])


def row(name, steps, timings, engines):
    """``{column: value}`` for one model; ``timings[engine] = (compile s, s/step)``."""
    out = {"model": name, "params": models.count_params(models.get_model(name)),
           "steps": steps}
    out.update((f"{e} ms/step", 1e3 * timings[e][1]) for e in engines)
    out.update((f"{e}/{engines[0]}", timings[e][1] / timings[engines[0]][1])
               for e in engines[1:])
    out.update((f"{e} compile s", timings[e][0]) for e in engines)
    return out


def format_line(values, names):
    """One aligned line of the printed table (names: the header; values: a row)."""
    cells = []
    for name in names:
        width = max(len(name), 10 if name == "model" else 8)
        value = values[name]
        if isinstance(value, float):  # ratios and small times to 2 decimals
            value = f"{value:.2f}" if "ms" not in name or value < 10 else f"{value:.1f}"
        cells.append(f"{value:<{width}}" if name == "model" else f"{value:>{width}}")
    return " ".join(cells)


def write_csv(path, rows, names):
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()}
                     for r in rows)
    atomic_write_text(path, text.getvalue())


def run(args):
    if (args.steps is not None and args.steps < 1) or args.batch < 1 or args.repeats < 1:
        raise SystemExit("benchmark engine: --steps, --batch and --repeats must be >= 1")
    if args.csv and not os.path.isdir(os.path.dirname(os.path.abspath(args.csv))):
        raise SystemExit(f"benchmark engine: --csv {args.csv}: no such directory")
    from tqdm.auto import tqdm
    engines, notes = choose_engines(args.engines)
    for name in engines:
        print(describe(name))
    for note in notes:
        print(note)
    print(f"batch {args.batch}, steps per timed call: "
          f"{args.steps or ', '.join(f'{m} {DEFAULT_STEPS[m]}' for m in args.models)}; "
          f"best of {args.repeats} calls after the first", flush=True)
    names = columns(engines)
    print(format_line(dict(zip(names, names)), names), flush=True)
    rows = []
    with tqdm(total=len(args.models) * len(engines), unit="timing", leave=False,
              disable=True if args.quiet else None) as bar:  # on a terminal only
        for name in args.models:
            spec, steps = models.get_model(name), args.steps or DEFAULT_STEPS[name]
            timings = {}
            for engine in engines:
                bar.set_postfix_str(f"{name} / {engine}")
                timings[engine] = time_engine(engine, spec, steps, args.batch, args.repeats)
                bar.update()
            rows.append(row(name, steps, timings, engines))
            tqdm.write(format_line(rows[-1], names))
    if args.csv:
        try:
            write_csv(args.csv, rows, names)
        except OSError as error:
            raise SystemExit(f"benchmark engine: --csv {args.csv}: {error.strerror or error}")
    return 0
