"""Experiment configs: a small YAML schema, validated with one clear error per mistake.

A training grid (``kind: train``, the default)::

    name: vgg                 # results go to results/<name>/ (default: the file's stem)
    model: vgg                # logreg | cifarnet | small_vgg | vgg
    dataset: cifar10          # optional: the model's dataset (mnist | cifar10)
    epochs: 150
    batch_size: 128
    val_batch_size: 1024
    lr_schedule: linear       # linear: lr0 * (1 - e / epochs) in epoch e; constant; or
                              # cosine, step with parameters (experiments.schedules):
                              # {name: step, every: 50, factor: 0.1}
    augmentation: flip        # flip | none (default: flip for CIFAR-10, none for MNIST)
    train_subset: null        # use only the first N training examples (smoke tests)
    val_subset: null          # use only the first N validation examples
    subtract_mean: true       # setup keys (experiments.setup): training mean off the images
    he_gain: relu             # HeNormal gain: relu (sqrt 2) or a number
    val_average: batches      # validation means over examples | batches
    maxpool_tie_gradient: all # pooling gradient to all tied maxima | the first
    precision: highest        # convolutions and products: default | highest | tf32 | bf16
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
``amsgrad`` library (``adam``, ``amsgrad``, ``adamw``, ``sgd``, ``momentum``,
``nesterov_momentum``), and a rule takes the keys :mod:`experiments.run_schema` lists for it
(``learning_rate``; the Adam family ``beta1``, ``beta2``, ``epsilon``, ``bias_correction``
and ``variant``; ``adamw`` also ``weight_decay`` and ``amsgrad``; the momentum rules
``momentum``). In a grid that mixes rules, a run gets only the keys its rule takes, a key
no rule of the grid takes is an error, and ``rules:`` gives a rule values of its own, a
list being an axis of that rule and a single value fixing it::

    grid:
      updater: [adam, amsgrad, momentum]
      learning_rate: [0.01, 0.001]
      beta2: [0.99, 0.999]
    rules:
      momentum: {learning_rate: [0.1, 0.01], momentum: 0.9}

The setup keys
(:mod:`experiments.setup`) are fixed for a grid; a missing one means what the code
did before it existed (no mean subtraction for CIFAR-10, MNIST's subtracted; gain
``relu``; ``examples``; ``all``; ``default``), and one that does not apply to the
model (``he_gain`` for logreg) may only be given at that value. ``resources`` only says where
runs may go (``--executor ray``), ``analysis`` what the report compares; neither is part
of the experiment (not in ``grid.yaml``, run ids or a run's config). ``lr_schedule`` is a
name or a mapping with its parameters (:mod:`experiments.schedules`). Any key may also be
set on the command line (``run_grid.py --set key=value``, :mod:`experiments.overrides`):
the data is changed before it is validated here, and a changed experiment gets a grid
name of its own. Numbers such as ``1e-8`` may
be written without a dot (plain YAML 1.1 would read them as strings).

The synthetic problem of the AMSGrad paper (``kind: synthetic``) is one run of
several lanes; its keys are those of :data:`experiments.synthetic.DEFAULTS`
(``problems``, ``rules``, ``steps``, ``learning_rate``, ``beta1``, ``beta2``,
``epsilon``, ``bias_correction``, ``lr_decay``, ``seed``, ``record_every``, ``dtype``).
"""
import os
import re
from dataclasses import dataclass, field

import yaml

from experiments.config import run_keys

from experiments.config import schedules

from experiments.config import setup_keys
from experiments.models import get_model
from experiments.synthetic import DTYPES, LR_DECAYS, PROBLEMS  # one definition each
from experiments.synthetic import RULES as SYNTHETIC_RULES  # the library's variants too
from experiments.config.axes import grid_axes, grid_fixed
from experiments.config.run_keys import (AXES, INF, KEYS, RULES, Bad, boolean, choice, integer,
                                    list_of, number, shown, takes)

KINDS = ("train", "synthetic")
DATASETS = run_keys.DATASETS
UPDATERS = RULES
LR_SCHEDULES = tuple(schedules.SCHEDULES)
AUGMENTATIONS = run_keys.AUGMENTATIONS

__all__ = ["ConfigError", "GridConfig", "load_config", "read_config", "parse_config",
           "check_value", "did_you_mean", "KINDS", "TRAIN_KEYS", "SYNTHETIC_KEYS",
           "UPDATERS", "LR_SCHEDULES", "AUGMENTATIONS", "PROBLEMS", "LR_DECAYS", "AXES"]


class ConfigError(ValueError):
    """A mistake in a config: the message is one line naming file, key and problem;
    ``key`` (e.g. ``'grid.beta2'``) and ``problem`` are those parts, when there is a key."""

    def __init__(self, message, key=None, problem=None):
        super().__init__(message)
        self.key, self.problem = key, problem


