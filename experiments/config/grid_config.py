"""A grid of training runs (``kind: train``, the default): its config, checked.

A grid config's keys are the rows of the key table (:mod:`experiments.config.run_keys`)
and a few of its own::

    name: vgg                 # results go to results/<name>/ (default: the file's stem)
    model: vgg                # a registered model: logreg | cifarnet | small_vgg | vgg
    dataset: cifar10          # optional: the model's (a registered dataset: mnist | cifar10)
    epochs: 150
    batch_size: 128
    val_batch_size: 1024
    lr_schedule: linear       # linear: lr0 * (1 - e / epochs) in epoch e; constant; or
                              # cosine, step with parameters (experiments.config.schedules):
                              # {name: step, every: 50, factor: 0.1}
    augmentation: flip        # flip | none (default: the dataset's)
    train_subset: null        # use only the first N training examples (smoke tests)
    val_subset: null          # use only the first N validation examples
    subtract_mean: true       # setup keys (experiments.config.setup_keys)
    he_gain: relu             # HeNormal gain: relu (sqrt 2) or a number
    val_average: batches      # validation means over examples | batches
    maxpool_tie_gradient: all # pooling gradient to all tied maxima | the first
    precision: highest        # convolutions and products: default | highest | tf32 | bf16
                              # | tf32_emulated | bf16_emulated (rounded operands, any device)
    beta1: 0.9                # a hyperparameter given once is fixed for every run ...
    epsilon: 1.0e-8
    grid:                     # ... one given as a list under grid: is an axis
      updater: [adam, amsgrad]
      learning_rate: [0.01, 0.001, 0.0001]
      beta2: [0.99, 0.999]
      bias_correction: [true, false]
    seeds: [0, 1, 2, 3, 4]    # or a count: 5 means 0..4
    resources:                # optional: what each run asks of a Ray cluster
      num_gpus: 0.25          # a quarter of a GPU (default 0)
      num_cpus: 1             # (default 1)
    analysis:                 # optional: the comparison the report makes
      baseline: adam          # (default: Adam against AMSGrad, then any other rule)
      candidates: [amsgrad]

Hyperparameters may be fixed or an axis, not both. ``updater`` is any rule of the
registry (:mod:`experiments.optimizers`: the ``amsgrad`` library's ``adam``,
``amsgrad``, ``adamw``, ``sgd``, ``momentum``, ``nesterov_momentum``, and any rule
optax ships), and a rule takes the keys its entry lists. In a grid that mixes rules, a
run gets only the keys its rule takes, a key no rule of the grid takes is an error, and
``rules:`` gives a rule values of its own, a list being an axis of that rule and a
single value fixing it (:mod:`experiments.config.axes`)::

    grid:
      updater: [adam, amsgrad, momentum]
      learning_rate: [0.01, 0.001]
      beta2: [0.99, 0.999]
    rules:
      momentum: {learning_rate: [0.1, 0.01], momentum: 0.9}

The setup keys are fixed for a grid; a missing one means what the code did before it
existed, and one that does not apply to the model (``he_gain`` for logreg) may only be
given at that value. ``resources`` only says where runs may go (``--executor ray``),
``analysis`` what the report compares; neither is part of the experiment (not in
``grid.yaml``, run ids or a run's config). Any key may also be set on the command line
(``run_grid.py --set key=value``, :mod:`experiments.config.overrides`). Numbers such as
``1e-8`` may be written without a dot (plain YAML 1.1 would read them as strings).
"""
from dataclasses import dataclass, field

from experiments import models, optimizers
from experiments.config import run_keys, setup_keys
from experiments.config.axes import grid_axes, grid_fixed
from experiments.config.checks import INF, did_you_mean, integer, list_of, number, shown
from experiments.data.registry import get_dataset

__all__ = ["GridConfig", "parse_grid", "check_analysis", "RESOURCES", "TOP_KEYS"]

