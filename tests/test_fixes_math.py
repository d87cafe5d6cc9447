"""AdamNC, AdaBound/AMSBound, Yogi, AdaBelief and ADOPT against hand-written formulas, on
all three faces (Theano, PyTensor, JAX/optax; float32).

Each ``spec_*`` below is the published rule for one scalar in plain Python floats,
written from the papers and reference code (docs/variants.md), never by calling
``amsgrad.fixes``; the ``*_by_hand`` tests work the first steps out in numbers.
"""
import math

import numpy as np
import pytest

# Element 0 shrinks (a large gradient, then small ones), 1 grows, 2 is large (AdaBound's
# lower bound), 3 sits between AdaBound's bounds at the first step.
GRADS = [(1.0, -0.3, 50.0, 5.0), (0.05, 0.4, -20.0, 4.0), (-0.02, 0.1, 5.0, -3.0)]
P0 = (0.5, -0.25, 1.0, 0.0)
TOL = dict(rtol=3e-6, atol=1e-7)  # float32 faces against float64 references


def spec_adamnc(grads, p, learning_rate, beta1, beta1_decay, epsilon=1e-8):
    out, m = [], 0.0
    for t, g in enumerate(grads, start=1):
        beta1_t = beta1 * beta1_decay ** (t - 1)
        m = beta1_t * m + (1 - beta1_t) * g
        v = sum(x * x for x in grads[:t]) / t  # the plain mean of the squares so far
        p -= learning_rate * m / (math.sqrt(v) + epsilon)
        out.append(dict(p=p, m=m, v=v))
    return out


def spec_adabound(grads, p, learning_rate, final_lr, gamma, beta1=0.9, beta2=0.999,
                  epsilon=1e-8, amsbound=False, variant="authors", base_lr=None):
    """The adabound package's step (variant 'authors') or the paper's Algorithms 2/3.
    ``learning_rate`` may be a list (one rate per step: a schedule)."""
    rates = learning_rate if isinstance(learning_rate, list) else [learning_rate] * len(grads)
    base_lr = rates[0] if base_lr is None else base_lr
    out, m, v, v_max = [], 0.0, 0.0, 0.0
    for t, (g, lr) in enumerate(zip(grads, rates), start=1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        v_max = max(v_max, v)
        denom = math.sqrt(v_max if amsbound else v) + epsilon
        final = final_lr * lr / base_lr
        lower, upper = final * (1 - 1 / (gamma * t + 1)), final * (1 + 1 / (gamma * t))
        if variant == "authors":
            eta = min(max(lr * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t) / denom, lower),
                      upper)
        else:
            eta = min(max(lr / denom, lower), upper) / math.sqrt(t)
        p -= eta * m
        out.append(dict(p=p, m=m, v=v, v_hat=v_max) if amsbound else dict(p=p, m=m, v=v))
    return out


def spec_yogi(grads, p, learning_rate, beta1=0.9, beta2=0.999, epsilon=1e-3, initial=1e-6,
              bias_correction=True):
    out, m, v = [], initial, initial
    for t, g in enumerate(grads, start=1):
        m = beta1 * m + (1 - beta1) * g
        if v > g * g:  # v falls toward g**2 by (1 - beta2) g**2 at most
            v = v - (1 - beta2) * g * g
        elif v < g * g:
            v = v + (1 - beta2) * g * g
        c1, c2 = (1 - beta1 ** t, 1 - beta2 ** t) if bias_correction else (1, 1)
        p -= learning_rate * (m / c1) / (math.sqrt(v / c2) + epsilon)
        out.append(dict(p=p, m=m, v=v))
    return out


def spec_adabelief(grads, p, learning_rate, beta1=0.9, beta2=0.999, epsilon=1e-16,
                   epsilon_root=1e-16, variant="paper"):
    out, m, s = [], 0.0, 0.0
    for t, g in enumerate(grads, start=1):
        m_prev, m = m, beta1 * m + (1 - beta1) * g
        residual = g - (m if variant == "paper" else m_prev)
        s = beta2 * s + (1 - beta2) * residual ** 2 + epsilon_root
        p -= learning_rate * (m / (1 - beta1 ** t)) / (math.sqrt(s / (1 - beta2 ** t)) + epsilon)
        out.append(dict(p=p, m=m, v=s))
    return out


def spec_adopt(grads, p, learning_rate, beta1=0.9, beta2=0.9999, epsilon=1e-6,
               use_clipping=True):
    out, m, v = [], 0.0, grads[0] ** 2  # step 1 only sets v
    out.append(dict(p=p, m=m, v=v))
    for t, g in enumerate(grads[1:], start=2):
        normed = g / max(math.sqrt(v), epsilon)
        if use_clipping:
            c = (t - 1) ** 0.25
            normed = min(max(normed, -c), c)
        m = beta1 * m + (1 - beta1) * normed
        v = beta2 * v + (1 - beta2) * g * g
        p -= learning_rate * m
        out.append(dict(p=p, m=m, v=v))
    return out


