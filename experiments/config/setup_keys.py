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
                            (bfloat16 operands, float32 accumulation); on any
                            device, ``tf32_emulated`` and ``bf16_emulated``: each
                            product's operands rounded to TF32's or bfloat16's
                            mantissa (10 or 7 bits), the product in full float32
                            (what those tensor cores compute, measurable on a CPU)
==========================  =========================================================

They are rows of the key table of a run (:data:`KEYS`, read by
:mod:`experiments.config.run_keys`), checked like every other key. A key that is not
given means what the code did before the keys existed (the ``default`` of each row: the
dataset's own choice of mean subtraction (MNIST's subtracted, CIFAR-10's not), gain
sqrt 2, averages over examples, the gradient to every tied maximum, the device's
precision), so results written then load and resume unchanged: the key table drops
them at those values before a run config is hashed, and fills them in before two
configs are compared.
"""
import math
from dataclasses import dataclass, fields

from experiments.config.checks import Bad, Key, boolean, choice
from experiments.data.registry import get_dataset
from experiments.models import MaxPool2DLayer

__all__ = ["KEYS", "NAMES", "SetupKeys", "default", "not_applicable", "he_gain_value",
           "VAL_AVERAGES", "TIE_GRADIENTS", "PRECISIONS"]

VAL_AVERAGES = ("examples", "batches")
TIE_GRADIENTS = ("all", "first")
PRECISIONS = ("default", "highest", "tf32", "bf16", "tf32_emulated", "bf16_emulated")


def _he_gain(value):
    if value == "relu":
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise Bad(f"expected 'relu' (sqrt 2) or a positive number, got {value!r}")
    return float(value)


def _subtract_mean_of(dataset):
    """What a run on ``dataset`` did before the key existed: the dataset's choice."""
    return get_dataset(dataset).subtract_mean


#: The setup keys as rows of the key table; each default is what the code did before.
KEYS = (
    Key("subtract_mean", boolean, _subtract_mean_of, legacy=True, type=bool),
    Key("he_gain", _he_gain, "relu", legacy=True),
    Key("val_average", choice("val_average", VAL_AVERAGES), "examples", legacy=True, type=str),
    Key("maxpool_tie_gradient", choice("maxpool_tie_gradient", TIE_GRADIENTS), "all",
        legacy=True, type=str),
    Key("precision", choice("precision", PRECISIONS), "default", legacy=True, type=str),
)
NAMES = tuple(k.name for k in KEYS)
_BY_NAME = {k.name: k for k in KEYS}


def default(key, dataset):
    """What a missing setup key ``key`` means for a run on ``dataset``."""
    value = _BY_NAME[key].default
    return value(dataset) if callable(value) else value


def not_applicable(key, value, spec):
    """Why ``key: value`` cannot apply to the model ``spec``, or None. A key that does
    not apply is accepted at its default only."""
    if value == default(key, spec.dataset):
        return None
    if key == "he_gain" and not any(getattr(l, "W", None) == "he" for l in spec.layers):
        return f"model {spec.name!r} has no He-initialised layers"
    if key == "maxpool_tie_gradient" and not any(isinstance(l, MaxPool2DLayer)
                                                 for l in spec.layers):
        return f"model {spec.name!r} has no max-pooling"
    return None


def he_gain_value(gain):
    """The number of a ``he_gain`` value: ``'relu'`` is sqrt 2."""
    return math.sqrt(2) if gain == "relu" else float(gain)


@dataclass(frozen=True)
class SetupKeys:
    """The setup keys of one run (see the module docstring), checked; the defaults are
    what the code did before the keys existed (``subtract_mean`` None: the dataset's)."""
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
                    object.__setattr__(self, f.name, _BY_NAME[f.name].check(value))
                except Bad as e:
                    raise ValueError(f"{f.name}: {e}") from None
