"""The keys of a training run: one table, built from the registries.

Every key a run of a training grid has is one :class:`~experiments.config.checks.Key` of
the table (:func:`table`): its check, its default, its label in run ids, whether it may
be a grid axis, whether runs of one program may differ in it, which rules take it, and
whether results written before it existed lack it. The rows are, in the order of run
ids and run configs:

- the settings of a run (:data:`SETTINGS`: model, dataset, epochs, batch sizes,
  ``lr_schedule``, augmentation, subsets), their choices the model, dataset and
  schedule registries' names;
- ``updater`` and every hyperparameter of the registered rules
  (:mod:`experiments.optimizers`), in the order the rules first take them; a key many
  rules take is one row (its default and check per rule: :func:`default`, :func:`check`);
- the setup keys (:data:`experiments.config.setup_keys.KEYS`).

A run holds exactly the keys its rule takes (and every key that is not the
optimizer's). Keys added after results were first written (``legacy``: the setup
keys, ``variant``) mean their default where a stored run lacks them: :func:`canonical`
drops them at that value before a run is hashed or a grid's settings are recorded,
:func:`resolve` fills them in before two are compared, so run ids, ``grid.yaml`` and
config hashes of older results stay as they were. The config (:mod:`experiments.config`),
grid expansion and run ids (:mod:`experiments.config.runs`), grouping, the trainer
(:class:`RunConfig`) and the analysis read this table.

The table follows the registry: a rule registered later (a plugin, or an optax rule
named by a config) adds its keys, so the views (``AXES``, ``KEYS``, ``ID_LABELS``,
``OPTIMIZER_KEYS``, ``RULES``) are read from :func:`table` when asked for.
"""
import dataclasses

from experiments import models, optimizers
from experiments.config import schedules, setup_keys
from experiments.config.checks import (REQUIRED, Bad, Key, choice, integer, optional, raising,
                                       shown)
from experiments.data.registry import AUGMENTATIONS, dataset_names

__all__ = ["SETTINGS", "Table", "table", "takes", "rules_taking", "check", "default",
           "resolve", "canonical", "setup_of", "RunConfig", "AXES", "KEYS", "ID_LABELS",
           "OPTIMIZER_KEYS", "RULES", "SETUP_KEYS", "SETTING_KEYS"]

#: The settings of a run besides its optimizer and setup keys.
SETTINGS = (
    Key("model", choice("model", models.model_names), type=str),
    # dataset None: the model's; augmentation None: the dataset's
    Key("dataset", optional(choice("dataset", dataset_names)), None, type=str),
    Key("epochs", integer(1), 150, type=int),
    Key("batch_size", integer(1), 128, type=int),
    Key("val_batch_size", integer(1), 1024, type=int),
    Key("lr_schedule", raising(schedules.normalize), "linear"),  # a name, or a mapping
    Key("augmentation", optional(choice("augmentation", AUGMENTATIONS)), None, type=str),
    Key("train_subset", optional(integer(1)), None, type=int),
    Key("val_subset", optional(integer(1)), None, type=int),
)
SETTING_KEYS = tuple(k.name for k in SETTINGS)
SETUP_KEYS = setup_keys.NAMES


def _check_updater(name):
    if not isinstance(name, str):
        raise Bad(f"expected the name of a rule, got {shown(name)}")
    optimizers.get_rule(name)  # raises UnknownRule (a Bad) naming the registered ones
    return name


class Table:
    """The key table as the rule registry stands: ``rows`` (:class:`Key`), ``keys``
    (name -> row), ``axes`` (keys that may be grid axes, in run-id order),
    ``labels`` (axis -> its label in run ids), ``optimizer_keys``, ``rules``."""

    def __init__(self, rules):
        takers, rows = {}, {}
        for rule in rules:
            for h in rule.hyperparameters:
                takers.setdefault(h.name, []).append(rule.name)
                first = rows.setdefault(h.name, h)
                # compiled in for one rule: compiled in (runs differing in it train apart)
                if first.per_run and not h.per_run:
                    rows[h.name] = dataclasses.replace(first, per_run=False)
        updater = Key("updater", _check_updater, label=None, axis=True, per_run=True,
                      rules=tuple(r.name for r in rules), type=str)
        optimizer = tuple(Key(h.name, h.check, h.default, h.label, True, h.per_run,
                              tuple(takers[h.name]), h.legacy, h.type) for h in rows.values())
        self.rows = SETTINGS + (updater,) + optimizer + setup_keys.KEYS
        self.keys = {k.name: k for k in self.rows}
        self.axes = tuple(k.name for k in self.rows if k.axis)
        self.labels = {k.name: k.label for k in self.rows if k.axis}
        self.optimizer_keys = ("updater",) + tuple(k.name for k in optimizer)
        self.rules = updater.rules


