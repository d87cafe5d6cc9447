"""The update rules against hand-written formulas, on all three faces.

The expected values are computed here in plain Python floats from the formulas of
the spec ("The update rules", "Other libraries differ"), never by calling
``amsgrad.rules``; each face (Theano, PyTensor, JAX/optax) runs in float32.
"""
import math

import numpy as np
import pytest

# Element 0: a large gradient, then small ones, so the raw v shrinks (beta2 0.99) and
# AMSGrad keeps dividing by the first v. Element 1: growing gradients (max inactive).
GRADS = [(1.0, -0.3), (0.05, 0.4), (-0.02, 0.1)]
P0 = (0.5, -0.25)
HYPER = dict(learning_rate=0.1, beta1=0.9, beta2=0.99, epsilon=1e-8)
TOL = dict(rtol=2e-6, atol=1e-7)  # float32 faces against float64 references


def spec_adam(grads, p, learning_rate, beta1, beta2, epsilon, bias_correction=True,
              amsgrad=False, variant="lasagne"):
    """One scalar through the spec's rule or a published variant, in plain Python.
    Returns ``(param, m, v, v_hat)`` after each step (``v_hat`` as the library keeps it)."""
    lr, b1, b2, eps = learning_rate, beta1, beta2, epsilon
    m = v = v_hat = 0.0
    out = []
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        if variant == "optax" and bias_correction:  # max on the corrected v
            v_hat = max(v_hat, v / c2) if amsgrad else v / c2
            p -= lr * (m / c1) / (math.sqrt(v_hat) + eps)
        else:
            v_hat = max(v_hat, v) if amsgrad else v
            if not bias_correction:
                p -= lr * m / (math.sqrt(v_hat) + eps)
            elif variant == "lasagne":
                a_t = lr * math.sqrt(c2) / c1
                p -= a_t * m / (math.sqrt(v_hat) + eps)
            else:  # pytorch: epsilon added after correcting v_hat
                p -= lr / c1 * m / (math.sqrt(v_hat) / math.sqrt(c2) + eps)
        out.append((p, m, v, v_hat))
    return out


def expected_history(grads, p0, **kw):
    """``spec_adam`` per element, stacked into one array per state variable and step."""
    per_element = [spec_adam([g[i] for g in grads], p0[i], **kw) for i in range(len(p0))]
    return [{name: np.array([per_element[i][step][k] for i in range(len(p0))])
             for k, name in enumerate(("p0", "p0.m", "p0.v", "p0.v_hat"))}
            for step in range(len(grads))]


def check_history(history, expected, amsgrad, tol=TOL):
    for step, (got, want) in enumerate(zip(history, expected), start=1):
        assert float(got["t"]) == step
        names = ("p0", "p0.m", "p0.v") + (("p0.v_hat",) if amsgrad else ())
        assert "p0.v_hat" in got if amsgrad else "p0.v_hat" not in got
        for name in names:
            np.testing.assert_allclose(got[name], want[name], **tol,
                                       err_msg=f"{name} after step {step}")


def run_adam(face, grads=GRADS, p0=P0, **kw):
    return face.run("adam_family", [np.array(p0)], [[np.array(g)] for g in grads], **kw)


@pytest.mark.parametrize("amsgrad", [False, True], ids=["adam", "amsgrad"])
@pytest.mark.parametrize("bias_correction", [True, False], ids=["bc", "nobc"])
def test_three_steps_by_hand(face, amsgrad, bias_correction):
    kw = dict(HYPER, bias_correction=bias_correction, amsgrad=amsgrad)
    expected = expected_history(GRADS, P0, **kw)
    check_history(run_adam(face, **kw), expected, amsgrad)
    # The crafted gradients make the max matter: AMSGrad and Adam must part ways.
    other = expected_history(GRADS, P0, **dict(kw, amsgrad=not amsgrad))
    assert abs(other[2]["p0"][0] - expected[2]["p0"][0]) > 1e-4


def test_first_step_with_bias_correction_is_lr_sized(face):
    # a_1 * m_1 / (sqrt(v_1) + eps) = lr * g / (|g| + eps / sqrt(1 - beta2))
    lr, b2, eps = 0.1, 0.99, 1e-8
    (step1,) = run_adam(face, grads=[GRADS[0]], learning_rate=lr, beta2=b2, epsilon=eps)
    for i, g in enumerate(GRADS[0]):
        want = P0[i] - lr * g / (abs(g) + eps / math.sqrt(1 - b2))
        assert step1["p0"][i] == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("amsgrad", [False, True], ids=["adam", "amsgrad"])
