"""The Lasagne-style face (amsgrad.updates) on Theano and on PyTensor: its interface,
errors, dtypes and state variables. The step values are in test_rules_math.py."""
import inspect
import math

import numpy as np
import pytest

import amsgrad
from amsgrad import updates as lasagne_updates

RULES = {
    "sgd": lambda g, p, lr: amsgrad.sgd(g, p, lr),
    "momentum": lambda g, p, lr: amsgrad.momentum(g, p, lr),
    "nesterov_momentum": lambda g, p, lr: amsgrad.nesterov_momentum(g, p, lr),
    "adam": lambda g, p, lr: amsgrad.adam(g, p, lr),
    "amsgrad": lambda g, p, lr: amsgrad.amsgrad(g, p, lr),
    "amsgrad_nobc": lambda g, p, lr: amsgrad.amsgrad(g, p, lr, bias_correction=False),
    "amsgrad_pytorch": lambda g, p, lr: amsgrad.adam_family(g, p, lr, amsgrad=True,
                                                            variant="pytorch"),
    "amsgrad_optax": lambda g, p, lr: amsgrad.adam_family(g, p, lr, amsgrad=True,
                                                          variant="optax"),
    "adamw": lambda g, p, lr: amsgrad.adamw(g, p, lr, amsgrad=True),
}


def make_params(face):
    return [face.shared(np.ones((3, 2)), name="W"), face.shared(np.zeros(2), name="b"),
            face.shared(0.5, name="s")]


def graph_variables(outputs):
    """Every variable the expressions ``outputs`` are computed from."""
    seen, todo = {}, list(outputs)
    while todo:
        var = todo.pop()
        if id(var) not in seen:
            seen[id(var)] = var
            todo.extend(var.owner.inputs if var.owner is not None else ())
    return list(seen.values())


def test_signatures_follow_the_spec():
    spec = dict(learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8,
                bias_correction=True)
    for rule in (amsgrad.amsgrad, amsgrad.adam):
        parameters = inspect.signature(rule).parameters
        assert list(parameters)[:2] == ["loss_or_grads", "params"]
        assert {k: p.default for k, p in list(parameters.items())[2:]} == spec


def test_non_shared_param_is_rejected(lasagne_face):
    with lasagne_face.float32():
        W = lasagne_face.shared(np.ones(3), name="W")
        for bad in (lasagne_face.tensor(1, "x"), 2 * W, np.ones(3)):
            for rule in (amsgrad.amsgrad, amsgrad.sgd, amsgrad.momentum):
                with pytest.raises(ValueError, match="shared variables"):
                    rule([W], [W, bad], 0.1)


def test_grads_of_the_wrong_length_are_rejected(lasagne_face):
    with lasagne_face.float32():
        params = make_params(lasagne_face)
        g = lasagne_face.tensor(1, "g")
        for rule in (amsgrad.amsgrad, amsgrad.adam, amsgrad.sgd, amsgrad.nesterov_momentum):
            with pytest.raises(ValueError, match=r"\b2 gradient.*\b3 param"):
                rule([g, g], params, 0.1)
            with pytest.raises(ValueError, match=r"\b4 gradient.*\b3 param"):
                rule([g] * 4, params, 0.1)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_float32_stays_float32(lasagne_face, rule):
    with lasagne_face.float32():
        params = make_params(lasagne_face)
        grads = [lasagne_face.tensor(p.ndim, f"g_{p.name}") for p in params]
        lr = lasagne_face.T.scalar("lr")
        assert lr.dtype == "float32"
        updates = RULES[rule](grads, params, lr)
        for variable, expression in updates.items():
            assert variable.dtype == "float32"
            assert expression.dtype == variable.dtype, variable.name
            assert expression.broadcastable == variable.broadcastable, variable.name
        # Nothing in the graph is computed in float64 and cast back (constants included).
        assert "float64" not in {getattr(v.type, "dtype", None)
                                 for v in graph_variables(updates.values())}


def test_float64_learning_rate_keeps_float32_params(lasagne_face):
    """A float64 symbolic learning rate would upcast the step; the update is cast back,
    where Theano would otherwise refuse a float64 update of a float32 variable."""
    with lasagne_face.float32():
        params = make_params(lasagne_face)
        grads = [lasagne_face.tensor(p.ndim) for p in params]
        lr = lasagne_face.T.dscalar("lr")
        updates = amsgrad.amsgrad(grads, params, lr)
        assert all(e.dtype == v.dtype == "float32" for v, e in updates.items())
        fn = lasagne_face.lib.function(grads + [lr], [], updates=updates)
    fn(*[np.ones(p.get_value().shape, np.float32) for p in params], 0.25)
    np.testing.assert_allclose(params[0].get_value(), 0.75, rtol=1e-6)


