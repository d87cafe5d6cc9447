"""The rule registry: one entry per optimizer rule a grid may name as its ``updater``.

A :class:`Rule` says everything the suite needs of a rule: its name and label, its
hyperparameters (:class:`Hyperparameter`: default, check, label in run ids, whether runs
of one program may differ in it) and its :class:`Family`, the rules that can share one
compiled program. A family owns what a program needs: the optax transformation for one
run or for many (per-run values laid out as the grouped engine stores its runs), the
Lasagne-style factory where the rule has one (the Theano engine), and the optimizer
state's checkpoint names and shapes. Adam, AMSGrad and AdamW are three rules of one
family (AMSGrad's running maximum and AdamW's decay are per-run switches of it).

The key table of a run (:mod:`experiments.config.run_keys`), both engines, checkpoints,
grouping, memory estimates and the analysis read these entries; nothing else knows a
rule by its name. A name the registry does not hold is looked up in optax
(:mod:`experiments.optimizers.from_optax`: any optax rule by name, JAX only), else
refused with one line.

To add a rule: ``register_rule(Rule(...))`` (see :mod:`experiments.optimizers.library`
for the library's rules, and ``tests/test_rule_plugin.py`` for one registered from a test
file).
"""
import dataclasses
from typing import Callable, Mapping, Optional, Tuple

from experiments.config.checks import INF, Bad, did_you_mean, number

__all__ = ["Hyperparameter", "Family", "Rule", "Optimizer", "LEARNING_RATE", "add_finder", "register_rule", "get_rule",
           "rule_names", "registered_rules", "label", "is_rule", "UnknownRule"]


@dataclasses.dataclass(frozen=True)
class Hyperparameter:
    """One hyperparameter of a rule, as a config names it.

    ``check`` normalises a value or raises :class:`~experiments.config.checks.Bad`;
    ``label`` names it in run ids and ``--only`` (None: the bare value); ``per_run``:
    the runs of one compiled program may differ in it (else it is compiled in, and runs
    that differ in it train apart); ``legacy``: results written before the key existed
    lack it and mean its default.
    """
    name: str
    default: object
    check: Callable
    label: Optional[str] = None
    per_run: bool = True
    legacy: bool = False
    type: type = float


@dataclasses.dataclass(frozen=True)
class Family:
    """Rules that can share one compiled program, and what a program of them needs.

    ``transform(values, runs=())`` -> an optax ``GradientTransformation``: ``values`` maps
    every key of the family (the learning rate included) to a number, or for many runs
    to an array laid out as ``runs`` (``(S, R)``: see :mod:`amsgrad.optax`), the keys of
    ``static`` being plain values (compiled in); a switch at its ``off`` value for every
    run is given as that plain value, which leaves it out of the program.
    ``state_shapes(values, param_shapes)`` -> ordered ``{checkpoint name: shape}`` of the
    optimizer state of one run with ``values`` (the names after ``opt:``, the step count
    ``opt:t`` apart); ``state_arrays(state)`` -> those arrays of an optax state (of one run,
    or stored as a group stores them), ``load_state(state, arrays)`` -> the state with
    them in place. ``lasagne(loss_or_grads, params, learning_rate, **values)`` -> an
    ``OrderedDict`` of Theano/PyTensor updates whose shared variables are named
    ``<param>.<slot>`` for checkpoint name ``<slot>:<param>`` (None: JAX only).
    ``groups``: how runs with different values share a program: ``'native'`` (the
    transformation broadcasts per-run values itself) or ``'vmap'`` (each run's
    transformation mapped over the runs). ``initial_rate``: the transformation takes
    the run's first learning rate too, as ``initial_learning_rate`` (AdaBound's bounds
    follow the schedule relative to it).
    """
    name: str
    transform: Callable
    state_shapes: Callable
    state_arrays: Callable
    load_state: Callable
    lasagne: Optional[Callable] = None
    static: Tuple[str, ...] = ()
    off: Mapping = dataclasses.field(default_factory=dict)
    groups: str = "native"
    initial_rate: bool = False

    def __repr__(self):
        return f"Family({self.name!r})"

    def __hash__(self):  # one family per name (its fields hold dicts)
        return hash(("family", self.name))

    def group_values(self, runs_values, shape, dtype=None):
        """The values of many runs for :attr:`transform` (``runs=shape``), from one
        dict of :meth:`Optimizer.family_values` per run (in storage order, ``S * R``):
        each value that runs may differ in as a numpy array of ``shape`` (booleans for
        switches, ``dtype`` else: float32 by default); the ``static`` ones (equal in
        every run) plain; a
        switch of ``off`` that no run uses plain at that value, which leaves it out of
        the program. Returns ``(values, unused)``, ``unused`` the switches left out."""
        import numpy as np
        out, unused = {}, []
        for key in runs_values[0]:
            column = [v[key] for v in runs_values]
            if key in self.static:
                out[key] = column[0]
            elif key in self.off and all(v == self.off[key] for v in column):
                out[key], unused = self.off[key], unused + [key]
            else:
                kind = bool if isinstance(column[0], (bool, np.bool_)) else dtype or np.float32
                out[key] = np.asarray(column, kind).reshape(shape)
        return out, tuple(unused)


