"""What every rule of the optax face shares: optax's keyword names, hyperparameters per
run (:func:`per_run`), runs that sit a step out (:func:`active_runs`) and the builder of
an elementwise rule from its step function (:func:`elementwise_transform`).

Imported from :mod:`amsgrad.optax`, where the rules are; see that module's docstring.
"""
import functools
import inspect

import jax
import jax.numpy as jnp
import optax

from . import rules
from .slots import FIELDS

JNP = rules.namespace("jax")

#: optax's keyword names and ours (Lasagne's); a rule takes those whose ours it has.
OPTAX_NAMES = {"b1": "beta1", "b2": "beta2", "eps": "epsilon", "eps_root": "epsilon_root"}


def optax_names(fn):
    """Let ``fn`` also take optax's keyword names (:data:`OPTAX_NAMES`).

    ``amsgrad(1e-3, b2=0.99, eps=1e-7)`` is ``amsgrad(1e-3, beta2=0.99, epsilon=1e-7)``,
    so optax code ports by changing the import. A hyperparameter given under both names
    (``beta2=0.99, b2=0.9``, or positionally and as ``b2``) is a ``TypeError``; an optax
    name whose hyperparameter ``fn`` lacks (``eps_root`` for Adam) stays unexpected.
    """
    signature = inspect.signature(fn)
    names = {k: v for k, v in OPTAX_NAMES.items() if v in signature.parameters}

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        theirs = {k: kwargs.pop(k) for k in names if k in kwargs}
        given = signature.bind_partial(*args, **kwargs).arguments
        for name, value in theirs.items():
            ours = names[name]
            if ours in given:
                raise TypeError(f"{fn.__name__}() got {ours!r} and its optax name {name!r}: "
                                "give one of them")
            kwargs[ours] = value
        return fn(*args, **kwargs)

    return wrapper


def value_at(h, count):
    """A hyperparameter's value at step ``count`` (a schedule is called with it)."""
    return h(count) if callable(h) else h


def is_zero(h):
    """True for a plain number 0 (an array of decays is never skipped)."""
    return isinstance(h, (int, float)) and h == 0


def per_run(h, param):
    """Broadcast a hyperparameter against ``param``.

    A scalar is shared by all runs; a ``(K,)`` array is one value per run along the
    parameter's leading axis (``(K, *shape)``); a ``(S, R)`` array is one value per run
    of a parameter stored ``(S, *shape, R)``. Floating values take the parameter's dtype.
    """
    h = jnp.asarray(h)
    if h.ndim == 1 and param.ndim >= 1 and h.shape[0] == param.shape[0]:
        h = h.reshape((-1,) + (1,) * (param.ndim - 1))
    elif h.ndim == 2 and param.ndim >= 2 and h.shape == (param.shape[0], param.shape[-1]):
        h = h.reshape((h.shape[0],) + (1,) * (param.ndim - 2) + (h.shape[1],))
    elif h.ndim != 0:
        raise ValueError(f"hyperparameter of shape {h.shape} does not match a parameter of "
                         f"shape {param.shape} (expected a scalar or one value per run)")
    return h.astype(param.dtype) if jnp.issubdtype(h.dtype, jnp.floating) else h


def _leaf_value(h, g):
    """A hyperparameter for leaf ``g``: Python bools and strings pick a branch at trace
    time and stay as they are; everything else is broadcast per run."""
    return h if isinstance(h, (bool, str)) else per_run(h, g)


def elementwise_transform(state_class, step_fn, slots, hyper, runs=(), fill=0.0,
                          weight_decay=0.0):
    """A ``GradientTransformation`` stepping every leaf by ``step_fn``.

    Parameters
    ----------
    state_class : NamedTuple class
        Fields ``count`` and :data:`amsgrad.slots.FIELDS` ``[slot]`` per slot (a field
        of a slot left out defaults to ``None``).
    step_fn : callable
        ``step_fn(ns, g, *state, t, **hyper) -> (step, *new_state)`` (:mod:`amsgrad.rules`,
        :mod:`amsgrad.fixes`); the update is ``-step``.
    slots : tuple of str or None
        The state ``step_fn`` takes, in order; ``None`` passes ``None`` (state left out).
    hyper : dict
        Keyword arguments of ``step_fn``. Numbers and arrays are broadcast per run
        (:func:`per_run`); a callable (a learning-rate schedule) is called with the step
        count; Python bools and strings stay Python values.
    runs : tuple
        The runs' layout, ``(K,)`` or ``(S, R)``, for a step count per run; ``()``: one.
    fill : float
        The value the state starts from.
    weight_decay : float or array
        Decoupled decay (AdamW): ``learning_rate * weight_decay * param`` is added to the
        step; it needs ``update(grads, state, params)``. A plain 0 compiles it out.
    """
    present = [slot for slot in slots if slot is not None]
    decay = not is_zero(weight_decay)

    def init_fn(params):
        start = lambda: jax.tree_util.tree_map(lambda p: jnp.full_like(p, fill), params)
        return state_class(count=jnp.zeros(tuple(runs), jnp.int32),
                           **{FIELDS[slot]: start() for slot in present})

    def update_fn(grads, state, params=None):
        count = state.count + 1
        now = {k: value_at(h, state.count) for k, h in hyper.items()}
        leaves, treedef = jax.tree_util.tree_flatten(grads)
        held = {s: treedef.flatten_up_to(getattr(state, FIELDS[s])) for s in present}
        if decay and params is None:
            raise ValueError("weight_decay needs the parameters: call update(grads, state, "
                             "params)")
        leaves_p = treedef.flatten_up_to(params) if decay else None
        out = []
        for i, g in enumerate(leaves):
            t = per_run(count, g).astype(g.dtype)
            hp = {k: _leaf_value(h, g) for k, h in now.items()}
            step, *new = step_fn(JNP, g, *[held[s][i] if s else None for s in slots], t, **hp)
            if decay:
                step = step + rules.decoupled_weight_decay(leaves_p[i], hp["learning_rate"],
                                                           per_run(weight_decay, g))
            out.append([(-step).astype(g.dtype)] + [n for n, s in zip(new, slots) if s])
        unflat = lambda j: treedef.unflatten([o[j] for o in out])
        new_state = state_class(count=count, **{FIELDS[s]: unflat(j + 1)
                                                for j, s in enumerate(present)})
        return unflat(0), new_state

    return optax.GradientTransformation(init_fn, update_fn)


def active_runs(inner):
    """``inner`` for runs of which some may sit a step out.

    The returned transformation's ``update(grads, state, params=None, active=None)``
    takes ``active``, one flag per run laid out as the hyperparameters (:func:`per_run`).
    An inactive run gets a zero update and keeps its optimizer state, step count
    included, as it was; nothing it computes reaches another run. ``active=None``:
    every run steps, and no masking is compiled in.
    """
    def update_fn(grads, state, params=None, active=None, **extra_args):
        updates, new_state = inner.update(grads, state, params)
        if active is None:
            return updates, new_state
        updates = jax.tree_util.tree_map(
            lambda u: jnp.where(per_run(active, u), u, jnp.zeros_like(u)), updates)
        new_state = jax.tree_util.tree_map(lambda new, old: jnp.where(per_run(active, old),
                                                                      new, old),
                                           new_state, state)
        return updates, new_state

    return optax.GradientTransformationExtraArgs(inner.init, update_fn)