#: What a run asks of a Ray cluster (``resources:``): not settings of the experiment.
RESOURCES = {"num_cpus": number(0, INF, low_open=True), "num_gpus": number(0, INF)}
#: The keys of a grid config besides the key table's.
TOP_KEYS = ("name", "kind", "grid", "rules", "seeds", "resources", "analysis")


@dataclass(frozen=True)
class GridConfig:
    """A validated grid config.

    ``fixed`` holds every setting with its default filled in (keys that are axes
    excluded), ``grid`` the axes in run-id order, ``seeds`` the seeds, ``rules`` each
    rule's own values (a tuple: an axis of that rule).
    """
    name: str
    fixed: dict
    grid: dict
    seeds: tuple
    path: str = field(default="<config>", compare=False)
    resources: dict = field(default_factory=dict, compare=False)
    rules: dict = field(default_factory=dict)
    analysis: dict = field(default_factory=dict, compare=False)
    kind: str = "train"

    def updaters(self):
        """The rules of the grid, in its order."""
        return tuple(self.grid.get("updater") or (self.fixed["updater"],))

    def rule_settings(self, rule):
        """``(fixed, axes)`` of the runs of ``rule``: the settings and axes it takes,
        its own values of ``rules:`` in place of the grid's (a list: an axis), and its
        own defaults for the keys the grid leaves to each rule (rules that default a key
        differently: yogi's epsilon is not Adam's)."""
        fixed = {k: v for k, v in self.fixed.items() if run_keys.takes(rule, k)}
        axes = {k: v for k, v in self.grid.items()
                if k != "updater" and run_keys.takes(rule, k)}
        for key, value in self.rules.get(rule, {}).items():
            (fixed.pop if isinstance(value, tuple) else axes.pop)(key, None)
            (axes if isinstance(value, tuple) else fixed)[key] = value
        for h in optimizers.get_rule(rule).hyperparameters:
            if h.name not in fixed and h.name not in axes:
                fixed[h.name] = h.default
        order = run_keys.table().axes
        return fixed, {k: axes[k] for k in order if k in axes}

    def experiment(self):
        """What defines the experiment, flat: kind, fixed settings, ``grid.<axis>``,
        ``rules.<rule>.<key>``, ``seeds`` (not its name, nor where its runs may go or
        how they are analysed)."""
        return {"kind": self.kind, **self.fixed,
                **{f"grid.{axis}": list(values) for axis, values in self.grid.items()},
                **{f"rules.{rule}.{key}": list(v) if isinstance(v, tuple) else v
                   for rule, own in self.rules.items() for key, v in own.items()},
                "seeds": list(self.seeds)}

    def to_dict(self):
        """The config as plain YAML-able data (fixed settings at the top level)."""
        data = {"name": self.name, "kind": self.kind, **self.fixed,
                "grid": {k: list(v) for k, v in self.grid.items()}, "seeds": list(self.seeds)}
        if self.rules:
            data["rules"] = {r: {k: list(v) if isinstance(v, tuple) else v
                                 for k, v in own.items()} for r, own in self.rules.items()}
        data = dict(data, resources=dict(self.resources)) if self.resources else data
        return dict(data, analysis=dict(self.analysis)) if self.analysis else data


def parse_grid(data, name, checker):
    """``data`` (a config's YAML) as a :class:`GridConfig`; ``checker`` (a
    :class:`~experiments.config.loading.Checker`) raises the config's one-line errors."""
    _find_rules(data)
    checker.known_keys(data, tuple(run_keys.table().keys) + TOP_KEYS)
    grid, rules = grid_axes(data, checker)
    fixed = grid_fixed(data, grid, rules, checker)
    seeds = data.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = list(range(checker.check(integer(1), seeds, "seeds")))
    seeds = checker.check(list_of(integer(0)), seeds, "seeds")
    _dataset_and_setup(data, fixed, checker)
    resources = _resources(data.get("resources"), checker)
    try:
        analysis = check_analysis(data.get("analysis"),
                                  grid.get("updater") or (fixed.get("updater"),))
    except ValueError as e:
        checker.fail(*e.args)
    return GridConfig(name=name, fixed=fixed, grid=grid, seeds=tuple(seeds),
                      path=checker.path, resources=resources, rules=rules, analysis=analysis)


