"""The run schema: one table of the keys of a training run, and what is built from it.

Every key a run of a training grid has is one :class:`Key` of :data:`TABLE`: its name,
the check of its values, its default, its label in run ids, whether it may be a grid
axis, whether it may differ between the runs of one group, which rules of the
``amsgrad`` library take it, and whether results written before it existed lack it.
The config (:mod:`experiments.config`), grid expansion, run ids and ``--only``
(:mod:`experiments.grid.runs`), grouping (:mod:`experiments.grid.grouping`), the trainer
(:mod:`experiments.training`: :class:`RunConfig`) and the engines
(:class:`~experiments.engines.base.Hyperparameters`) all read this table.

Rules are the library's (:mod:`amsgrad.updates`, :mod:`amsgrad.optax`), under its names:

=====================  ===============================================================
``adam``, ``amsgrad``  ``learning_rate``, ``beta1``, ``beta2``, ``epsilon``,
                       ``bias_correction``, ``variant`` (lasagne | pytorch | optax)
``adamw``              the same, ``weight_decay`` (decoupled, Loshchilov & Hutter) and
                       ``amsgrad`` (true: AMSGrad's running maximum)
``sgd``                ``learning_rate``
``momentum``,          ``learning_rate``, ``momentum``
``nesterov_momentum``
=====================  ===============================================================

A run holds exactly the keys its rule takes (and every key that is not the
optimizer's). Keys added after results were first written (``legacy=True``: the setup
keys of :mod:`experiments.setup`, ``variant``) mean their default where a stored run
lacks them: :func:`canonical` drops them at that value before a run is hashed or a
grid's settings are recorded, :func:`resolve` fills them in before two are compared,
so run ids, ``grid.yaml`` and config hashes of older results stay as they were.
"""
import difflib
import functools
import math
import re
from dataclasses import dataclass, fields, make_dataclass

import numpy as np

from amsgrad.rules import VARIANTS

from experiments.config import schedules, setup_keys
from experiments.models import MODEL_NAMES, get_model

__all__ = ["Key", "Bad", "TABLE", "KEYS", "RULES", "ADAM_FAMILY", "VARIANTS", "AXES",
           "PER_RUN_KEYS", "ID_LABELS", "SETTING_KEYS", "OPTIMIZER_KEYS", "SETUP_KEYS",
           "family", "takes", "rules_taking", "check", "default", "resolve", "canonical",
           "list_of", "RunConfig"]

#: The rules of the library a run may follow, under the library's names.
RULES = ("adam", "amsgrad", "adamw", "sgd", "momentum", "nesterov_momentum")
#: One rule with switches (the AMSGrad maximum, the decay): runs of all three group.
ADAM_FAMILY = ("adam", "amsgrad", "adamw")
DATASETS = {"mnist": "none", "cifar10": "flip"}  # dataset -> default augmentation
AUGMENTATIONS = ("none", "flip")
INF = float("inf")
REQUIRED = object()  # a default that means: must be given


class Bad(Exception):
    """A value a check refuses; the message says what was expected."""