def test_no_bias_correction_uses_lr_directly(face, amsgrad):
    lr, b1, b2, eps = 0.1, 0.9, 0.99, 1e-8
    (step1,) = run_adam(face, grads=[GRADS[0]], learning_rate=lr, beta1=b1, beta2=b2,
                        epsilon=eps, bias_correction=False, amsgrad=amsgrad)
    for i, g in enumerate(GRADS[0]):
        m, v = (1 - b1) * g, (1 - b2) * g ** 2
        assert step1["p0"][i] == pytest.approx(P0[i] - lr * m / (math.sqrt(v) + eps), rel=1e-6)
        # ... which is (1 - beta1) / sqrt(1 - beta2) = 1.0 times lr, not lr as with correction
        assert abs(P0[i] - step1["p0"][i]) == pytest.approx(lr, rel=1e-6)
    (step1_bc,) = run_adam(face, grads=[(0.3, -0.3)], learning_rate=lr, beta1=0.5, beta2=b2,
                           epsilon=eps, bias_correction=False, amsgrad=amsgrad)
    # beta1 0.5: the step is 0.5 / 0.1 = 5 lr
    np.testing.assert_allclose(np.abs(np.array(P0) - step1_bc["p0"]), 5 * lr, rtol=1e-6)


@pytest.mark.parametrize("variant", ["lasagne", "optax"])
def test_amsgrad_v_hat_never_decreases(face, variant):
    rng = np.random.default_rng(0)
    shape = (6,)
    scale = np.concatenate([np.full(5, 10.0), np.full(35, 0.1)])  # large, then small
    grads = [[scale[s] * rng.standard_normal(shape)] for s in range(len(scale))]
    history = face.run("adam_family", [np.zeros(shape)], grads, beta2=0.9, amsgrad=True,
                       variant=variant)
    v = np.stack([h["p0.v"] for h in history])
    v_hat = np.stack([h["p0.v_hat"] for h in history])
    assert np.all(np.diff(v_hat, axis=0) >= 0)
    assert np.any(np.diff(v, axis=0) < 0)  # v itself fell, so the max was needed
    if variant == "lasagne":  # the running max of the face's own raw v, exactly
        np.testing.assert_array_equal(v_hat, np.maximum.accumulate(v, axis=0))


# Where the variants differ from ours: epsilon comparable to sqrt(v) (PyTorch) and a
# shrinking v with bias correction (optax takes the max of v / (1 - beta2**t)).
VARIANT_GRADS = [(0.1, -0.003), (0.005, 0.004), (-0.002, 0.001)]
VARIANT_HYPER = dict(learning_rate=0.1, beta1=0.9, beta2=0.99, epsilon=1e-3)


@pytest.mark.parametrize("amsgrad", [False, True], ids=["adam", "amsgrad"])
@pytest.mark.parametrize("variant", ["lasagne", "pytorch", "optax"])
def test_variants_follow_their_published_formulas(face, variant, amsgrad):
    kw = dict(VARIANT_HYPER, amsgrad=amsgrad)
    p0 = (0.5, -0.25)
    expected = expected_history(VARIANT_GRADS, p0, variant=variant, **kw)
    if variant != "lasagne":  # the sequence tells them apart from ours
        ours = expected_history(VARIANT_GRADS, p0, variant="lasagne", **kw)
        assert np.all(np.abs(expected[2]["p0"] - ours[2]["p0"]) > 1e-4)
    history = run_adam(face, grads=VARIANT_GRADS, p0=p0, variant=variant, **kw)
    check_history(history, expected, amsgrad)


@pytest.mark.parametrize("variant", ["pytorch", "optax"])
def test_variants_coincide_without_bias_correction(face, variant):
    kw = dict(VARIANT_HYPER, amsgrad=True, bias_correction=False)
    ours = run_adam(face, grads=VARIANT_GRADS, **kw)
    theirs = run_adam(face, grads=VARIANT_GRADS, variant=variant, **kw)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a["p0"], b["p0"])


def test_unknown_variant_is_rejected(face):
    with pytest.raises(ValueError, match="variant must be one of"):
        run_adam(face, variant="keras")


SHAPES = [(), (5,), (4, 3), (2, 3, 3, 3)]


def random_grads(n_steps, seed=0):
    rng = np.random.default_rng(seed)
    # Per-step scales spanning four decades make v rise and fall, so the max matters.
    scales = 10.0 ** rng.uniform(-3, 1, size=(n_steps, len(SHAPES)))
    return [[scales[s, i] * rng.standard_normal(shape) for i, shape in enumerate(SHAPES)]
            for s in range(n_steps)]