@dataclasses.dataclass(frozen=True)
class Rule:
    """An optimizer rule: ``name`` (the ``updater`` value), ``family``,
    ``hyperparameters`` (learning rate first), ``fixed`` (the family's values this rule
    sets: Adam's ``amsgrad`` is false), ``label`` (in figures and text), ``reference``,
    ``colors`` (its lines' colour in figures and a lighter shade for bias correction off;
    None: one of a palette)."""
    name: str
    family: Family
    hyperparameters: Tuple[Hyperparameter, ...]
    fixed: Mapping = dataclasses.field(default_factory=dict)
    label: str = None
    reference: str = ""
    colors: Optional[Tuple[str, str]] = None

    def __post_init__(self):
        if not self.hyperparameters or self.hyperparameters[0].name != "learning_rate":
            raise ValueError(f"rule {self.name!r}: its first hyperparameter must be "
                             "learning_rate")
        if self.label is None:
            object.__setattr__(self, "label", self.name)

    def __repr__(self):
        return f"Rule({self.name!r}, family={self.family.name!r})"

    def __hash__(self):  # one rule per name (its fields hold dicts)
        return hash(("rule", self.name))

    def hyperparameter(self, name):
        """The :class:`Hyperparameter` ``name`` of this rule (KeyError if it has none)."""
        for h in self.hyperparameters:
            if h.name == name:
                return h
        raise KeyError(name)

    @property
    def keys(self):
        return tuple(h.name for h in self.hyperparameters)

    def takes(self, name):
        return name in self.keys

    @property
    def trains_on_theano(self):
        return self.family.lasagne is not None


#: Every rule's first hyperparameter (each rule's own default may differ).
LEARNING_RATE = Hyperparameter("learning_rate", 0.001, number(0, INF, low_open=True), "lr")


class UnknownRule(Bad):
    """A rule name neither the registry nor optax knows."""


_RULES = {}  # name -> Rule, in registration order (run ids list keys in that order)
_VERSION = [0]  # bumped by each registration: views built from the registry refresh
_FINDERS = []  # name -> Rule or None: where a name the registry lacks is looked up


def add_finder(finder):
    """Look up names the registry lacks with ``finder(name) -> Rule or None`` (optax's
    rules: :func:`experiments.optimizers.from_optax.optax_rule`); a rule it finds is
    registered."""
    _FINDERS.append(finder)


def register_rule(rule, replace=False):
    """Add ``rule`` to the registry; returns it. A name already taken is a ValueError
    unless ``replace``."""
    if rule.name in _RULES and not replace and _RULES[rule.name] is not rule:
        raise ValueError(f"a rule named {rule.name!r} is registered already")
    _RULES[rule.name] = rule
    _VERSION[0] += 1
    return rule


def registry_version():
    """A number that changes whenever a rule is registered (for caches of views)."""
    return _VERSION[0]


def registered_rules():
    """Every registered rule, in registration order."""
    return tuple(_RULES.values())