SPECS = {"adamnc": spec_adamnc, "adabound": spec_adabound, "amsbound": spec_adabound,
         "yogi": spec_yogi, "adabelief": spec_adabelief, "adopt": spec_adopt}
# (rule, the face's keywords, the spec's keywords beyond them); rates large enough to move
CASES = [
    ("adamnc", dict(learning_rate=0.1, beta1=0.9, beta1_decay=0.5), {}),
    ("adabound", dict(learning_rate=0.1, final_lr=0.1, gamma=0.05, beta2=0.99), {}),
    ("adabound", dict(learning_rate=0.1, final_lr=0.1, gamma=0.05, beta2=0.99,
                      variant="paper"), {}),
    ("amsbound", dict(learning_rate=0.1, final_lr=0.1, gamma=0.05, beta2=0.99),
     dict(amsbound=True)),
    ("amsbound", dict(learning_rate=0.1, final_lr=0.1, gamma=0.05, beta2=0.99,
                      variant="paper"), dict(amsbound=True)),
    ("yogi", dict(learning_rate=0.1, beta2=0.99), {}),
    ("yogi", dict(learning_rate=0.1, beta2=0.99, bias_correction=False), {}),
    ("adabelief", dict(learning_rate=0.1, beta2=0.99), {}),
    ("adabelief", dict(learning_rate=0.1, beta2=0.99, variant="lagged"), {}),
    ("adopt", dict(learning_rate=0.1, beta2=0.99), {}),
    ("adopt", dict(learning_rate=0.1, beta2=0.99, use_clipping=False), {}),
]
SLOT_NAMES = {"m": "p0.m", "v": "p0.v", "v_hat": "p0.v_hat"}


def expected(rule, kw, extra):
    per_element = [SPECS[rule]([g[i] for g in GRADS], P0[i], **kw, **extra)
                   for i in range(len(P0))]
    return [{k: np.array([e[step][k] for e in per_element]) for k in per_element[0][0]}
            for step in range(len(GRADS))]


def run(face, rule, grads=GRADS, **kw):
    return face.run(rule, [np.array(P0)], [[np.array(g)] for g in grads], **kw)


CASE_IDS = ["adamnc", "adabound", "adabound-paper", "amsbound", "amsbound-paper", "yogi",
            "yogi-nobc", "adabelief", "adabelief-lagged", "adopt", "adopt-noclip"]


@pytest.mark.parametrize("rule, kw, extra", CASES, ids=CASE_IDS)
def test_three_steps_follow_the_published_formulas(face, rule, kw, extra):
    want = expected(rule, kw, extra)
    history = run(face, rule, **kw)
    for step, (got, ref) in enumerate(zip(history, want), start=1):
        assert float(got["t"]) == step
        names = {k for k in got if k.startswith("p0.")}
        assert names == {SLOT_NAMES[k] for k in ref if k != "p"}
        np.testing.assert_allclose(got["p0"], ref["p"], **TOL, err_msg=f"p after {step}")
        for k in ref:
            if k != "p":
                np.testing.assert_allclose(got[SLOT_NAMES[k]], ref[k], **TOL,
                                           err_msg=f"{k} after step {step}")


def test_variants_and_switches_change_the_steps():
    """The cases above tell the forms apart: each pair differs by step 3."""
    final = {}
    for rule, kw, extra in CASES:
        key = (rule, kw.get("variant"), kw.get("bias_correction"), kw.get("use_clipping"))
        final[key] = expected(rule, kw, extra)[2]["p"]
    pairs = [(("adabound", None, None, None), ("adabound", "paper", None, None)),
             (("adabound", None, None, None), ("amsbound", None, None, None)),
             (("yogi", None, None, None), ("yogi", None, False, None)),
             (("adabelief", None, None, None), ("adabelief", "lagged", None, None)),
             (("adopt", None, None, None), ("adopt", None, None, False))]
    for a, b in pairs:
        assert np.abs(final[a] - final[b]).max() > 1e-4, (a, b)


def test_adamnc_two_steps_by_hand(face):
    """lr 0.1, beta1 0.9, lambda 0.5: v_1 = g**2, so every first step is lr (1 - beta1)
    = 0.01; then beta1_2 = 0.45 and v_2 = (g_1**2 + g_2**2) / 2."""
    h = run(face, "adamnc", learning_rate=0.1, beta1=0.9, beta1_decay=0.5)
    np.testing.assert_allclose(np.array(P0) - h[0]["p0"], [0.01, -0.01, 0.01, 0.01], rtol=1e-5)
    np.testing.assert_allclose(h[0]["p0.v"], [1.0, 0.09, 2500.0, 25.0], rtol=1e-6)
    m2 = 0.45 * 0.1 + 0.55 * 0.05  # element 0: 0.0725
    assert h[1]["p0.m"][0] == pytest.approx(0.0725, rel=1e-6)
    assert h[1]["p0.v"][0] == pytest.approx(0.50125, rel=1e-6)
    assert h[1]["p0"][0] == pytest.approx(0.49 - 0.1 * m2 / math.sqrt(0.50125), rel=1e-6)


