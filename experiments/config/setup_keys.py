"""Setup keys: the choices of a training setup besides the model and the optimizer.

The published runs and the original code's last commit differ in a few choices
(``docs/reproduction/provenance.md``); each is a key of a grid config, so a user can
pick either:

==========================  =========================================================
``subtract_mean``           subtract the training set's per-pixel mean from training
                            and validation images (true | false)
``he_gain``                 gain of the layers initialised HeNormal: ``relu``
                            (sqrt 2) or a number (std = gain * sqrt(1 / fan_in))
``val_average``             validation loss and accuracy as the mean over
                            ``examples``, or over ``batches`` (the unweighted mean of
                            the per-batch means, as the original logs)
``maxpool_tie_gradient``    where max-pooling sends the gradient when several inputs
                            of a window tie: to ``all`` of them (Theano's CPU op) or
                            to the ``first`` in row-major window order (XLA, cuDNN)
``precision``               convolutions and matrix products: ``default`` (the
                            device's: TF32 on recent NVIDIA GPUs, float32 on CPUs),
                            ``highest`` (full float32), ``tf32``, ``bf16``
                            (bfloat16 operands, float32 accumulation)
==========================  =========================================================

A key that is not given means what the code did before the keys existed
(:data:`LEGACY`: no mean subtraction for CIFAR-10 but for MNIST, gain sqrt 2,
averages over examples, the gradient to every tied maximum, the device's precision),
so results written then load and resume unchanged: the run schema
(:mod:`experiments.run_schema`, where these keys are rows of the one table) drops them
at those values before a run config is hashed, and fills them in before two configs
are compared.
"""
import math
from dataclasses import dataclass, fields

from experiments import models

KEYS = ("subtract_mean", "he_gain", "val_average", "maxpool_tie_gradient", "precision")
VAL_AVERAGES = ("examples", "batches")
TIE_GRADIENTS = ("all", "first")
PRECISIONS = ("default", "highest", "tf32", "bf16")
#: What a missing key means (the code before the keys existed).
LEGACY = {"he_gain": "relu", "val_average": "examples", "maxpool_tie_gradient": "all",
          "precision": "default"}
#: ``subtract_mean`` before the keys existed, per dataset.
LEGACY_SUBTRACT_MEAN = {"mnist": True, "cifar10": False}

__all__ = ["KEYS", "LEGACY", "Setup", "check", "legacy", "not_applicable", "he_gain_value",
           "engine_problem"]


def check(key, value):
    """``value`` of setup key ``key`` normalised; ``ValueError`` saying what was expected."""
    def choice(choices):
        if value not in choices:
            shown = "null" if value is None else repr(value)
            raise ValueError(f"expected one of {', '.join(choices)}, got {shown}")
        return value
    if key == "subtract_mean":
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    if key == "he_gain":
        if value == "relu":
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value <= 0:
            raise ValueError(f"expected 'relu' (sqrt 2) or a positive number, got {value!r}")
        return float(value)
    if key == "val_average":
        return choice(VAL_AVERAGES)
    if key == "maxpool_tie_gradient":
        return choice(TIE_GRADIENTS)
    if key == "precision":
        return choice(PRECISIONS)
    raise KeyError(key)


def legacy(key, dataset):
    """What a missing ``key`` means for a run on ``dataset``."""
    return LEGACY_SUBTRACT_MEAN[dataset] if key == "subtract_mean" else LEGACY[key]


def not_applicable(key, value, model):
    """Why ``key: value`` cannot apply to ``model`` (a name), or None. A key that does
    not apply is accepted at its legacy value only."""
    spec = models.get_model(model)
    if value == legacy(key, spec.dataset):
        return None
    if key == "he_gain" and not any(getattr(l, "W", None) == "he" for l in spec.layers):
        return f"model {model!r} has no He-initialised layers"
    if key == "maxpool_tie_gradient" and not any(isinstance(l, models.MaxPool2DLayer)
                                                 for l in spec.layers):
        return f"model {model!r} has no max-pooling"
    return None


def he_gain_value(gain):
    """The number of a ``he_gain`` value: ``'relu'`` is sqrt 2."""
    return math.sqrt(2) if gain == "relu" else float(gain)


def engine_problem(engine, setup):
    """Why ``engine`` ('jax' or 'theano') cannot train ``setup``, or None."""
    if engine != "theano":
        return None
    if setup.maxpool_tie_gradient != "all":
        return (f"maxpool_tie_gradient {setup.maxpool_tie_gradient!r} is not offered by the "
                f"Theano engine (its pooling gradient goes to every tied maximum); use "
                f"--engine jax or maxpool_tie_gradient: all")
    if setup.precision not in ("default", "highest"):
        return (f"precision {setup.precision!r} is not offered by the Theano engine (it "
                f"computes in full float32 on the CPU); use --engine jax or precision: highest")
    return None


@dataclass(frozen=True)
class Setup:
    """The setup keys of one run (see the module docstring); the defaults are
    :data:`LEGACY` (``subtract_mean`` None: the dataset's legacy choice)."""
    subtract_mean: bool = None
    he_gain: object = "relu"
    val_average: str = "examples"
    maxpool_tie_gradient: str = "all"
    precision: str = "default"

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if not (f.name == "subtract_mean" and value is None):
                try:
                    object.__setattr__(self, f.name, check(f.name, value))
                except ValueError as e:
                    raise ValueError(f"{f.name}: {e}") from None

    @classmethod
    def from_run(cls, run):
        """The setup of a run config dict (missing keys: :func:`legacy`)."""
        from experiments.config.run_keys import resolve  # the schema's table holds these keys
        resolved = resolve(run)
        return cls(**{k: resolved[k] for k in KEYS})
