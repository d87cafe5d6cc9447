"""The synthetic problem's config (``kind: synthetic``): its keys, checked like every other.

The problem of the AMSGrad paper (section 5) is one run of several lanes, a lane per
(problem, rule, beta2); its keys are :data:`KEYS`, whose defaults are the paper's
setting, and :func:`parse_synthetic` fills them in. :mod:`experiments.synthetic` runs it.
A rule is any of the registry's (:mod:`experiments.optimizers`), or ``<rule>_<variant>``
for one of its forms (:func:`lane_rule`); ``beta2`` a number or a list (a sweep).
"""
import dataclasses

from experiments import optimizers
from experiments.config.checks import (INF, Bad, Key, boolean, choice, did_you_mean, integer,
                                       list_of, number)
from experiments.config.schedules import STEP_DECAYS

__all__ = ["PROBLEMS", "DTYPES", "KEYS", "DEFAULTS", "SyntheticConfig", "parse_synthetic",
           "lane_rule"]

PROBLEMS = ("online", "stochastic")
DTYPES = ("float32", "float64")


def lane_rule(name):
    """``(rule, values)`` of a lane's rule name: a registered rule, or
    ``<rule>_<variant>`` for a form of a rule that has variants (``amsgrad_optax`` is
    ``('amsgrad', {'variant': 'optax'})``). :class:`~experiments.config.checks.Bad`
    naming the problem otherwise."""
    if not isinstance(name, str):
        raise Bad(f"expected the name of a rule, got {name!r}")
    if optimizers.is_rule(name):  # registered, or optax's rule of that name
        return name, {}
    rule, _, variant = name.rpartition("_")
    if optimizers.is_rule(rule) and optimizers.get_rule(rule).takes("variant"):
        optimizers.get_rule(rule).hyperparameter("variant").check(variant)
        return rule, {"variant": variant}
    forms = [f"{r}_<variant>" for r in optimizers.rule_names()
             if optimizers.get_rule(r).takes("variant")]
    raise Bad(f"unknown rule {name!r}{did_you_mean(name, optimizers.rule_names())}; choose "
              f"from {', '.join(optimizers.rule_names())}, {', '.join(forms)}, or any rule "
              f"optax ships (e.g. radam)")


def _rule(name):
    lane_rule(name)
    return name


def _beta2s(value):
    """One beta2, or a list of them (a lane per value)."""
    check = number(0, 1, high_open=True)
    return list_of(check)(value) if isinstance(value, list) else check(value)


KEYS = (
    Key("problems", list_of(choice("problem", PROBLEMS)), list(PROBLEMS)),
    Key("rules", list_of(_rule), ["adam", "amsgrad"]),
    Key("steps", integer(1), 9_000_000),
    Key("learning_rate", number(0, INF, low_open=True), 0.001),
    Key("beta1", number(0, 1, high_open=True), 0.9),
    Key("beta2", _beta2s, 0.99),
    Key("epsilon", number(0, INF), 1e-8),
    Key("bias_correction", boolean, False),
    Key("lr_decay", choice("lr_decay", STEP_DECAYS), "constant"),  # sqrt: lr / sqrt(t)
    Key("seed", integer(0), 0),  # the stochastic problem's draws
    Key("record_every", integer(1), 1000),
    Key("dtype", choice("dtype", DTYPES), "float32"),
)
#: The paper's setting: what a key left out means.
DEFAULTS = {k.name: k.default for k in KEYS}


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """A checked synthetic config: ``settings`` holds every key of :data:`KEYS`."""
    name: str
    settings: dict
    path: str = dataclasses.field(default="<config>", compare=False)
    kind: str = "synthetic"

    def experiment(self):
        """What defines the experiment, flat (for the name of a changed copy)."""
        return {"kind": self.kind, **self.settings}

    def to_dict(self):
        return {"name": self.name, "kind": self.kind, **self.settings}


def parse_synthetic(data, name, checker):
    """``data`` (a config's YAML) as a :class:`SyntheticConfig`; ``checker`` raises the
    config's one-line errors."""
    checker.known_keys(data, ("name", "kind") + tuple(DEFAULTS))
    settings = {k.name: checker.check(k.check, data[k.name], k.name) if k.name in data
                else k.default for k in KEYS}
    return SyntheticConfig(name, settings, checker.path)