_TABLE = [None, None]  # (registry version, Table)


def table():
    """The key table of the registry as it stands (rebuilt after a registration)."""
    version = optimizers.registry_version()
    if _TABLE[0] != version:
        _TABLE[:] = [version, Table(optimizers.registered_rules())]
    return _TABLE[1]


_VIEWS = {"AXES": "axes", "KEYS": "keys", "ID_LABELS": "labels",
          "OPTIMIZER_KEYS": "optimizer_keys", "RULES": "rules"}


def __getattr__(name):  # the views follow the registry (PEP 562)
    if name in _VIEWS:
        return getattr(table(), _VIEWS[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def takes(rule, key):
    """Whether a run of ``rule`` has ``key`` (every run has the keys no rule owns)."""
    row = table().keys[key]
    return row.rules is None or (key == "updater" or optimizers.get_rule(rule).takes(key))


def rules_taking(key):
    """The registered rules that take ``key`` (all, for a key of every run)."""
    return table().keys[key].rules or table().rules


def check(key, value, rule=None):
    """``value`` of ``key`` normalised (by ``rule``'s own check where it has one);
    ``ValueError`` saying what was expected."""
    row = table().keys[key]
    checker = row.check
    if rule is not None and row.rules is not None and key != "updater":
        checker = optimizers.get_rule(rule).hyperparameter(key).check
    try:
        return checker(value)
    except Bad as e:
        raise ValueError(str(e)) from None


def default(key, dataset=None, rule=None):
    """What a config that leaves ``key`` out gets for a run of ``rule`` on ``dataset``."""
    row = table().keys[key]
    value = row.default
    if rule is not None and row.rules is not None and key != "updater":
        value = optimizers.get_rule(rule).hyperparameter(key).default
    return value(dataset) if callable(value) else value


def _dataset(run):
    if run.get("dataset") is None and "model" not in run:
        return None
    return run.get("dataset") or models.model_dataset(run["model"])


def _legacy(run):
    """``{key: value}``: what each legacy key ``run`` may have means when missing."""
    dataset, rule = _dataset(run), run.get("updater")
    return {k.name: default(k.name, dataset, rule) for k in table().rows
            if _is_legacy(k, rule) and (dataset is not None or k.name not in SETUP_KEYS)
            and (rule is None or takes(rule, k.name))}


def _is_legacy(row, rule):
    """Whether results written before ``row``'s key existed lack it: the rule's own
    flag for a key of rules (AdaBound's ``variant`` came with the rule, Adam's later)."""
    if row.rules is None or rule is None or row.name == "updater" \
            or not optimizers.get_rule(rule).takes(row.name):
        return row.legacy
    return optimizers.get_rule(rule).hyperparameter(row.name).legacy


def resolve(run):
    """``run`` (a run, or a grid's settings) with the legacy keys it may have filled in
    at their defaults: how results written before those keys existed read now. A key
    owned by rules is filled in only where the run names its rule."""
    legacy = _legacy(run)
    if run.get("updater") is None:
        legacy = {k: v for k, v in legacy.items() if table().keys[k].rules is None}
    return {**run, **{k: v for k, v in legacy.items() if k not in run}}


def canonical(run):
    """``run`` without the legacy keys at their defaults: what identifies a run (its
    config hash) and a grid (``grid.yaml``), as before those keys existed."""
    legacy = _legacy(run)
    return {k: v for k, v in run.items() if k not in legacy or v != legacy[k]}


def setup_of(run):
    """The :class:`~experiments.config.setup_keys.SetupKeys` of a run or a grid's fixed
    settings (a missing key: its default, what the code did before it existed)."""
    resolved = resolve(run)
    return setup_keys.SetupKeys(**{k: resolved[k] for k in SETUP_KEYS})


_EXTRA = (("name", str), ("run_id", str), ("seed", int))
_RunConfigBase = dataclasses.make_dataclass(
    "_RunConfigBase", [(k.name, k.type, None) for k in SETTINGS]
    + [("updater", str, None), ("hyperparameters", tuple, ())]
    + [(k.name, k.type, None) for k in setup_keys.KEYS]
    + [(name, t, None) for name, t in _EXTRA], frozen=True)


class RunConfig(_RunConfigBase):
    """A checked run: its settings, rule, setup keys, name, run id and seed as typed
    attributes, frozen; the rule's hyperparameters in ``hyperparameters`` (``(name,
    value)`` pairs, the learning rate first) and as attributes too (``config.beta2``;
    ``None`` for a key of the table its rule does not take). :meth:`from_run` builds it
    from a run dict (as :func:`experiments.config.runs.expand_grid` makes them); the
    trainer reads runs through it."""

    def __setattr__(self, name, value):  # frozen, the rule's keys too
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __getattr__(self, name):  # the rule's keys as attributes
        if name.startswith("_") or name == "hyperparameters":
            raise AttributeError(name)
        values = dict(object.__getattribute__(self, "hyperparameters"))
        if name in values:
            return values[name]
        if name in table().keys:
            return None
        raise AttributeError(f"a run has no key {name!r}")

    @classmethod
    def from_run(cls, run):
        """Check every key of ``run`` with the table and fill in the defaults; a key
        the table does not know is a ``ValueError``, one of another rule is ignored."""
        keys = table().keys
        unknown = [k for k in run if k not in keys and k not in dict(_EXTRA)]
        if unknown:
            raise ValueError(f"unknown run key {unknown[0]!r}")
        if "model" not in run:
            raise ValueError(f"a run needs a 'model', got {sorted(run)}")
        rule = check("updater", run["updater"]) if "updater" in run else None
        dataset = check("dataset", run.get("dataset")) or models.model_dataset(run["model"])
        values = {"dataset": dataset}
        for row in SETTINGS[2:] + setup_keys.KEYS:
            values[row.name] = _value(row, run, row.default, dataset)
        values["model"] = check("model", run["model"])
        if rule is not None:
            entry = optimizers.get_rule(rule)
            values["updater"] = rule
            values["hyperparameters"] = tuple(
                (h.name, _value(h, run, h.default, dataset)) for h in entry.hyperparameters)
        extra = {name: run[name] for name, _ in _EXTRA if name in run}
        return cls(**values, **extra)

    def as_run(self):
        """The run dict: its settings, the keys its rule takes, its setup keys, and
        name, run_id and seed, in the table's order."""
        out = {k.name: getattr(self, k.name) for k in SETTINGS}
        if self.updater is not None:
            out["updater"] = self.updater
            out.update(self.hyperparameters)
        out.update((k.name, getattr(self, k.name)) for k in setup_keys.KEYS)
        out.update((name, getattr(self, name)) for name, _ in _EXTRA
                   if getattr(self, name) is not None)
        return {**{k: out[k] for k in ("name", "run_id") if k in out},
                **{k: v for k, v in out.items() if k not in ("name", "run_id")}}

    @property
    def learning_rate(self):
        return dict(self.hyperparameters).get("learning_rate")

    def optimizer(self):
        """The run's :class:`~experiments.optimizers.Optimizer` (its rule and values)."""
        return optimizers.Optimizer.of(self.updater, **dict(self.hyperparameters))

    def setup_keys(self):
        """The run's :class:`~experiments.config.setup_keys.SetupKeys`."""
        return setup_keys.SetupKeys(**{k: getattr(self, k) for k in SETUP_KEYS})


def _value(row, run, default, dataset):
    """``run``'s value of ``row`` checked, or its default."""
    if row.name not in run:
        if default is REQUIRED:
            raise ValueError(f"a run needs {row.name!r}")
        return default(dataset) if callable(default) else default
    try:
        return row.check(run[row.name])
    except Bad as e:
        raise ValueError(f"{row.name}: {e}") from None
