"""The synthetic problem's config (``kind: synthetic``): its keys, checked like every other.

The problem of the AMSGrad paper (section 5) is one run of several lanes, a lane per
(problem, rule); its keys are :data:`KEYS`, whose defaults are the paper's setting, and
:func:`parse_synthetic` fills them in. :mod:`experiments.synthetic` runs it.
"""
import dataclasses

from amsgrad.rules import VARIANTS
from experiments.config.checks import INF, Key, boolean, choice, integer, list_of, number
from experiments.config.schedules import STEP_DECAYS

__all__ = ["PROBLEMS", "RULES", "DTYPES", "KEYS", "DEFAULTS", "SyntheticConfig",
           "parse_synthetic"]

PROBLEMS = ("online", "stochastic")
#: Adam and AMSGrad, and each in the other libraries' forms (amsgrad_pytorch, ...).
RULES = ("adam", "amsgrad") + tuple(f"{rule}_{variant}" for variant in VARIANTS[1:]
                                    for rule in ("adam", "amsgrad"))
DTYPES = ("float32", "float64")

KEYS = (
    Key("problems", list_of(choice("problem", PROBLEMS)), list(PROBLEMS)),
    Key("rules", list_of(choice("rule", RULES)), ["adam", "amsgrad"]),
    Key("steps", integer(1), 9_000_000),
    Key("learning_rate", number(0, INF, low_open=True), 0.001),
    Key("beta1", number(0, 1, high_open=True), 0.9),
    Key("beta2", number(0, 1, high_open=True), 0.99),
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
