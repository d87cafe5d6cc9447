"""AdamNC, AdaBound, AMSBound, Yogi, AdaBelief and ADOPT as optax transformations.

Imported from :mod:`amsgrad.optax` (``from amsgrad.optax import adabound``). The step
math is :mod:`amsgrad.fixes`; each rule here is its step function handed to
:func:`amsgrad.optax_common.elementwise_transform`. As ``adam_family``: every numeric
hyperparameter may be a per-run array (:func:`amsgrad.optax.per_run`), ``runs=`` gives
a step count per run, the learning rate may be a schedule, optax's names ``b1``, ``b2``,
``eps``, ``eps_root`` are taken, and the result composes with
:func:`amsgrad.optax.active_runs`. ``variant`` and ``use_clipping`` change the program
and stay Python values. State fields are named by :data:`amsgrad.slots.FIELDS`.
"""
from typing import Any, NamedTuple

import jax

from . import fixes
from .optax_common import elementwise_transform, optax_names


class AdamNCState(NamedTuple):
    count: jax.Array  # steps taken so far (int32), one per run with runs=
    mu: Any  # slot m
    nu: Any  # slot v: the mean of the squared gradients


class AdaBoundState(NamedTuple):
    count: jax.Array
    mu: Any  # slot m
    nu: Any  # slot v
    nu_max: Any = None  # slot v_hat: running max of nu (AMSBound); None for AdaBound


class YogiState(NamedTuple):
    count: jax.Array
    mu: Any  # slot m
    nu: Any  # slot v


class AdaBeliefState(NamedTuple):
    count: jax.Array
    mu: Any  # slot m
    nu: Any  # slot v: the second moment of the residual g - m


class AdoptState(NamedTuple):
    count: jax.Array
    mu: Any  # slot m
    nu: Any  # slot v


@optax_names
def adamnc(learning_rate=0.001, beta1=0.9, beta1_decay=1 - 1e-8, epsilon=1e-8, runs=()):
    """AdamNC (Reddi et al., 2018, section 5): :func:`amsgrad.fixes.adamnc_step`, the
    rule of :func:`amsgrad.adamnc`. The paper's ``alpha / sqrt(t)`` is a schedule:
    ``learning_rate=lambda count: alpha / jnp.sqrt(count + 1)``."""
    hyper = dict(learning_rate=learning_rate, beta1=beta1, beta1_decay=beta1_decay,
                 epsilon=epsilon)
    return elementwise_transform(AdamNCState, fixes.adamnc_step, ("m", "v"), hyper, runs)


@optax_names
def adabound(learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8, final_lr=0.1,
             gamma=1e-3, amsbound=False, initial_learning_rate=None, variant="authors",
             runs=()):
    """AdaBound or AMSBound (Luo et al., 2019): :func:`amsgrad.fixes.adabound_step`, the
    rule of :func:`amsgrad.adabound`.

    ``initial_learning_rate`` is the base rate ``final_lr`` is relative to (the bounds
    follow ``final_lr * learning_rate / initial_learning_rate``). Default: the learning
    rate itself when it is a number or an array, ``learning_rate(0)`` for a schedule.
    **Give it** when the transformation is rebuilt with each epoch's rate (as the
    experiments' engines do): the default would then be that epoch's rate, and the
    bounds would not follow the schedule. ``amsbound`` may be a boolean array (one per
    run): the maximum is then kept for every run and used where it is true.
    """
    fixes.check_variant(variant, fixes.ADABOUND_VARIANTS)
    if initial_learning_rate is None:
        initial_learning_rate = learning_rate(0) if callable(learning_rate) else learning_rate
    hyper = dict(learning_rate=learning_rate, initial_learning_rate=initial_learning_rate,
                 beta1=beta1, beta2=beta2, epsilon=epsilon, final_lr=final_lr, gamma=gamma,
                 amsbound=amsbound, variant=variant)
    slots = ("m", "v", "v_hat" if amsbound is not False else None)
    return elementwise_transform(AdaBoundState, fixes.adabound_step, slots, hyper, runs)


@optax_names
def amsbound(learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8, final_lr=0.1,
             gamma=1e-3, initial_learning_rate=None, variant="authors", runs=()):
    """AMSBound (Luo et al., 2019): :func:`adabound` with ``amsbound=True``."""
    return adabound(learning_rate, beta1, beta2, epsilon, final_lr, gamma, amsbound=True,
                    initial_learning_rate=initial_learning_rate, variant=variant, runs=runs)


@optax_names
def yogi(learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-3, epsilon_root=0.0,
         initial_accumulator_value=1e-6, bias_correction=True, runs=()):
    """Yogi (Zaheer et al., 2018): :func:`amsgrad.fixes.yogi_step`, the rule of
    :func:`amsgrad.yogi`; with the defaults, ``optax.yogi``. ``bias_correction`` may be
    a boolean array (one per run)."""
    hyper = dict(learning_rate=learning_rate, beta1=beta1, beta2=beta2, epsilon=epsilon,
                 epsilon_root=epsilon_root, bias_correction=bias_correction)
    return elementwise_transform(YogiState, fixes.yogi_step, ("m", "v"), hyper, runs,
                                 fill=initial_accumulator_value)


@optax_names
def adabelief(learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-16,
              epsilon_root=1e-16, variant="paper", runs=()):
    """AdaBelief (Zhuang et al., 2020): :func:`amsgrad.fixes.adabelief_step`, the rule of
    :func:`amsgrad.adabelief`; with the defaults, ``optax.adabelief`` of optax 0.2.4 and
    later (``variant='lagged'``: of earlier optax, 0.2.1 included)."""
    fixes.check_variant(variant, fixes.ADABELIEF_VARIANTS)
    hyper = dict(learning_rate=learning_rate, beta1=beta1, beta2=beta2, epsilon=epsilon,
                 epsilon_root=epsilon_root, variant=variant)
    return elementwise_transform(AdaBeliefState, fixes.adabelief_step, ("m", "v"), hyper,
                                 runs)


@optax_names
def adopt(learning_rate=0.001, beta1=0.9, beta2=0.9999, epsilon=1e-6, use_clipping=True,
          runs=()):
    """ADOPT (Taniguchi et al., 2024): :func:`amsgrad.fixes.adopt_step`, the rule of
    :func:`amsgrad.adopt`; with the defaults, ``optax.contrib.adopt`` (no Nesterov).
    With ``runs=``, each run's first step is its own (it only sets ``v``)."""
    if not isinstance(use_clipping, bool):
        raise TypeError("use_clipping must be a Python bool (it changes the program)")
    hyper = dict(learning_rate=learning_rate, beta1=beta1, beta2=beta2, epsilon=epsilon,
                 use_clipping=use_clipping)
    return elementwise_transform(AdoptState, fixes.adopt_step, ("m", "v"), hyper, runs)