def _name(v):
    if not isinstance(v, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.=-]*", v):
        raise Bad(f"expected a folder name (letters, digits, _ . = -), got {shown(v)}")
    return v


def check_value(key, value):
    """Check one value of the training setting ``key`` (as on a grid axis, or given to
    ``--only``); returns it normalised or raises ``ValueError`` saying what was expected."""
    return run_keys.check(key, value)


def did_you_mean(word, candidates):
    """`` (did you mean 'x'?)`` for the closest of ``candidates``, or ``''``."""
    return run_keys.did_you_mean(word, candidates, ALIASES)


# The training keys but the setup keys, as (checker, default); a default of REQUIRED
# must be given. A view of experiments.run_keys.TABLE.
HYPERPARAMETERS = {k: (KEYS[k].check, KEYS[k].default) for k in run_keys.OPTIMIZER_KEYS}
TRAIN_KEYS = {k: (KEYS[k].check, KEYS[k].default)
              for k in run_keys.SETTING_KEYS + run_keys.OPTIMIZER_KEYS}
# The synthetic experiment is one run of several lanes; its keys are those of
# experiments.synthetic.DEFAULTS, which also supplies the defaults (None here).
SYNTHETIC_KEYS = {
    "problems": (list_of(choice("problem", PROBLEMS)), None),
    "rules": (list_of(choice("rule", SYNTHETIC_RULES)), None),
    "steps": (integer(1), None),
    "record_every": (integer(1), None),
    "learning_rate": (number(0, INF, low_open=True), None),
    "beta1": (number(0, 1, high_open=True), None),
    "beta2": (number(0, 1, high_open=True), None),
    "epsilon": (number(0, INF), None),
    "bias_correction": (boolean, None),
    "lr_decay": (choice("lr_decay", LR_DECAYS), None),
    "seed": (integer(0), None),
    "dtype": (choice("dtype", DTYPES), None),
}
# What a run asks of a Ray cluster (``resources:``): not settings of the experiment.
RESOURCES = {"num_cpus": number(0, INF, low_open=True), "num_gpus": number(0, INF)}
# Short names a user may reach for (most are the labels of run ids).
ALIASES = {**run_keys.ALIASES, "seed": "seeds", "gpus": "num_gpus", "cpus": "num_cpus"}