def _find_rules(data):
    """Look up the rules the config names, so that optax's rules it names are in the
    registry (and their keys in the key table) before its keys are checked; a name
    that is no rule is refused later, as the key's error."""
    grid = data.get("grid") if isinstance(data.get("grid"), dict) else {}
    named = grid.get("updater") if isinstance(grid.get("updater"), list) else []
    for name in [data.get("updater"), *named]:
        if isinstance(name, str):
            optimizers.is_rule(name)


def _dataset_and_setup(data, fixed, checker):
    """Fill in the dataset (the model's), the augmentation (the dataset's) and every
    setup key (a missing one at its default), checking that the model fits the data
    and that each setup key applies to the model."""
    fixed["dataset"] = fixed["dataset"] or models.model_dataset(fixed["model"])
    spec = models.get_model(fixed["model"], fixed["dataset"])
    try:
        models.layer_shapes(spec)
    except ValueError as e:
        checker.fail("dataset", f"model {spec.name!r} does not fit {spec.dataset}'s "
                                f"{spec.input_shape} images: {e}")
    if fixed["augmentation"] is None:
        fixed["augmentation"] = get_dataset(fixed["dataset"]).augmentation
    for key in setup_keys.KEYS:
        fixed[key.name] = checker.check(key.check, data[key.name], key.name) \
            if key.name in data else setup_keys.default(key.name, fixed["dataset"])
        why = setup_keys.not_applicable(key.name, fixed[key.name], spec)
        if why:
            checker.fail(key.name, f"{why}; leave the key out")


def _resources(value, checker):
    """The ``resources:`` mapping checked (what each run asks of a Ray cluster)."""
    resources = value or {}
    if not isinstance(resources, dict):
        checker.fail("resources", f"expected a mapping such as {{num_gpus: 1}}, "
                                  f"got {shown(resources)}")
    resources = dict(resources)
    for key, v in resources.items():
        if key not in RESOURCES:
            checker.fail(f"resources.{key}", "unknown resource"
                         + did_you_mean(key, RESOURCES) + f"; choose from {', '.join(RESOURCES)}")
        resources[key] = checker.check(RESOURCES[key], v, f"resources.{key}")
    return resources


def check_analysis(value, updaters):
    """The ``analysis:`` mapping (``baseline``: a rule, ``candidates``: rules, each one
    of the grid's ``updaters``), normalised; raises ValueError(key, message)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError("analysis", "expected a mapping such as {baseline: adam, "
                                     f"candidates: [amsgrad]}}, got {value!r}")
    for key in value:
        if key not in ("baseline", "candidates"):
            raise ValueError(f"analysis.{key}", "unknown key" + did_you_mean(
                str(key), ("baseline", "candidates")) + "; choose from baseline, candidates")

    def rule(v, key):
        if not isinstance(v, str) or v not in updaters:
            raise ValueError(key, f"{v!r} is not an updater of this grid"
                             + did_you_mean(str(v), updaters)
                             + f"; the grid has {', '.join(map(str, updaters))}")
        return v

    out = {}
    if "baseline" in value:
        out["baseline"] = rule(value["baseline"], "analysis.baseline")
    if "candidates" in value:
        cands = value["candidates"]
        cands = [cands] if isinstance(cands, str) else cands
        if not isinstance(cands, list):
            raise ValueError("analysis.candidates", f"expected a list of updaters, got {cands!r}")
        if not cands:
            raise ValueError("analysis.candidates", "empty: give at least one updater")
        out["candidates"] = [rule(c, "analysis.candidates") for c in cands]
        if out.get("baseline") in out["candidates"]:
            raise ValueError("analysis.candidates", f"{out['baseline']!r} is the baseline; "
                                                    "it cannot also be a candidate")
    return out