@pytest.mark.parametrize("variant", ["authors", "paper"])
def test_adabound_first_step_by_hand(face, variant):
    """lr 0.1, final_lr 0.1, gamma 0.5: the first step's bounds are [1/30, 0.3]. As
    1 - beta1 = sqrt(1 - beta2) = 0.1, both forms' first rate is lr / (0.1 |g|) = 1/|g|:
    clipped to 0.3 for |g| < 3.33, to 1/30 for |g| > 30; the step is rate * 0.1 g."""
    h = run(face, "adabound", grads=GRADS[:1], learning_rate=0.1, final_lr=0.1, gamma=0.5,
            beta2=0.99, variant=variant)
    want = [0.3 * 0.1 * 1.0, 0.3 * 0.1 * -0.3, (1 / 30) * 0.1 * 50.0, 0.2 * 0.1 * 5.0]
    np.testing.assert_allclose(np.array(P0) - h[0]["p0"], want, rtol=1e-5)


def test_adabound_follows_a_learning_rate_schedule(optax_face):
    """final_lr is relative to the initial rate: halving the rate halves the bounds."""
    rates = [0.1, 0.05, 0.05]
    h = optax_face.run("adabound", [np.array(P0)], [[np.array(g)] for g in GRADS],
                       learning_rate=lambda count: 0.1 - 0.05 * (count > 0),
                       initial_learning_rate=0.1, final_lr=0.1, gamma=0.5, beta2=0.99)
    for step, ref in enumerate(expected("adabound", dict(learning_rate=rates, final_lr=0.1,
                                                         gamma=0.5, beta2=0.99), {})):
        np.testing.assert_allclose(h[step]["p0"], ref["p"], **TOL)


def test_yogi_first_step_by_hand(face):
    """m and v start at 1e-6; with g**2 > 1e-6, v_1 = 1e-6 + (1 - beta2) g**2."""
    lr, b1, b2, eps = 0.1, 0.9, 0.99, 1e-3
    h = run(face, "yogi", grads=GRADS[:1], learning_rate=lr, beta2=b2)
    for i, g in enumerate(GRADS[0]):
        m, v = b1 * 1e-6 + (1 - b1) * g, 1e-6 + (1 - b2) * g * g
        assert h[0]["p0.v"][i] == pytest.approx(v, rel=1e-6)
        want = P0[i] - lr * (m / (1 - b1)) / (math.sqrt(v / (1 - b2)) + eps)
        assert h[0]["p0"][i] == pytest.approx(want, rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("variant, size", [("paper", 0.1 / 0.9), ("lagged", 0.1)])
def test_adabelief_first_step_by_hand(face, variant, size):
    """m_1 = (1 - beta1) g. The paper's residual g - m_1 = beta1 g gives the step
    lr / beta1 = 0.111 per coordinate; the lagged g - m_0 = g gives lr = 0.1."""
    h = run(face, "adabelief", grads=GRADS[:1], learning_rate=0.1, beta2=0.99, variant=variant)
    np.testing.assert_allclose(np.abs(np.array(P0) - h[0]["p0"]), size, rtol=1e-5)


def test_adopt_three_steps_by_hand(face):
    """Step 1 sets v = g**2 and moves nothing. Step 2 divides g_2 by |g_1| and clips to
    +-1: 0.05, 1.333 -> 1, -0.4, 0.8; m_2 = 0.1 of that, the step lr m_2."""
    h = run(face, "adopt", learning_rate=0.1, beta2=0.99)
    np.testing.assert_array_equal(h[0]["p0"], np.float32(P0))
    np.testing.assert_array_equal(h[0]["p0.m"], 0.0)
    np.testing.assert_allclose(h[0]["p0.v"], [1.0, 0.09, 2500.0, 25.0], rtol=1e-6)
    np.testing.assert_allclose(h[1]["p0.m"], [0.005, 0.1, -0.04, 0.08], rtol=1e-5)
    np.testing.assert_allclose(np.array(P0) - h[1]["p0"], [0.0005, 0.01, -0.004, 0.008],
                               rtol=1e-4)
    # step 3 clips at 2**0.25 = 1.189: element 3's -3 / sqrt(0.99*25 + 0.01*16) = -0.6005
    v2 = 0.99 * 25 + 0.01 * 16
    assert h[2]["p0.m"][3] == pytest.approx(0.9 * 0.08 + 0.1 * -3 / math.sqrt(v2), rel=1e-5)


@pytest.mark.parametrize("rule", ["adabound", "adabelief"])
def test_unknown_variant_is_rejected(face, rule):
    with pytest.raises(ValueError, match="variant must be one of"):
        run(face, rule, variant="keras")
