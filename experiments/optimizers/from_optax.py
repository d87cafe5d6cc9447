"""Any optimizer optax ships, as a rule by name (JAX engines only).

``updater: yogi`` (or ``radam``, ``nadam``, ``lion``, ``adamax``, ``adagrad``,
``rmsprop``, ``adabelief``, ``adopt`` from ``optax.contrib``, ...) where the registry
holds no rule of that name: the rule is optax's function, its hyperparameters the
function's keyword arguments with a number or a boolean as default, under the names
the suite uses for them (``b1`` -> ``beta1``, ``b2`` -> ``beta2``, ``eps`` ->
``epsilon``; the others under optax's own names), each checked as the library's rules'
keys are. An argument whose default is not a number (``None``, a dtype, a function)
keeps its default.

Runs of such a rule that differ only in numeric hyperparameters and seed train
together: each run's transformation is optax's function called with that run's values,
mapped over the runs with ``vmap`` (what ``optax.inject_hyperparams`` does with one
run's hyperparameters as arrays, here with one value per run). Booleans and integers
(``nesterov``, ...) are compiled in: runs that differ in them train apart. The Theano
engine has no Lasagne face for them and refuses them.
"""
import inspect

from experiments.config.checks import INF, boolean, integer, number
from experiments.optimizers import state_names
from experiments.optimizers.registry import LEARNING_RATE, Family, Hyperparameter, Rule

__all__ = ["optax_rule", "rule_from_function", "optax_family", "OUR_NAMES"]

#: optax's names for the hyperparameters the suite names otherwise.
OUR_NAMES = {"b1": "beta1", "b2": "beta2", "eps": "epsilon", "eps_root": "epsilon_root"}
_LABELS = {"learning_rate": "lr", "beta1": "b1", "beta2": "b2", "epsilon": "eps",
           "epsilon_root": "eps_root", "momentum": "mom", "weight_decay": "wd"}
_CHECKS = {"beta1": number(0, 1, high_open=True), "beta2": number(0, 1, high_open=True),
           "epsilon": number(0, INF), "weight_decay": number(0, INF),
           "momentum": number(0, 1, high_open=True)}


def _function(name):
    import optax  # only for a name the registry does not hold
    for where in (optax, getattr(optax, "contrib", None)):
        fn = getattr(where, name, None)
        if callable(fn) and not isinstance(fn, type):
            return fn
    return None


def _hyperparameter(parameter):
    """The :class:`Hyperparameter` of one keyword argument of an optax rule, or None."""
    ours, default = OUR_NAMES.get(parameter.name, parameter.name), parameter.default
    label = _LABELS.get(ours, ours)
    if isinstance(default, bool):
        return Hyperparameter(ours, default, boolean, label, per_run=False, type=bool)
    if isinstance(default, int):
        return Hyperparameter(ours, default, integer(0), label, per_run=False, type=int)
    if isinstance(default, float):
        return Hyperparameter(ours, default, _CHECKS.get(ours, number()), label)
    return None


def optax_rule(name):
    """The :class:`Rule` of optax's ``name`` (``optax.<name>`` or ``optax.contrib.<name>``),
    or None if optax has no such rule."""
    import optax
    fn = _function(name)
    if fn is None:
        return None
    where = "optax.contrib" if getattr(optax, name, None) is not fn else "optax"
    return rule_from_function(name, fn, label=_RULE_LABELS.get(name),
                              reference=f"{where}.{name} (optax {optax.__version__})")


#: How the papers spell optax's rules in figures and reports (else the name).
_RULE_LABELS = {"radam": "RAdam", "nadam": "NAdam", "nadamw": "NAdamW", "adamax": "Adamax",
                "adamaxw": "AdamaxW", "adagrad": "Adagrad", "adadelta": "Adadelta",
                "rmsprop": "RMSprop", "lion": "Lion", "lamb": "LAMB", "lars": "LARS",
                "novograd": "NovoGrad", "adafactor": "Adafactor", "sm3": "SM3",
                "fromage": "Fromage", "prodigy": "Prodigy", "sophia": "Sophia"}


def rule_from_function(name, fn, label=None, reference=""):
    """A :class:`Rule` of any optax-style rule: ``fn(learning_rate, **hyperparameters)``
    returning a ``GradientTransformation`` (optax's own, or a user's), its
    hyperparameters its keyword arguments with a number or boolean default; runs that
    differ in the numbers train together (mapped over the runs). None if ``fn`` is not
    such a function."""
    import optax
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    if not parameters or parameters[0].name != "learning_rate":
        return None
    try:
        made = fn(learning_rate=1e-3)
    except Exception:  # needs arguments we cannot give: not a rule we can run
        return None
    if not isinstance(made, optax.GradientTransformation):
        return None
    hypers = [h for h in map(_hyperparameter, parameters[1:]) if h is not None]
    theirs = {OUR_NAMES.get(p.name, p.name): p.name for p in parameters}
    family = optax_family(name, fn, theirs, tuple(h.name for h in hypers if not h.per_run))
    return Rule(name, family, (LEARNING_RATE, *hypers), {}, label or name, reference)


def optax_family(name, fn, theirs, static):
    """The :class:`Family` of one optax function ``fn``; ``theirs`` maps our names to
    its argument names; ``static``: the values compiled in."""
    def call(values):
        return fn(**{theirs[k]: v for k, v in values.items()})

    def transform(values, runs=()):
        if not runs:
            return call(values)
        return _mapped(call, values, static)

    def shapes(values, param_shapes):
        # the learning rate shapes no state; a run's shapes are asked without it
        return state_names.state_shapes(call({"learning_rate": 1e-3, **values}).init,
                                        param_shapes)

    return Family(f"optax.{name}", transform, shapes, state_names.state_arrays,
                  state_names.load_state, lasagne=None, static=static, groups="vmap")


def _over_runs(fn):
    """``fn`` mapped over runs stored ``(S, *shape, R)``: seeds on the first axis, a
    seed's runs on the last (per-run values ``(S, R)``)."""
    import jax
    return jax.vmap(jax.vmap(fn, in_axes=-1, out_axes=-1), in_axes=0, out_axes=0)


def _mapped(call, values, static):
    """One transformation of many runs: run ``k``'s is ``call`` of its own values."""
    import numpy as np
    import optax
    per_run = {k: v for k, v in values.items() if k not in static and np.ndim(v) > 0}
    fixed = {k: v for k, v in values.items() if k not in per_run}
    one = lambda hp: call({**fixed, **hp})  # noqa: E731

    def init(params):
        return _over_runs(lambda p, hp: one(hp).init(p))(params, per_run)

    def update(grads, state, params=None):
        step = lambda g, s, p, hp: one(hp).update(g, s, p)  # noqa: E731
        return _over_runs(step)(grads, state, params, per_run)

    return optax.GradientTransformation(init, update)