def shown(value):
    """A value as the user wrote it (YAML spelling), short."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return repr(value)
    return {list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


# Value checkers: return the normalised value or raise Bad with what was expected.
def integer(minimum):
    def check_integer(v):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise Bad(f"expected an integer, got {shown(v)}")
        if v < minimum:
            raise Bad(f"expected an integer >= {minimum}, got {v}")
        return int(v)
    return check_integer


def optional(check_value):
    return lambda v: None if v is None else check_value(v)


def number(low, high, low_open=False, high_open=False):
    def check_number(v):
        if isinstance(v, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", v.strip()):
            v = float(v)  # YAML 1.1 reads 1e-8 as a string
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.number)):
            raise Bad(f"expected a number, got {shown(v)}")
        v = float(v)
        if math.isnan(v) or (v < low or (low_open and v == low)) \
                or (v > high or (high_open and v == high)):
            lo, hi = "(" if low_open else "[", ")" if high_open else "]"
            where = f"{'>' if low_open else '>='} {low:g}" if high == INF else \
                f"in {lo}{low:g}, {high:g}{hi}"
            raise Bad(f"expected a number {where}, got {v!r}")
        return v
    return check_number


def boolean(v):
    if not isinstance(v, (bool, np.bool_)):
        raise Bad(f"expected true or false, got {shown(v)}")
    return bool(v)


def choice(what, choices):
    def check_choice(v):
        if not isinstance(v, str) or v not in choices:
            extra = did_you_mean(v, choices) if isinstance(v, str) else ""
            raise Bad(f"unknown {what} {shown(v)}{extra}; choose from {', '.join(choices)}")
        return v
    return check_choice


def list_of(check):
    def check_list(v):
        v = [v] if isinstance(v, str) else v
        if not isinstance(v, list) or not v:
            raise Bad(f"expected a non-empty list, got {shown(v)}")
        checked = [check(x) for x in v]
        if len(set(checked)) != len(checked):
            raise Bad(f"{shown(next(x for x in checked if checked.count(x) > 1))} given twice")
        return checked
    return check_list


def _raising(check_value):
    """A checker raising ValueError (another module's) as one of ours."""
    def checked(v):
        try:
            return check_value(v)
        except ValueError as e:
            raise Bad(str(e)) from None
    return checked


#: Names a user may reach for: the labels of run ids, and the engines' old rule name.
ALIASES = {"lr": "learning_rate", "b1": "beta1", "b2": "beta2", "eps": "epsilon",
           "bc": "bias_correction", "mom": "momentum", "wd": "weight_decay", "ams": "amsgrad",
           "nesterov": "nesterov_momentum"}


def did_you_mean(word, candidates, aliases=ALIASES):
    """`` (did you mean 'x'?)`` for the closest of ``candidates``, or ``''``."""
    if aliases.get(word) in candidates:
        return f" (did you mean {aliases[word]!r}?)"
    close = difflib.get_close_matches(str(word), list(candidates), n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass(frozen=True)
class Key:
    """One key of a training run.

    ``check`` normalises a value or raises :class:`Bad`; ``default`` is what a config
    that leaves the key out gets (:data:`REQUIRED`: it must be given; a callable: a
    function of the run's dataset); ``label`` names the key in run ids and ``--only``
    (``None``: the bare value); ``axis``: it may be a grid axis; ``per_run``: runs of
    one group may differ in it; ``rules``: the rules that take it (``None``: every run
    has it); ``legacy``: results written before the key existed lack it, and mean its
    default.
    """
    name: str
    check: object
    default: object = REQUIRED
    label: object = None
    axis: bool = False
    per_run: bool = False
    rules: object = None
    legacy: bool = False
    type: object = object


_ADAM = ADAM_FAMILY
_MOMENTUM = ("momentum", "nesterov_momentum")

#: The keys of a training run, in the order of run ids (axes) and run configs.
TABLE = (
    Key("model", choice("model", MODEL_NAMES), type=str),
    # dataset None: the model's; augmentation None: the dataset's
    Key("dataset", optional(choice("dataset", tuple(DATASETS))), None, type=str),
    Key("epochs", integer(1), 150, type=int),
    Key("batch_size", integer(1), 128, type=int),
    Key("val_batch_size", integer(1), 1024, type=int),
    Key("lr_schedule", _raising(schedules.check), "linear"),  # a name, or a mapping
    Key("augmentation", optional(choice("augmentation", AUGMENTATIONS)), None, type=str),
    Key("train_subset", optional(integer(1)), None, type=int),
    Key("val_subset", optional(integer(1)), None, type=int),
    # the optimizer: the rule and the hyperparameters each rule takes
    Key("updater", choice("updater", RULES), label=None, axis=True,
        per_run=True, rules=RULES, type=str),
    Key("learning_rate", number(0, INF, low_open=True), 0.001, "lr", True, True, RULES,
        type=float),
    Key("beta1", number(0, 1, high_open=True), 0.9, "b1", True, True, _ADAM, type=float),
    Key("beta2", number(0, 1, high_open=True), 0.999, "b2", True, True, _ADAM, type=float),
    Key("epsilon", number(0, INF), 1e-8, "eps", True, True, _ADAM, type=float),
    Key("bias_correction", boolean, True, "bc", True, True, _ADAM, type=bool),
    # compiled into the program (amsgrad.rules.adam_step branches on it): one per group
    Key("variant", choice("variant", VARIANTS), "lasagne", "variant", True, False, _ADAM,
        legacy=True, type=str),
    Key("momentum", number(0, 1, high_open=True), 0.9, "mom", True, True, _MOMENTUM,
        type=float),
    Key("weight_decay", number(0, INF), 0.01, "wd", True, True, ("adamw",), type=float),
    # AdamW with AMSGrad's running maximum (amsgrad.updates.adamw(..., amsgrad=True))
    Key("amsgrad", boolean, False, "ams", True, True, ("adamw",), type=bool),
    # the setup keys (experiments.setup): fixed for a grid
    *(Key(k, _raising(functools.partial(setup_keys.check, k)),
          functools.partial(lambda k, dataset: setup_keys.legacy(k, dataset), k), legacy=True)
      for k in setup_keys.KEYS),
)
KEYS = {k.name: k for k in TABLE}
#: Keys that may be grid axes, in run-id order.
AXES = tuple(k.name for k in TABLE if k.axis)
#: Keys in which the runs of one group may differ (with ``run_id`` and ``seed``).
PER_RUN_KEYS = ("run_id",) + tuple(k.name for k in TABLE if k.per_run) + ("seed",)
#: How each axis appears in run ids (None: the bare value); also accepted by --only.
ID_LABELS = {k.name: k.label for k in TABLE if k.axis}
OPTIMIZER_KEYS = tuple(k.name for k in TABLE if k.rules is not None)
SETUP_KEYS = tuple(setup_keys.KEYS)
SETTING_KEYS = tuple(k.name for k in TABLE
                     if k.name not in OPTIMIZER_KEYS and k.name not in SETUP_KEYS)


def family(rule):
    """The rule a run steps with in a program: 'adam_family' for adam, amsgrad and adamw
    (one rule with switches, so their runs can be stepped together), else the rule."""
    check("updater", rule)
    return "adam_family" if rule in ADAM_FAMILY else rule


def takes(rule, key):
    """Whether a run of ``rule`` has ``key`` (every run has the keys no rule owns)."""
    rules = KEYS[key].rules
    return rules is None or rule in rules


def rules_taking(key):
    """The rules that take ``key`` (all, for a key of every run)."""
    return KEYS[key].rules or RULES


def check(key, value):
    """``value`` of ``key`` normalised; ``ValueError`` saying what was expected."""
    try:
        return KEYS[key].check(value)
    except Bad as e:
        raise ValueError(str(e)) from None


def default(key, dataset=None):
    """What a config that leaves ``key`` out gets for a run on ``dataset``."""
    value = KEYS[key].default
    return value(dataset) if callable(value) else value


def _dataset(run):
    if run.get("dataset") is None and "model" not in run:
        return None
    return run.get("dataset") or get_model(run["model"]).dataset


def _legacy(run):
    """``{key: value}``: what each legacy key ``run`` may have means when missing."""
    dataset = _dataset(run)
    rule = run.get("updater")
    return {k.name: default(k.name, dataset) for k in TABLE if k.legacy
            and (dataset is not None or k.name not in SETUP_KEYS)
            and (rule is None or takes(rule, k.name))}


def resolve(run):
    """``run`` (a run, or a grid's settings) with the legacy keys it may have filled in
    at their defaults: how results written before those keys existed read now. A key
    owned by rules is filled in only where the run names its rule."""
    legacy = _legacy(run)
    if run.get("updater") is None:
        legacy = {k: v for k, v in legacy.items() if KEYS[k].rules is None}
    return {**run, **{k: v for k, v in legacy.items() if k not in run}}


def canonical(run):
    """``run`` without the legacy keys at their defaults: what identifies a run (its
    config hash) and a grid (``grid.yaml``), as before those keys existed."""
    legacy = _legacy(run)
    return {k: v for k, v in run.items() if k not in legacy or v != legacy[k]}


_EXTRA = (("name", str), ("run_id", str), ("seed", int))
_RunConfigBase = make_dataclass(
    "_RunConfigBase", [(k.name, k.type, None) for k in TABLE]
    + [(name, t, None) for name, t in _EXTRA], frozen=True)


class RunConfig(_RunConfigBase):
    """A checked run: every key of :data:`TABLE` as a typed attribute (``None`` for a
    key its rule does not take), frozen. :meth:`from_run` builds it from a run dict
    (as :func:`experiments.grid.runs.expand_grid` makes them); the trainer and the engines
    read runs through it."""

    @classmethod
    def from_run(cls, run):
        """Check every key of ``run`` with the table and fill in the defaults; a key
        the table does not know is a ``ValueError``, one of another rule is ignored."""
        unknown = [k for k in run if k not in KEYS and k not in dict(_EXTRA)]
        if unknown:
            raise ValueError(f"unknown run key {unknown[0]!r}")
        if "model" not in run:
            raise ValueError(f"a run needs a 'model', got {sorted(run)}")
        # without an updater: the run's settings and setup only
        rule = check("updater", run["updater"]) if "updater" in run else None
        dataset = check("dataset", run.get("dataset")) or get_model(run["model"]).dataset
        values = {}
        for key in TABLE:
            if key.rules is not None and rule not in key.rules:
                continue
            if key.name in run:
                try:
                    values[key.name] = key.check(run[key.name])
                except Bad as e:
                    raise ValueError(f"{key.name}: {e}") from None
            elif key.default is not REQUIRED:
                values[key.name] = default(key.name, dataset)
        values["dataset"] = dataset  # None: the model's
        extra = {name: run[name] for name, _ in _EXTRA if name in run}
        return cls(**values, **extra)

    def as_run(self):
        """The run dict: the keys this run's rule takes, and name, run_id and seed."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in KEYS and KEYS[f.name].rules is None or value is not None:
                out[f.name] = value
        return out

    def setup(self):
        """The run's :class:`experiments.setup_keys.Setup`."""
        return setup_keys.Setup(**{k: getattr(self, k) for k in SETUP_KEYS})
