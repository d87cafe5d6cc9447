"""The ``amsgrad`` library's rules as registry entries.

Each family's optax face is :mod:`amsgrad.optax` (per-run values broadcast natively,
a step count per run) and its Lasagne-style face :mod:`amsgrad.updates`, so both
engines step the same formulas (:mod:`amsgrad.rules`). Rules are registered in the
order of the keys of run ids: a grid's keys are listed in the order their rules
first take them (Adam's, then ``momentum``, then AdamW's ``weight_decay`` and
``amsgrad``), the order run ids always had.
"""
import functools

from amsgrad import updates as lasagne_updates
from amsgrad.rules import VARIANTS
from experiments.config.checks import INF, boolean, choice, number
from experiments.optimizers import state_names
from experiments.optimizers.registry import (LEARNING_RATE, Family, Hyperparameter, Rule,
                                             register_rule)

__all__ = ["ADAM_FAMILY", "SGD", "MOMENTUM", "library_family"]

#: The optax state fields of amsgrad.optax under the Lasagne face's slot names.
RENAME = {"mu": "m", "nu": "v", "nu_max": "v_hat", "count": "t"}

BETA1 = Hyperparameter("beta1", 0.9, number(0, 1, high_open=True), "b1")
BETA2 = Hyperparameter("beta2", 0.999, number(0, 1, high_open=True), "b2")
EPSILON = Hyperparameter("epsilon", 1e-8, number(0, INF), "eps")
BIAS_CORRECTION = Hyperparameter("bias_correction", True, boolean, "bc", type=bool)
# compiled into the program (amsgrad.rules.adam_step branches on it): one per group
VARIANT = Hyperparameter("variant", "lasagne", choice("variant", VARIANTS), "variant",
                         per_run=False, legacy=True, type=str)
MOMENTUM_KEY = Hyperparameter("momentum", 0.9, number(0, 1, high_open=True), "mom")
WEIGHT_DECAY = Hyperparameter("weight_decay", 0.01, number(0, INF), "wd")
# AdamW with AMSGrad's running maximum (amsgrad.updates.adamw(..., amsgrad=True))
AMSGRAD = Hyperparameter("amsgrad", False, boolean, "ams", type=bool)


def _face():
    """:mod:`amsgrad.optax`, imported when a program is built: it imports jax, which
    takes seconds, and a config is read and checked without it."""
    from amsgrad import optax as face
    return face


def library_family(name, transform, slots, lasagne, **options):
    """A :class:`~experiments.optimizers.registry.Family` of the library: its state
    named by :data:`RENAME`; ``slots(values)`` -> the parameter-shaped slots of one run."""
    def shapes(values, param_shapes):
        return {f"{slot}:{p}": tuple(s) for slot in slots(values)
                for p, s in param_shapes.items()}
    return Family(name, transform, shapes,
                  functools.partial(state_names.state_arrays, rename=RENAME),
                  functools.partial(state_names.load_state, rename=RENAME),
                  lasagne=lasagne, **options)


def _adam_transform(values, runs=()):
    return _face().adam_family(
        learning_rate=values["learning_rate"], beta1=values["beta1"], beta2=values["beta2"],
        epsilon=values["epsilon"], bias_correction=values["bias_correction"],
        amsgrad=values["amsgrad"], variant=values["variant"],
        weight_decay=values["weight_decay"], runs=runs)


def _adam_slots(values):
    # a group keeps the maximum for every run where any run takes it (amsgrad an array)
    return ("m", "v", "v_hat") if values["amsgrad"] is not False else ("m", "v")


def _adam_lasagne(loss_or_grads, params, learning_rate, **values):
    return lasagne_updates.adam_family(loss_or_grads, params, learning_rate, **values)


ADAM_FAMILY = library_family("adam_family", _adam_transform, _adam_slots, _adam_lasagne,
                             static=("variant",), off={"amsgrad": False, "weight_decay": 0.0})
_ADAM = (LEARNING_RATE, BETA1, BETA2, EPSILON, BIAS_CORRECTION, VARIANT)

SGD = library_family("sgd", lambda values, runs=(): _face().sgd(values["learning_rate"]),
                     lambda values: (),
                     lambda loss, params, learning_rate: lasagne_updates.sgd(
                         loss, params, learning_rate))


def _momentum_lasagne(loss_or_grads, params, learning_rate, momentum, nesterov):
    rule = lasagne_updates.nesterov_momentum if nesterov else lasagne_updates.momentum
    return rule(loss_or_grads, params, learning_rate, momentum)


MOMENTUM = library_family(
    "momentum", lambda values, runs=(): _face().momentum(
        values["learning_rate"], values["momentum"], nesterov=values["nesterov"]),
    lambda values: ("velocity",), _momentum_lasagne, static=("nesterov",))

ADAM_PAPER = "Kingma & Ba (2015), Adam: A Method for Stochastic Optimization. ICLR."
AMSGRAD_PAPER = "Reddi, Kale & Kumar (2018), On the Convergence of Adam and Beyond. ICLR."
# The post's colours (Adam blue, AMSGrad red), then tab10's green, purple, orange, grey.
register_rule(Rule("adam", ADAM_FAMILY, _ADAM, {"amsgrad": False, "weight_decay": 0.0}, "Adam",
                   ADAM_PAPER, ("#1f4fbf", "#92b1ee")))
register_rule(Rule("amsgrad", ADAM_FAMILY, _ADAM, {"amsgrad": True, "weight_decay": 0.0},
                   "AMSGrad", AMSGRAD_PAPER, ("#d0231f", "#f3a29f")))
register_rule(Rule("sgd", SGD, (LEARNING_RATE,), {}, "SGD", colors=("#7f7f7f", "#c7c7c7")))
register_rule(Rule("momentum", MOMENTUM, (LEARNING_RATE, MOMENTUM_KEY), {"nesterov": False},
                   "Momentum", "Polyak (1964), Some methods of speeding up the convergence "
                   "of iteration methods.", ("#9467bd", "#c5b0d5")))
register_rule(Rule("nesterov_momentum", MOMENTUM, (LEARNING_RATE, MOMENTUM_KEY),
                   {"nesterov": True}, "Nesterov momentum",
                   "Sutskever et al. (2013), On the importance of initialization and momentum "
                   "in deep learning. ICML.", ("#ff7f0e", "#ffbb78")))
register_rule(Rule("adamw", ADAM_FAMILY, _ADAM + (WEIGHT_DECAY, AMSGRAD), {}, "AdamW",
                   "Loshchilov & Hutter (2019), Decoupled Weight Decay Regularization. ICLR.",
                   ("#2ca02c", "#98df8a")))
