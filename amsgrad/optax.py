"""The same rules for JAX, as optax ``GradientTransformation``s.

Updates follow optax's sign convention (``optax.apply_updates`` adds them).
Hyperparameters may be Python numbers or JAX arrays; the Adam family and the rules of
:mod:`amsgrad.optax_fixes` (AdamNC, AdaBound, AMSBound, Yogi, AdaBelief, ADOPT, imported
here) also take a schedule (a callable of the step count) as learning rate, and optax's
names for their hyperparameters (``b1``, ``b2``, ``eps``, ``eps_root``) as well as
Lasagne's (``beta1``, ``beta2``, ``epsilon``, ``epsilon_root``). What all rules share
(:func:`per_run`, :func:`active_runs`, :func:`optax_names`) is in
:mod:`amsgrad.optax_common` and importable from here.

Many runs at once: a hyperparameter array holds one value per run (see
:func:`per_run`), so one compiled program can step a whole grid of runs. An array of
shape ``(K,)`` is broadcast against parameters whose leading axis holds ``K`` stacked
runs; an array of shape ``(S, R)`` against parameters stored ``(S, *shape, R)`` (runs
grouped by seed, a seed's ``R`` runs on the last axis). ``runs=shape`` (every rule with
state) keeps a step count per run, so runs resumed at different steps keep their own
bias correction, and :func:`active_runs` lets some runs sit a step out.

Examples
--------
>>> import jax.numpy as jnp, optax
>>> from amsgrad.optax import amsgrad
>>> tx = amsgrad(learning_rate=1e-3, beta2=0.99, bias_correction=False)
>>> params = {'w': jnp.zeros(3)}
>>> state = tx.init(params)
>>> updates, state = tx.update({'w': jnp.ones(3)}, state, params)
>>> params = optax.apply_updates(params, updates)
"""
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from . import rules
from .optax_common import OPTAX_NAMES, active_runs, elementwise_transform, optax_names, per_run
from .optax_fixes import (AdaBeliefState, AdaBoundState, AdamNCState, AdoptState, YogiState,
                          adabelief, adabound, adamnc, adopt, amsbound, yogi)

__all__ = ["OPTAX_NAMES", "optax_names", "per_run", "active_runs", "elementwise_transform",
           "AdamFamilyState", "MomentumState", "adam_family", "adam", "amsgrad", "adamw",
           "sgd", "momentum", "AdamNCState", "AdaBoundState", "YogiState", "AdaBeliefState",
           "AdoptState", "adamnc", "adabound", "amsbound", "yogi", "adabelief", "adopt"]


class AdamFamilyState(NamedTuple):
    count: jax.Array  # steps taken so far (int32)
    mu: Any
    nu: Any
    nu_max: Any = None  # running max of nu (AMSGrad); None for plain Adam


class MomentumState(NamedTuple):
    velocity: Any


@optax_names
def adam_family(learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8,
                bias_correction=True, amsgrad=False, variant="lasagne", weight_decay=0.0,
                runs=()):
    """Adam/AMSGrad in any variant (see :func:`amsgrad.rules.adam_step`).

    ``amsgrad`` and ``bias_correction`` may be boolean arrays (one per run); then the
    running maximum is kept for every run and used where ``amsgrad`` is true.
    ``runs``: the shape of the runs' layout, ``(K,)`` or ``(S, R)`` (:func:`per_run`),
    for a step count per run; ``()`` (default), one count for all.
    """
    rules.check_variant(variant)
    hyper = dict(learning_rate=learning_rate, beta1=beta1, beta2=beta2, epsilon=epsilon,
                 bias_correction=bias_correction, amsgrad=amsgrad, variant=variant)
    slots = ("m", "v", "v_hat" if amsgrad is not False else None)
    return elementwise_transform(AdamFamilyState, rules.adam_step, slots, hyper, runs,
                                 weight_decay=weight_decay)


@optax_names
def adam(learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8, bias_correction=True,
         variant="lasagne"):
    """Adam (Kingma & Ba, 2015) with a bias-correction switch; the rule of
    :func:`amsgrad.updates.adam`."""
    return adam_family(learning_rate, beta1, beta2, epsilon, bias_correction,
                       amsgrad=False, variant=variant)


@optax_names
def amsgrad(learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8, bias_correction=True,
            variant="lasagne"):
    """AMSGrad (Reddi et al., 2018), max on the raw second moment; the rule of
    :func:`amsgrad.updates.amsgrad`. Unlike ``optax.amsgrad`` unless ``variant='optax'``."""
    return adam_family(learning_rate, beta1, beta2, epsilon, bias_correction,
                       amsgrad=True, variant=variant)


@optax_names
def adamw(learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8, weight_decay=0.01,
          bias_correction=True, amsgrad=False):
    """Adam/AMSGrad with decoupled weight decay (Loshchilov & Hutter, 2019)."""
    return adam_family(learning_rate, beta1, beta2, epsilon, bias_correction,
                       amsgrad=amsgrad, weight_decay=weight_decay)


def sgd(learning_rate):
    """Plain SGD: the update is ``-learning_rate * grad``."""

    def update_fn(grads, state, params=None):
        return jax.tree_util.tree_map(lambda g: -per_run(learning_rate, g) * g, grads), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def momentum(learning_rate, momentum=0.9, nesterov=False):
    """Heavy-ball or Nesterov momentum, as :func:`amsgrad.updates.momentum`."""

    def init_fn(params):
        return MomentumState(velocity=jax.tree_util.tree_map(jnp.zeros_like, params))

    def update_fn(grads, state, params=None):
        # Flatten rather than tree_map to pairs: params held in tuples would be
        # mistaken for the (delta, velocity) pairs.
        leaves, treedef = jax.tree_util.tree_flatten(grads)
        pairs = [rules.momentum_step(g, vel, per_run(learning_rate, g), per_run(momentum, g),
                                     nesterov)
                 for g, vel in zip(leaves, treedef.flatten_up_to(state.velocity))]
        delta = treedef.unflatten([d for d, _ in pairs])
        return delta, MomentumState(velocity=treedef.unflatten([v for _, v in pairs]))

    return optax.GradientTransformation(init_fn, update_fn)