@pytest.mark.parametrize("amsgrad", [False, True], ids=["adam", "amsgrad"])
@pytest.mark.parametrize("bias_correction", [True, False], ids=["bc", "nobc"])
def test_faces_agree_on_200_random_steps(lasagne_face, optax_face, amsgrad, bias_correction):
    rng = np.random.default_rng(1)
    params0 = [rng.standard_normal(shape) for shape in SHAPES]
    grads = random_grads(200)
    kw = dict(learning_rate=0.01, beta2=0.99, bias_correction=bias_correction,
              amsgrad=amsgrad)
    got = lasagne_face.run("adam_family", params0, grads, **kw)
    want = optax_face.run("adam_family", params0, grads, **kw)
    assert set(got[0]) == set(want[0])
    for step in (0, 1, 9, 99, 199):
        for name in want[step]:
            np.testing.assert_allclose(got[step][name], want[step][name], rtol=1e-5,
                                       atol=1e-6, err_msg=f"{name} after step {step + 1}")
    # ... and the spec's formula in float64 (vectorised numpy, written out here).
    b1, b2, lr = 0.9, 0.99, 0.01
    for i, p in enumerate(params0):
        m = v = v_hat = 0.0
        for t, g in enumerate((g[i] for g in grads), start=1):
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g ** 2
            v_hat = np.maximum(v_hat, v) if amsgrad else v
            a_t = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t) if bias_correction else lr
            p = p - a_t * m / (np.sqrt(v_hat) + 1e-8)
        np.testing.assert_allclose(got[-1][f"p{i}"], p, rtol=1e-5, atol=1e-5)


MOMENTUM_GRADS = [(0.5, -2.0), (-1.5, 0.25)]


def spec_momentum(grads, p, learning_rate, momentum, nesterov):
    """Lasagne's momentum / nesterov_momentum for one scalar: ``(param, velocity)``."""
    velocity, out = 0.0, []
    for g in grads:
        velocity = momentum * velocity - learning_rate * g
        p += momentum * velocity - learning_rate * g if nesterov else velocity
        out.append((p, velocity))
    return out


@pytest.mark.parametrize("rule", ["sgd", "momentum", "nesterov_momentum"])
def test_sgd_and_momentum_two_steps_by_hand(face, rule):
    lr, mu = 0.1, 0.9
    hyper = dict(learning_rate=lr) if rule == "sgd" else dict(learning_rate=lr, momentum=mu)
    history = face.run(rule, [np.array(P0)], [[np.array(g)] for g in MOMENTUM_GRADS], **hyper)
    for i in range(2):
        gs = [g[i] for g in MOMENTUM_GRADS]
        if rule == "sgd":
            want = [(P0[i] - lr * gs[0], None), (P0[i] - lr * gs[0] - lr * gs[1], None)]
        else:
            want = spec_momentum(gs, P0[i], lr, mu, nesterov=rule == "nesterov_momentum")
        for step, (p, velocity) in enumerate(want):
            assert history[step]["p0"][i] == pytest.approx(p, rel=1e-6)
            if velocity is not None:
                assert history[step]["p0.velocity"][i] == pytest.approx(velocity, rel=1e-6)
    if rule == "nesterov_momentum":  # element 0 worked out in numbers
        v1 = -0.1 * 0.5                    # -0.05
        v2 = 0.9 * v1 - 0.1 * -1.5         # 0.105
        p1 = 0.5 + 0.9 * v1 - 0.1 * 0.5    # 0.405
        p2 = p1 + 0.9 * v2 - 0.1 * -1.5    # 0.6495
        assert p2 == pytest.approx(0.6495)
        assert history[1]["p0"][0] == pytest.approx(p2, rel=1e-6)


@pytest.mark.parametrize("amsgrad", [False, True], ids=["adam", "amsgrad"])
def test_adamw_two_steps_by_hand(face, amsgrad):
    lr, b1, b2, eps, wd = 0.1, 0.9, 0.99, 1e-8, 0.5
    grads = GRADS[:2]
    history = face.run("adamw", [np.array(P0)], [[np.array(g)] for g in grads],
                       learning_rate=lr, beta1=b1, beta2=b2, epsilon=eps, weight_decay=wd,
                       amsgrad=amsgrad)
    for i in range(2):
        p, m, v, v_hat = P0[i], 0.0, 0.0, 0.0
        for t, g in enumerate((g[i] for g in grads), start=1):
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g ** 2
            v_hat = max(v_hat, v) if amsgrad else v
            a_t = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
            p = p - a_t * m / (math.sqrt(v_hat) + eps) - lr * wd * p  # decay on the old p
            assert history[t - 1]["p0"][i] == pytest.approx(p, rel=2e-6)
