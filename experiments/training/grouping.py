"""Which runs can train together in one compiled program, and how many at a time.

Runs of one config that follow one rule of the library
(:func:`~experiments.run_keys.family`: Adam, AMSGrad and AdamW are one)
and differ only in its hyperparameters and seed (the keys of :data:`PER_RUN_KEYS`, the
``per_run`` column of :data:`~experiments.run_keys.TABLE`) are
*compatible*: the grouped engine
(:mod:`experiments.engines.jax_group`) steps any number of them at once, with their
hyperparameters as per-run arrays. :func:`group_runs` splits a list of runs into
groups of at most ``group_size`` compatible runs, keeping the runs of one seed
together (they share each batch) and the groups as rectangular as it can (the same
number of runs for every seed of a group; a seed with fewer runs is padded).

``group_size='auto'`` (the grid's default) chooses per model, engine and device
(:func:`choose_group_size`): on a GPU, and on a CPU for a dense model, as many runs as
fit into the memory of the device that trains them (:func:`run_bytes`, an estimate
from the model's parameter count and activation sizes); one run at a time for a conv
net on a CPU, for the Theano engine and for a custom trainer.
"""
import math
import os

from experiments import models

from experiments.config import run_keys
from experiments.config.run_keys import PER_RUN_KEYS

#: Share of the free memory ``'auto'`` plans to fill (XLA needs room of its own).
MEMORY_FRACTION = 0.6
#: Bytes of float32.
_F32 = 4

__all__ = ["PER_RUN_KEYS", "compatibility_key", "check_group", "model_costs", "run_bytes",
           "eval_bytes", "available_memory", "auto_group_size", "device_room", "trains_groups",
           "choose_group_size", "parse_group_size", "group_runs"]


def compatibility_key(run):
    """What must be equal for runs to share a group: the updater's rule and every
    setting but :data:`PER_RUN_KEYS` (a missing legacy key as
    :func:`experiments.run_keys.resolve` reads it), as a hashable tuple."""
    rule = ("rule", run_keys.family(run["updater"]))
    run = run_keys.resolve(run) if "model" in run else run
    return (rule,) + tuple(sorted((k, repr(v)) for k, v in run.items() if k not in PER_RUN_KEYS))


def check_group(runs):
    """Raise ``ValueError`` unless ``runs`` can train as one group: one rule, and all
    equal except in :data:`experiments.PER_RUN_KEYS`."""
    if not runs:
        raise ValueError("a group needs at least one run")
    first = dict(compatibility_key(runs[0]))
    for run in runs[1:]:
        other = dict(compatibility_key(run))
        if other != first:
            key = sorted(k for k in set(first) | set(other) if first.get(k) != other.get(k))[0]
            raise ValueError(f"runs {runs[0].get('run_id', '?')} and {run.get('run_id', '?')} "
                             f"differ in {key!r} ({first.get(key, 'unset')} vs "
                             f"{other.get(key, 'unset')}); only the rule's hyperparameters "
                             f"({', '.join(PER_RUN_KEYS[1:])}) may differ in a group")


def model_costs(spec):
    """Per-example costs of a model spec, from its layer shapes.

    Returns
    -------
    dict
        ``params`` (count), ``forward_flops`` and ``train_flops`` per example (the
        layers' :meth:`~experiments.models.Layer.flops`: 2 per multiply-add of the
        convolution and dense layers; training is the forward pass, the weight
        gradients, and the input gradients of every weighted layer but the first;
        element-wise layers are not counted), ``activations`` (floats
        of all layer outputs, the input included) and ``widest_pair`` (floats of the
        largest input + output of one layer: what evaluation holds at a time).
    """
    layers = models.layer_shapes(spec)
    # a layer that counts FLOPs is a weighted product (models.Layer.flops)
    forward = [f for f in (layer.flops(shape) for layer, shape, _ in layers) if f]
    activations = math.prod(spec.input_shape) + sum(math.prod(out) for *_, out in layers)
    widest = max([math.prod(spec.input_shape)]
                 + [math.prod(shape) + math.prod(out) for _, shape, out in layers])
    fwd = sum(forward)
    train = 2 * fwd + sum(forward[1:])
    return {"params": models.count_params(spec), "forward_flops": fwd, "train_flops": train,
            "activations": activations, "widest_pair": widest}


def run_bytes(spec, batch_size=128):
    """Estimated device bytes one run adds to a group.

    Twelve float32 copies of the parameters (parameters, three optimizer slots,
    gradient, and the temporaries of unpacking and updating them), and three of every
    activation of a training batch (kept for the backward pass, its gradient, and a
    temporary).
    """
    costs = model_costs(spec)
    return _F32 * (12 * costs["params"] + 3 * batch_size * costs["activations"])


def eval_bytes(spec, val_batch_size=1024):
    """Estimated device bytes one run needs while a validation batch passes through it:
    twice the largest input + output of a layer."""
    return _F32 * 2 * val_batch_size * model_costs(spec)["widest_pair"]