@dataclass(frozen=True)
class GridConfig:
    """A validated config.

    ``fixed`` holds every setting with its default filled in (keys that are axes
    excluded), ``grid`` the axes in run-id order, ``seeds`` the seeds. For
    ``kind: synthetic``, ``fixed`` holds the keys as given and ``grid``/``seeds`` are empty.
    """
    name: str
    kind: str
    fixed: dict
    grid: dict
    seeds: tuple
    path: str = field(default="<config>", compare=False)
    resources: dict = field(default_factory=dict, compare=False)
    rules: dict = field(default_factory=dict)
    analysis: dict = field(default_factory=dict, compare=False)

    def rule_settings(self, rule):
        """``(fixed, axes)`` of the runs of ``rule``: the settings and axes it takes,
        its own values of ``rules:`` in place of the grid's (a list: an axis)."""
        fixed = {k: v for k, v in self.fixed.items() if takes(rule, k)}
        axes = {k: v for k, v in self.grid.items() if k != "updater" and takes(rule, k)}
        for key, value in self.rules.get(rule, {}).items():
            (fixed.pop if isinstance(value, tuple) else axes.pop)(key, None)
            (axes if isinstance(value, tuple) else fixed)[key] = value
        return fixed, {k: axes[k] for k in AXES if k in axes}

    def to_dict(self):
        """The config as plain YAML-able data (fixed settings at the top level)."""
        data = {"name": self.name, "kind": self.kind, **self.fixed,
                "grid": {k: list(v) for k, v in self.grid.items()}, "seeds": list(self.seeds)}
        if self.rules:
            data["rules"] = {r: {k: list(v) if isinstance(v, tuple) else v
                                 for k, v in own.items()} for r, own in self.rules.items()}
        data = dict(data, resources=dict(self.resources)) if self.resources else data
        return dict(data, analysis=dict(self.analysis)) if self.analysis else data


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.MarkedYAMLError(problem=f"key {key!r} given twice",
                                           problem_mark=key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_config(path):
    """Read and validate the config at ``path``; raises :class:`ConfigError`."""
    path = os.fspath(path)
    default_name = os.path.splitext(os.path.basename(path))[0]
    return parse_config(read_config(path), path=path, default_name=default_name)


def read_config(path):
    """The YAML data of the config at ``path``, not yet validated; raises
    :class:`ConfigError` if it cannot be read or is not YAML."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}:{where} bad YAML: {problem}") from None
    return data


def parse_config(data, path="<config>", default_name=None):
    """Validate config data (as loaded from YAML) into a :class:`GridConfig`."""
    def fail(key, message):
        raise ConfigError(f"{path}: key {key!r}: {message}", key=key, problem=message)

    def check(checker, value, key):
        try:
            return checker(value)
        except Bad as e:
            fail(key, str(e))

    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, "
                          f"got {shown(data)}")
    kind = data.get("kind", "train")
    if kind not in KINDS:
        fail("kind", f"unknown kind {shown(kind)}{did_you_mean(kind, KINDS)}; "
                     f"choose from {', '.join(KINDS)}")
    schema = KEYS if kind == "train" else SYNTHETIC_KEYS
    top = _TOP if kind == "train" else ("name", "kind")
    for key in data:
        if key not in schema and key not in top:
            fail(key, "unknown key" + did_you_mean(key, list(schema) + list(top)))
    name = data.get("name", default_name)
    if name is None:
        fail("name", "missing: name the grid (its results folder)")
    name = check(_name, name, "name")

    if kind == "synthetic":  # one run; experiments.synthetic fills in the defaults
        fixed = {k: check(schema[k][0], data[k], k) for k in schema if k in data}
        return GridConfig(name=name, kind=kind, fixed=fixed, grid={}, seeds=(), path=path)

    grid, rules = grid_axes(data, fail, check)
    fixed = grid_fixed(data, grid, rules, fail, check)

    seeds = data.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = list(range(check(integer(1), seeds, "seeds")))
    seeds = check(list_of(integer(0)), seeds, "seeds")

    model_dataset = get_model(fixed["model"]).dataset
    if fixed["dataset"] is None:
        fixed["dataset"] = model_dataset
    elif fixed["dataset"] != model_dataset:
        fail("dataset", f"model {fixed['model']!r} trains on {model_dataset}, "
                        f"not {fixed['dataset']}")
    if fixed["augmentation"] is None:
        fixed["augmentation"] = DATASETS[fixed["dataset"]]
    for key in setup_keys.KEYS:  # every setup key, a missing one at its legacy value
        fixed[key] = check(KEYS[key].check, data[key], key) if key in data \
            else run_keys.default(key, fixed["dataset"])
        why = setup_keys.not_applicable(key, fixed[key], fixed["model"])
        if why:
            fail(key, f"{why}; leave the key out")

    resources = data.get("resources") or {}
    if not isinstance(resources, dict):
        fail("resources", f"expected a mapping such as {{num_gpus: 1}}, got {shown(resources)}")
    resources = dict(resources)
    for key, value in resources.items():
        if key not in RESOURCES:
            fail(f"resources.{key}", "unknown resource" + did_you_mean(key, RESOURCES)
                 + f"; choose from {', '.join(RESOURCES)}")
        resources[key] = check(RESOURCES[key], value, f"resources.{key}")
    updaters = grid.get("updater") or (fixed.get("updater"),)
    try:
        analysis = check_analysis(data.get("analysis"), updaters)
    except ValueError as e:
        fail(*e.args)
    return GridConfig(name=name, kind=kind, fixed=fixed, grid=grid, seeds=tuple(seeds),
                      path=path, resources=resources, rules=rules, analysis=analysis)


_TOP = ("name", "kind", "grid", "rules", "seeds", "resources", "analysis")


def check_analysis(value, updaters):
    """The ``analysis:`` mapping (``baseline``: a rule, ``candidates``: rules, each one
    of the grid's ``updaters``), normalised; raises ValueError(key, message)."""
    if value is None:
        return {}

    def bad(key, message):
        return ValueError(key, message)

    if not isinstance(value, dict):
        raise bad("analysis", "expected a mapping such as {baseline: adam, candidates: "
                              f"[amsgrad]}}, got {value!r}")
    for key in value:
        if key not in ("baseline", "candidates"):
            raise bad(f"analysis.{key}", "unknown key" + did_you_mean(
                str(key), ("baseline", "candidates")) + "; choose from baseline, candidates")

    def rule(v, key):
        if not isinstance(v, str) or v not in updaters:
            raise bad(key, f"{v!r} is not an updater of this grid"
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
            raise bad("analysis.candidates", f"expected a list of updaters, got {cands!r}")
        if not cands:
            raise bad("analysis.candidates", "empty: give at least one updater")
        out["candidates"] = [rule(c, "analysis.candidates") for c in cands]
        if out.get("baseline") in out["candidates"]:
            raise bad("analysis.candidates", f"{out['baseline']!r} is the baseline; it "
                                             "cannot also be a candidate")
    return out
