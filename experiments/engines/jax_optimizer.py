"""The JAX engines' optimizer: :mod:`amsgrad.optax`, and its state as checkpoint arrays.

Both JAX engines step through the library's optax face: the single-run engine with a
run's hyperparameters as numbers, the grouped engine with per-run arrays laid out as
its storage (``(S, R)``: :func:`amsgrad.optax.per_run`), a step count per run and the
runs' ``active`` flags (:func:`amsgrad.optax.active_runs`). What differs between
rules is said once here: which transformation a rule is, and which optimizer-state
field holds which checkpoint slot (``opt:<slot>:<param>``, :mod:`.base`).
"""
import numpy as np
import optax

from amsgrad import optax as amsgrad_optax

__all__ = ["make_optimizer", "run_hyperparameters", "group_hyperparameters", "switched_off",
           "slot_names", "opt_state", "opt_slots"]

# optimizer-state field -> checkpoint slot, per family
_SLOTS = {"adam_family": {"mu": "m", "nu": "v", "nu_max": "v_hat"},
          "momentum": {"velocity": "velocity"},
          "nesterov_momentum": {"velocity": "velocity"},
          "sgd": {}}
# a switch no run of a group uses, as the plain value that compiles it out
_OFF = {"amsgrad": False, "weight_decay": 0.0}


def make_optimizer(family, lr, hyper, variant="lasagne", runs=()):
    """The optax transformation of rule ``family`` (:func:`experiments.run_keys.family`).

    ``lr`` and the values of ``hyper`` (``beta1``, ``beta2``, ``epsilon``,
    ``bias_correction``, ``amsgrad``, ``weight_decay``, ``momentum``; the rule takes
    what it needs) are numbers for one run, or arrays of shape ``runs`` for many.
    ``amsgrad=False`` and ``weight_decay=0.0`` as plain values leave the running
    maximum and the decay out of the program.
    """
    if family == "adam_family":
        return amsgrad_optax.adam_family(
            learning_rate=lr, beta1=hyper["beta1"], beta2=hyper["beta2"],
            epsilon=hyper["epsilon"], bias_correction=hyper["bias_correction"],
            amsgrad=hyper["amsgrad"], variant=variant, weight_decay=hyper["weight_decay"],
            runs=runs)
    if family == "sgd":
        return amsgrad_optax.sgd(lr)
    return amsgrad_optax.momentum(lr, hyper["momentum"], nesterov=family == "nesterov_momentum")


def run_hyperparameters(h):
    """One run's values for :func:`make_optimizer`."""
    return {"beta1": h.beta1, "beta2": h.beta2, "epsilon": h.epsilon,
            "bias_correction": bool(h.bias_correction), "amsgrad": h.amsgrad,
            "weight_decay": h.weight_decay if h.updater == "adamw" else 0.0,
            "momentum": h.momentum}


def group_hyperparameters(hparams, shape):
    """The values of runs ``hparams`` for :func:`make_optimizer`, as numpy arrays of
    ``shape`` (float32; booleans for the switches), and the switches no run uses
    (``amsgrad``, ``weight_decay``), which :func:`switched_off` then leaves out of the
    program."""
    values = [run_hyperparameters(h) for h in hparams]
    arrays = {k: np.asarray([v[k] for v in values],
                            bool if k in ("bias_correction", "amsgrad") else np.float32
                            ).reshape(shape) for k in values[0]}
    unused = tuple(k for k in _OFF if not arrays[k].any())
    return arrays, unused


def switched_off(hyper, unused):
    """``hyper`` with the switches ``unused`` as the plain values that leave them out."""
    return {**hyper, **{k: _OFF[k] for k in unused}}


def slot_names(family, keep_max=True):
    """The checkpoint slots of rule ``family`` (``opt:<slot>:<param>``)."""
    return tuple(slot for slot in _SLOTS[family].values() if keep_max or slot != "v_hat")


def opt_state(family, slots, count, keep_max=True):
    """The optax state of rule ``family`` from checkpoint ``slots`` (``{slot: tree}``)
    and the step ``count``; ``keep_max=False`` leaves AMSGrad's maximum out."""
    if family == "adam_family":
        return amsgrad_optax.AdamFamilyState(count=count, mu=slots["m"], nu=slots["v"],
                                             nu_max=slots["v_hat"] if keep_max else None)
    if family == "sgd":
        return optax.EmptyState()
    return amsgrad_optax.MomentumState(velocity=slots["velocity"])


def opt_slots(family, state):
    """``{slot: tree}``: the checkpoint slots held by optax ``state`` (None ones left out)."""
    return {slot: getattr(state, field) for field, slot in _SLOTS[family].items()
            if getattr(state, field) is not None}