@pytest.mark.parametrize("is_amsgrad", [False, True], ids=["adam", "amsgrad"])
def test_update_dict_holds_exactly_the_state(lasagne_face, is_amsgrad):
    with lasagne_face.float32():
        params = make_params(lasagne_face)
        grads = [lasagne_face.tensor(p.ndim) for p in params]
        rule = amsgrad.amsgrad if is_amsgrad else amsgrad.adam
        updates = rule(grads, params)
    suffixes = ("m", "v", "v_hat") if is_amsgrad else ("m", "v")
    expected = [p.name for p in params] + [f"{p.name}.{s}" for p in params for s in suffixes]
    names = [v.name for v in updates]
    assert sorted(names) == sorted(expected + ["t"])
    assert len(set(updates)) == len(updates) == len(params) * (1 + len(suffixes)) + 1
    by_name = {v.name: v for v in updates}
    for p in params:
        for s in suffixes:
            state = by_name[f"{p.name}.{s}"]
            assert state not in params
            value = state.get_value()
            assert value.shape == p.get_value().shape and value.dtype == np.float32
            assert not value.any()
    t = by_name["t"]
    assert t.get_value().shape == () and float(t.get_value()) == 0.0


def test_one_step_counter_per_call(lasagne_face):
    """Every parameter sees the same t, and t counts calls, not parameters."""
    with lasagne_face.float32():
        params = make_params(lasagne_face)
        grads = [lasagne_face.tensor(p.ndim) for p in params]
        updates = amsgrad.amsgrad(grads, params, learning_rate=0.1)
        fn = lasagne_face.lib.function(grads, [], updates=updates)
    g = [np.full(p.get_value().shape, 0.5, dtype=np.float32) for p in params]
    for _ in range(3):
        fn(*g)
    (t,) = [v for v in updates if v.name == "t"]
    assert float(t.get_value()) == 3.0
    # Equal gradients, equal start => every parameter moved by the same 3 steps.
    steps = [1 - p.get_value() for p in params if p.name == "W"] + \
            [0 - params[1].get_value(), 0.5 - params[2].get_value()]
    for s in steps:
        np.testing.assert_allclose(s, steps[0].flat[0], rtol=1e-6)
    assert steps[0].flat[0] == pytest.approx(0.3, rel=1e-5)  # three steps of about lr


@pytest.mark.parametrize("kind", ["shared", "input"])
def test_symbolic_learning_rate(lasagne_face, kind):
    """A shared or symbolic learning rate gives the same steps as the number itself."""
    lr_values = [0.1, 0.01, 0.05]
    with lasagne_face.float32():
        p = lasagne_face.shared([1.0, -1.0], name="p")
        g = lasagne_face.tensor(1, "g")
        if kind == "shared":
            lr = lasagne_face.shared(lr_values[0], name="lr")
            fn = lasagne_face.lib.function([g], [], updates=amsgrad.amsgrad([g], [p], lr))
            call = lambda grad, value: (lr.set_value(np.float32(value)), fn(grad))
        else:
            lr = lasagne_face.T.scalar("lr")
            fn = lasagne_face.lib.function([g, lr], [], updates=amsgrad.amsgrad([g], [p], lr))
            call = lambda grad, value: fn(grad, np.float32(value))
    grads = [np.array([1.0, 0.5], np.float32), np.array([0.1, 0.2], np.float32),
             np.array([-0.3, 0.2], np.float32)]
    # Hand-computed reference with the per-step learning rate (spec formula).
    want, m, v, v_hat = np.array([1.0, -1.0]), 0.0, 0.0, 0.0
    for t, (grad, value) in enumerate(zip(grads, lr_values), start=1):
        call(grad, value)
        g = grad.astype(np.float64)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g ** 2
        v_hat = np.maximum(v_hat, v)
        a_t = value * math.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        want = want - a_t * m / (np.sqrt(v_hat) + 1e-8)
        np.testing.assert_allclose(p.get_value(), want, rtol=1e-6)


def test_loss_is_differentiated(lasagne_face):
    """With a scalar loss the face takes its gradient: loss = sum(w**2)/2 has grad w."""
    with lasagne_face.float32():
        w = lasagne_face.shared([2.0, -4.0], name="w")
        loss = (w ** 2).sum() / 2
        fn = lasagne_face.lib.function([], loss, updates=amsgrad.sgd(loss, [w], 0.25))
    fn()
    np.testing.assert_array_equal(w.get_value(), [1.5, -3.0])
    fn()
    np.testing.assert_array_equal(w.get_value(), [1.125, -2.25])


def test_broadcastable_params_keep_their_pattern(lasagne_face):
    """A (1, n) bias broadcastable along axis 0 gets state of the same type."""
    with lasagne_face.float32():
        value = np.zeros((1, 3), np.float32)
        if lasagne_face.name == "theano":
            b = lasagne_face.lib.shared(value, broadcastable=(True, False), name="b")
        else:
            b = lasagne_face.lib.shared(value, shape=(1, None), name="b")
        g = lasagne_face.T.row("g") if lasagne_face.name == "theano" else \
            lasagne_face.T.tensor(dtype="float32", shape=(1, None), name="g")
        updates = amsgrad.amsgrad([g], [b], 0.1)
        fn = lasagne_face.lib.function([g], [], updates=updates)  # rejects mismatched types
    for variable in updates:
        if variable.name != "t":
            assert variable.broadcastable == b.broadcastable
    fn(np.ones((1, 3), np.float32))
    np.testing.assert_allclose(b.get_value(), -0.1, rtol=1e-6)


def test_get_or_compute_grads_passes_lists_through(lasagne_face):
    with lasagne_face.float32():
        params = make_params(lasagne_face)[:2]
        grads = [lasagne_face.tensor(2), lasagne_face.tensor(1)]
        assert lasagne_updates.get_or_compute_grads(grads, params) == grads
        assert lasagne_updates.get_or_compute_grads(tuple(grads), params) == grads
