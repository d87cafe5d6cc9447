"""Which runs can train together in one compiled program, and how many at a time.

Runs of one config whose rules share a family (:mod:`experiments.optimizers`: Adam,
AMSGrad and AdamW are one; every other rule its own) and the values the family compiles
in (Adam's ``variant``), and that differ only in the other values of their rules and
their seed, are *compatible*: an engine that trains groups steps any number of them at
once, with their values as per-run arrays. :func:`group_runs` splits a list of runs
into groups of at most ``group_size`` compatible runs, keeping the runs of one seed
together (they share each batch) and the groups as rectangular as it can (the same
number of runs for every seed of a group; a seed with fewer runs is padded).

``group_size='auto'`` (the grid's default) chooses per model, engine and device
(:func:`choose_group_size`): on a GPU, and on a CPU for a dense model, as many runs as
fit into the memory of the device that trains them (the engine's
``memory_per_run``, an estimate from the model's parameter count and activation
sizes); one run at a time for a conv net on a CPU, for an engine that does not train
groups and for a custom trainer.
"""
from experiments import models, optimizers
from experiments.config import run_keys
from experiments.engines import available_memory, get_engine

#: Share of the free memory ``'auto'`` plans to fill (XLA needs room of its own).
MEMORY_FRACTION = 0.6

__all__ = ["compatibility_key", "check_group", "per_run_keys", "auto_group_size",
           "device_room", "trains_groups", "choose_group_size", "parse_group_size",
           "group_runs"]


def per_run_keys():
    """The keys in which runs of one group may differ: the rules' values that are not
    compiled in, and ``run_id``, ``updater`` and ``seed``."""
    rows = run_keys.table().rows
    return ("run_id", "updater") + tuple(k.name for k in rows if k.per_run and k.rules
                                         and k.name != "updater") + ("seed",)


def compatibility_key(run):
    """What must be equal for runs to share a group, as a hashable tuple: the rule's
    family, the values it compiles in, and every setting but the rule's values (a
    missing legacy key as :func:`experiments.config.run_keys.resolve` reads it)."""
    rule = optimizers.get_rule(run["updater"])
    values = {**rule.fixed, **{h.name: run.get(h.name, h.default)
                               for h in rule.hyperparameters}}
    compiled = tuple((k, repr(values.get(k))) for k in rule.family.static)
    resolved = run_keys.resolve(run) if "model" in run else run
    mapped = set(run_keys.table().optimizer_keys) | {"run_id", "seed"}
    return (("rule", rule.family.name),) + compiled + tuple(sorted(
        (k, repr(v)) for k, v in resolved.items() if k not in mapped))


def check_group(runs):
    """Raise ``ValueError`` unless ``runs`` can train as one group (see
    :func:`compatibility_key`)."""
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
                             f"({', '.join(per_run_keys()[1:])}) may differ in a group")


def auto_group_size(spec, batch_size=128, memory=None, device=None, data_bytes=0,
                    fraction=MEMORY_FRACTION, engine="jax"):
    """The most runs of ``spec`` whose arrays fit into ``fraction`` of ``memory``
    bytes (default: :func:`~experiments.engines.available_memory` of ``device``) after
    ``data_bytes`` for the dataset, each taking ``engine``'s ``memory_per_run``; at
    least 1. Never decreases when ``memory`` grows."""
    if memory is None:
        memory = available_memory(device)
    room = fraction * max(int(memory), 0) - int(data_bytes)
    return max(1, int(room // get_engine(engine).abilities.memory_per_run(spec, batch_size)))


def device_room(device=None):
    """``(platform, free bytes)`` of ``device`` (default: JAX's first device), what
    :func:`choose_group_size` sizes groups by; a Ray worker calls it on its own device."""
    if device is None:
        import jax
        device = jax.devices()[0]
    return device.platform, available_memory(device)


def trains_groups(engine="jax", custom_trainer=False):
    """Whether groups of more than one run can train: on an engine that trains groups
    (its abilities say), with the suite's own trainer (a custom ``train_fn`` takes one
    run at a time)."""
    return get_engine(engine).abilities.groups and not custom_trainer


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
    return auto_group_size(spec, batch_size, memory, engine=engine)


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


def group_runs(runs, group_size, memory=None, device=None, batch_size=None, platform=None,
               engine="jax"):
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
            spec = models.get_model(members[0]["model"], members[0].get("dataset"))
            size = choose_group_size(
                spec, platform or getattr(device, "platform", "cpu"),
                available_memory(device) if memory is None else memory,
                engine=engine, batch_size=batch_size or int(members[0].get("batch_size", 128)))
        groups.extend(_split(members, size))
    first = {id(run): i for i, run in enumerate(runs)}
    return sorted(groups, key=lambda g: min(first[id(r)] for r in g))
