"""An optax state's arrays under checkpoint names, for any rule.

A checkpoint holds a run's optimizer state as ``opt:<slot>:<param>`` for a slot shaped
like parameter ``<param>`` (``opt:m:conv1.W``) and ``opt:<slot>`` for any other array.
The slot is the leaf's path in the state (field names and tuple positions joined by
dots, ``0.mu``), with a family's renames (the library's rules: ``mu`` -> ``m``, ``nu``
-> ``v``, ``nu_max`` -> ``v_hat``, ``count`` -> ``t``), so the names are those the
Lasagne-style face gives its shared variables (``<param>.m``). The same names serve a
run alone and a group of runs, whose leaves hold every run (stored as the grouped
engine lays them out).
"""
import jax
import numpy as np

__all__ = ["leaf_names", "state_arrays", "load_state", "state_shapes"]


def _part(key):
    for attr in ("name", "key", "idx"):  # GetAttrKey, DictKey / FlattenedIndexKey, SequenceKey
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def leaf_names(state, param_names, rename=None):
    """``[(name, leaf)]`` of every array of ``state``, in its flattening order."""
    rename, params, out = rename or {}, set(param_names), []
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        parts = [_part(k) for k in path]
        param = parts.pop() if parts and parts[-1] in params else None
        slot = ".".join(rename.get(p, p) for p in parts)
        out.append((f"{slot}:{param}" if param is not None else slot, leaf))
    return out


def state_arrays(state, param_names, rename=None):
    """``{name: array}`` of ``state`` (see the module docstring)."""
    return {name: leaf for name, leaf in leaf_names(state, param_names, rename)}


def load_state(state, arrays, param_names, rename=None):
    """``state`` with each leaf replaced by ``arrays[its name]`` (in the leaf's dtype);
    a KeyError names a leaf ``arrays`` lacks."""
    named = leaf_names(state, param_names, rename)
    treedef = jax.tree_util.tree_structure(state)
    leaves = [np.asarray(arrays[name], dtype=leaf.dtype) for name, leaf in named]
    return jax.tree_util.tree_unflatten(treedef, leaves)


def state_shapes(init, param_shapes, rename=None):
    """Ordered ``{name: shape}`` of the state ``init(params)`` makes for parameters of
    ``param_shapes`` (float32), without computing it."""
    params = {n: jax.ShapeDtypeStruct(tuple(s), np.float32) for n, s in param_shapes.items()}
    state = jax.eval_shape(init, params)
    return {name: tuple(leaf.shape) for name, leaf in leaf_names(state, param_shapes, rename)}