def rule_names():
    """The registered rules' names (optax's other rules are found by name on use)."""
    return tuple(_RULES)


def is_rule(name):
    """Whether ``name`` is a rule: registered, or an optax rule (then registered now)."""
    try:
        get_rule(name)
    except UnknownRule:
        return False
    return True


def get_rule(name):
    """The :class:`Rule` called ``name``: a registered one, else one a finder gives
    (optax's rule of that name: :mod:`experiments.optimizers.from_optax`), registered on
    first use. Raises
    :class:`UnknownRule` (a :class:`~experiments.config.checks.Bad`) otherwise."""
    if name in _RULES:
        return _RULES[name]
    if isinstance(name, str) and name.isidentifier() and not name.startswith("_"):
        for finder in _FINDERS:
            rule = finder(name)
            if rule is not None:
                return register_rule(rule)
    known = rule_names()
    raise UnknownRule(f"unknown updater {name!r}{did_you_mean(str(name), known)}; choose "
                      f"from {', '.join(known)}, or any rule optax ships (e.g. yogi, radam)")


def label(name):
    """How text and legends name a rule: its entry's label, else the name as given."""
    rule = _RULES.get(name)
    return rule.label if rule is not None else str(name)


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """A rule with its values: what an engine needs to step one run.

    ``values``: the rule's hyperparameters but the learning rate (which a schedule
    changes every epoch and the engine passes in), as ``(name, value)`` pairs;
    ``initial_learning_rate``: the run's first rate, kept for a family that takes it.
    """
    rule: Rule
    values: Tuple[Tuple[str, object], ...] = ()
    initial_learning_rate: Optional[float] = None

    @classmethod
    def of(cls, name, **values):
        """The rule ``name`` with ``values`` checked and the others at their defaults
        (``learning_rate``, the run's first, is kept only for a family that takes it:
        the engine passes each epoch's)."""
        rule = get_rule(name)
        unknown = [k for k in values if not rule.takes(k)]
        if unknown:
            raise ValueError(f"{name} does not take {unknown[0]!r}; it takes "
                             f"{', '.join(rule.keys)}")
        out = []
        for h in rule.hyperparameters[1:]:
            try:
                out.append((h.name, h.check(values.get(h.name, h.default))))
            except Bad as e:
                raise ValueError(f"{h.name}: {e}") from None
        initial = rule.hyperparameters[0].check(values.get("learning_rate",
                                                           rule.hyperparameters[0].default))
        return cls(rule, tuple(out), initial if rule.family.initial_rate else None)

    @property
    def name(self):
        return self.rule.name

    @property
    def family(self):
        return self.rule.family

    def __getitem__(self, key):
        return dict(self.values)[key]

    def family_values(self, learning_rate=None):
        """Every value of the family for this run: the rule's fixed ones, its own, and
        the learning rate when given."""
        out = {**self.rule.fixed, **dict(self.values)}
        if self.family.initial_rate:
            out["initial_learning_rate"] = self.initial_learning_rate
        return out if learning_rate is None else {**out, "learning_rate": learning_rate}

    def program_key(self):
        """What runs of one program must share: the family and its compiled-in values."""
        values = self.family_values()
        return (self.family.name,) + tuple((k, values.get(k)) for k in self.family.static)

    def transform(self, learning_rate):
        """This run's optax transformation at ``learning_rate`` (a number or a traced
        scalar)."""
        return self.family.transform(self.family_values(learning_rate))

    def state_shapes(self, param_shapes):
        """Ordered ``{checkpoint name: shape}`` of this run's optimizer state."""
        return self.family.state_shapes(self.family_values(), param_shapes)

    def lasagne(self, loss_or_grads, params, learning_rate):
        """The Lasagne-style updates of this run (Theano or PyTensor shared variables)."""
        if self.family.lasagne is None:
            raise ValueError(f"updater {self.name!r} has no Lasagne-style face: it trains "
                             f"on the JAX engine only")
        return self.family.lasagne(loss_or_grads, params, learning_rate,
                                   **self.family_values())

    def as_dict(self):
        return {"updater": self.name, **dict(self.values)}