def available_memory(device=None):
    """Free bytes on ``device`` (a GPU's allocator limit minus what is in use), or on
    the host for a CPU device (``MemAvailable`` of /proc/meminfo, else physical pages)."""
    stats = None
    if device is not None and getattr(device, "platform", "cpu") != "cpu":
        try:
            stats = device.memory_stats()
        except Exception:  # a backend without memory statistics
            stats = None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def auto_group_size(spec, batch_size=128, memory=None, device=None, data_bytes=0,
                    fraction=MEMORY_FRACTION):
    """The most runs of ``spec`` whose arrays fit into ``fraction`` of ``memory``
    bytes (default: :func:`available_memory` of ``device``) after ``data_bytes`` for
    the dataset; at least 1. Never decreases when ``memory`` grows."""
    if memory is None:
        memory = available_memory(device)
    room = fraction * max(int(memory), 0) - int(data_bytes)
    return max(1, int(room // run_bytes(spec, batch_size)))


def device_room(device=None):
    """``(platform, free bytes)`` of ``device`` (default: JAX's first device), what
    :func:`choose_group_size` sizes groups by; a Ray worker calls it on its own device."""
    if device is None:
        import jax
        device = jax.devices()[0]
    return device.platform, available_memory(device)


def trains_groups(engine="jax", custom_trainer=False):
    """Whether groups of more than one run can train: only on the JAX engine with the
    suite's own trainer (the Theano engine and a custom ``train_fn`` take one run at a
    time)."""
    return engine == "jax" and not custom_trainer


def choose_group_size(spec, platform="cpu", memory=None, engine="jax", custom_trainer=False,
                      batch_size=128):
    """What ``group_size='auto'`` trains together: how many runs of ``spec``.

    - 1 where groups cannot train (:func:`trains_groups`);
    - 1 for a conv net on a CPU: K runs' convolutions become one grouped convolution,
      which XLA's CPU back end runs slower than K plain ones, and the per-step
      overhead a group saves is small next to a conv step (docs/benchmarks.md,
      cifarnet: a group of 4 took 14.6 s an epoch against 9.0 s one run after
      another on jax 0.4.30, 15.5 against 16.5 on jax 0.10.2);
    - otherwise (a GPU, or a dense model on a CPU: 6.8x faster grouped, logreg) as
      many as fit into ``memory``, the free bytes of the device that trains them
      (:func:`auto_group_size`; default: this host's).
    """
    if not trains_groups(engine, custom_trainer):
        return 1
    dense = not any(isinstance(layer, models.Conv2DLayer) for layer in spec.layers)
    if platform == "cpu" and not dense:
        return 1
    return auto_group_size(spec, batch_size, memory)


def parse_group_size(text):
    """``'auto'`` or a positive integer from the command line; ``ValueError`` otherwise."""
    if str(text).strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = 0
    if value < 1:
        raise ValueError(f"--group-size must be a positive integer or 'auto', got {text!r}")
    return value


def _balanced(items, parts):
    """``items`` cut into ``parts`` contiguous pieces whose lengths differ by <= 1."""
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (i < extra)
        out.append(items[start:end])
        start = end
    return out


def _split(runs, group_size):
    """Groups of at most ``group_size`` slots (seeds x the most runs of one seed)."""
    by_seed = {}
    for run in runs:
        by_seed.setdefault(run["seed"], []).append(run)
    buckets = list(by_seed.values())
    width = max(len(b) for b in buckets)
    if width >= group_size:  # a seed's runs fill one group or more: one seed per group
        return [part for b in buckets for part in _balanced(b, -(-len(b) // group_size))]
    per_group = group_size // width
    parts = _balanced(buckets, -(-len(buckets) // per_group))
    return [[run for b in part for run in b] for part in parts]


def group_runs(runs, group_size, memory=None, device=None, batch_size=None, platform=None):
    """Split ``runs`` into groups that train together.

    Parameters
    ----------
    runs : list of dict
        Resolved run configs (``model``, ``updater``, ``seed``, ...).
    group_size : int or 'auto'
        At most this many runs per group (slots, counting padding); 1 gives one
        group per run (the sequential path). 'auto': :func:`choose_group_size` for
        ``platform`` (default: ``device``'s, else 'cpu') and ``memory`` (default:
        :func:`available_memory` of ``device``).

    Returns
    -------
    list of list of dict
        Every run exactly once. Runs of a group are compatible
        (:func:`compatibility_key`). Groups come in the order of their first run;
        within a group, runs come seed by seed.
    """
    if group_size != "auto" and (isinstance(group_size, bool) or not isinstance(group_size, int)
                                 or group_size < 1):
        raise ValueError(f"group_size must be a positive integer or 'auto', got {group_size!r}")
    classes, groups = {}, []
    for run in runs:
        classes.setdefault(compatibility_key(run), []).append(run)
    for members in classes.values():
        size = group_size
        if size == "auto":
            spec = models.get_model(members[0]["model"])
            size = choose_group_size(
                spec, platform or getattr(device, "platform", "cpu"),
                available_memory(device) if memory is None else memory,
                batch_size=batch_size or int(members[0].get("batch_size", 128)))
        groups.extend(_split(members, size))
    first = {id(run): i for i, run in enumerate(runs)}
    return sorted(groups, key=lambda g: min(first[id(r)] for r in g))
