"""Per-step training time of each model: the JAX engine's compiled epoch loop vs PyTorch.

The JAX engine is timed as it trains: one compiled call runs ``--steps`` training
steps (gather, flip, forward, backward, AMSGrad update) over a device-resident
training set; compilation is timed apart. The same step in PyTorch (eager, CPU; the
same layers, flips, clipped cross-entropy and ``Adam(amsgrad=True)``) is the
reference, timed in a Python loop, when ``torch`` is importable. Random data of the
model's input shape stands in for the dataset (the cost does not depend on pixels).
"""
import time

import numpy as np

from experiments import models


def add_arguments(parser):
    parser.add_argument("--models", nargs="+", default=list(models.MODEL_NAMES),
                        choices=models.MODEL_NAMES, metavar="MODEL",
                        help="models to time (default: all: %(default)s)")
    parser.add_argument("--steps", type=int, default=20,
                        help="training steps per timed call (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2,
                        help="timed calls after the compiling one; the best counts "
                             "(default %(default)s)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")


def fake_data(spec, n, seed=0):
    from types import SimpleNamespace
    rng = np.random.default_rng(seed)
    x = rng.random((n,) + tuple(spec.input_shape), dtype=np.float32)
    y = rng.integers(0, 10, n).astype(np.int32)
    return SimpleNamespace(x_train=x, y_train=y, x_val=x[:1], y_val=y[:1],
                           flip=spec.dataset == "cifar10")


def plan(spec, steps, batch_size, seed=0):
    rng = np.random.default_rng(seed)
    indices = rng.permutation(steps * batch_size).astype(np.int32).reshape(steps, batch_size)
    flips = rng.random(indices.shape) < 0.5 if spec.dataset == "cifar10" else None
    return indices, flips


def time_jax(spec, steps, batch_size, repeats):
    """``(compile seconds, seconds per step)`` of the JAX engine's epoch loop."""
    from experiments.engines.base import Hyperparameters
    from experiments.engines.jax_engine import JaxEngine
    engine = JaxEngine(spec, fake_data(spec, steps * batch_size), Hyperparameters("amsgrad"), 0)
    indices, flips = plan(spec, steps, batch_size)
    start = time.perf_counter()
    engine.train_epoch(0, 1e-3, indices, flips)  # compiles, then runs once
    first = time.perf_counter() - start
    best = np.inf
    for epoch in range(1, repeats + 1):
        start = time.perf_counter()
        engine.train_epoch(epoch, 1e-3, indices, flips)  # returns host floats: synchronous
        best = min(best, time.perf_counter() - start)
    return max(first - best, 0.0), best / steps


def torch_model(spec):
    """The spec as a ``torch.nn.Sequential`` (Lasagne's alpha is torch's alpha / n)."""
    import torch
    from torch import nn

    class GlobalMean(nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3))

    layers, shape = [], tuple(spec.input_shape)
    for layer, out_shape in models.output_shapes(spec):
        if isinstance(layer, models.Conv2DLayer):
            k = layer.filter_size
            layers.append(nn.Conv2d(shape[0], layer.num_filters, k, bias=layer.b,
                                    padding=k // 2 if layer.pad == "same" else 0))
        elif isinstance(layer, models.DenseLayer):
            layers += [nn.Flatten(), nn.Linear(int(np.prod(shape)), layer.num_units,
                                               bias=layer.b)]
        elif isinstance(layer, models.BatchNormLayer):
            layers.append(nn.BatchNorm2d(shape[0], eps=layer.epsilon, momentum=layer.alpha))
        elif isinstance(layer, models.MaxPool2DLayer):
            layers.append(nn.MaxPool2d(layer.pool_size))
        elif isinstance(layer, models.DropoutLayer):
            layers.append(nn.Dropout(layer.p))
        elif isinstance(layer, models.LocalResponseNormalization2DLayer):
            layers.append(nn.LocalResponseNorm(layer.n, layer.alpha * layer.n, layer.beta,
                                               layer.k))
        elif isinstance(layer, models.GlobalPoolLayer):
            layers.append(GlobalMean())
        nl = getattr(layer, "nonlinearity", None)
        if nl == "relu":
            layers.append(nn.ReLU())
        elif nl == "softmax":
            layers.append(nn.Softmax(dim=1))
        shape = out_shape
    return torch.nn.Sequential(*layers)


def time_torch(spec, steps, batch_size, repeats):
    """Seconds per step of the same training step in eager PyTorch on CPU."""
    import torch
    torch.manual_seed(0)
    model = torch_model(spec).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, amsgrad=True)
    data = fake_data(spec, steps * batch_size)
    x_all, y_all = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train).long()
    indices, flips = plan(spec, steps, batch_size)

    def epoch():
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

    epoch()  # warm-up
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        epoch()
        best = min(best, time.perf_counter() - start)
    return best / steps


def _torch_available():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def run(args):
    if args.steps < 1 or args.batch_size < 1 or args.repeats < 1:
        raise SystemExit("benchmark engine: --steps, --batch-size and --repeats must be >= 1")
    import jax
    use_torch = not args.no_torch and _torch_available()
    device = jax.devices()[0]
    print(f"jax {jax.__version__} on {device.platform} ({device.device_kind}); batch "
          f"{args.batch_size}, {args.steps} steps per compiled call, best of {args.repeats}")
    if use_torch:
        import torch
        print(f"torch {torch.__version__} on cpu, {torch.get_num_threads()} threads")
    elif not args.no_torch:
        print("torch is not importable: no PyTorch reference")
    header = f"{'model':10s} {'params':>9s} {'compile s':>10s} {'jax ms/step':>12s}"
    if use_torch:
        header += f" {'torch ms/step':>14s} {'jax/torch':>10s}"
    print(header)
    for name in args.models:
        spec = models.get_model(name)
        compile_s, jax_step = time_jax(spec, args.steps, args.batch_size, args.repeats)
        line = (f"{name:10s} {models.count_params(spec):9d} {compile_s:10.1f} "
                f"{1e3 * jax_step:12.1f}")
        if use_torch:
            torch_step = time_torch(spec, args.steps, args.batch_size, args.repeats)
            line += f" {1e3 * torch_step:14.1f} {jax_step / torch_step:10.2f}"
        print(line, flush=True)
    return 0
