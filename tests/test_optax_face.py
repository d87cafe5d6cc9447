"""The optax face (amsgrad.optax): the published libraries themselves, per-run
hyperparameter arrays, schedules and pytrees. Step values are in test_rules_math.py."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from amsgrad import optax as ao

SHAPES = {"b": (3,), "w": (4, 3)}


def shrinking_grads(n_steps, seed=0):
    """Large gradients for 5 steps, then small ones: v shrinks, so the max matters."""
    rng = np.random.default_rng(seed)
    return [{k: np.float32(10.0 if s < 5 else 0.1) * rng.standard_normal(shape, np.float32)
             for k, shape in SHAPES.items()} for s in range(n_steps)]


def run(tx, grads, params=None):
    """Apply ``tx`` along ``grads``; return the updates and states of every step."""
    params = params or {k: jnp.ones(shape, jnp.float32) for k, shape in SHAPES.items()}
    state = tx.init(params)
    update = jax.jit(tx.update)
    out = []
    for g in grads:
        updates, state = update(g, state, params)
        params = optax.apply_updates(params, updates)
        out.append((updates, state))
    return out


def history(out, part, run=None):
    """One array per leaf stacking ``part`` ('updates' or a state field) over the steps
    of ``out``; ``run`` picks one run of a stacked grid."""
    trees = [u if part == "updates" else getattr(s, part) for u, s in out]
    pick = (lambda x: x) if run is None else (lambda x: x[run])
    return jax.tree_util.tree_map(lambda *xs: np.stack([pick(np.asarray(x)) for x in xs]),
                                  *trees)


def assert_trees_close(a, b, rtol=1e-6):
    """Leaf by leaf to ``rtol``, relative to each leaf's largest entry as well: moments
    that cancel to near zero keep only the absolute accuracy of their terms."""
    def close(x, y):
        x, y = np.asarray(x), np.asarray(y)
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * np.abs(y).max())
    jax.tree_util.tree_map(close, a, b)


# optax forms 1 - b2 in float64 but b2**t in float32; our rule (like the Theano graph
# of Lasagne) forms both in float32. For b2 = 0.999 that shifts v by 1.3e-5 relative;
# for b2 exact in float32 (1 - 2**-9) the two agree to rounding.
@pytest.mark.parametrize("b2, rtol", [(0.9, 1e-6), (1 - 2 ** -9, 1e-6), (0.999, 2e-5)])
def test_optax_variant_is_optax_amsgrad(b2, rtol):
    grads = shrinking_grads(40)
    ours = run(ao.amsgrad(learning_rate=0.01, beta2=b2, variant="optax"), grads)
    theirs = run(optax.amsgrad(learning_rate=0.01, b1=0.9, b2=b2, eps=1e-8, eps_root=0.0),
                 grads)
    for (u_ours, s_ours), (u_theirs, s_theirs) in zip(ours, theirs):
        assert_trees_close(u_ours, u_theirs, rtol=rtol)
        assert_trees_close(s_ours.nu_max, s_theirs[0].nu_max, rtol=2 * rtol)
        assert_trees_close(s_ours.nu, s_theirs[0].nu, rtol=2 * rtol)
    if b2 == 0.9:  # ... and on this sequence our rule is a different algorithm
        lasagne = run(ao.amsgrad(learning_rate=0.01, beta2=b2), grads)
        diff = np.abs(np.asarray(lasagne[-1][0]["w"]) - np.asarray(ours[-1][0]["w"]))
        assert diff.max() > 1e-2 * np.abs(np.asarray(ours[-1][0]["w"])).max()


def test_optax_variant_of_adam_is_optax_adam():
    grads = shrinking_grads(20)
    ours = run(ao.adam(learning_rate=0.01, beta2=0.99, epsilon=1e-3, variant="optax"), grads)
    theirs = run(optax.adam(learning_rate=0.01, b1=0.9, b2=0.99, eps=1e-3), grads)
    for (u_ours, _), (u_theirs, _) in zip(ours, theirs):
        assert_trees_close(u_ours, u_theirs)


# torch.optim.Adam's parameters minus their start (1) after steps 1 (Adam only), 6, 30 of
# shrinking_grads(30), lr 0.01, betas (0.9, 0.99), eps 1e-3; computed once with torch
# 2.13.0 (CPU) and numpy 2.4, by:
#
#   import numpy as np, torch
#   SHAPES = {"b": (3,), "w": (4, 3)}
#   rng = np.random.default_rng(0)  # shrinking_grads(30)
#   grads = [{k: np.float32(10.0 if s < 5 else 0.1) * rng.standard_normal(shape, np.float32)
#             for k, shape in SHAPES.items()} for s in range(30)]
#   for amsgrad in (False, True):
#       p = {k: torch.ones(shape, requires_grad=True) for k, shape in SHAPES.items()}
#       opt = torch.optim.Adam(list(p.values()), lr=0.01, betas=(0.9, 0.99), eps=1e-3,
#                              amsgrad=amsgrad)
#       for step, g in enumerate(grads, start=1):
#           for k in p:
#               p[k].grad = torch.tensor(g[k])
#           opt.step()
#           if step in ((6, 30) if amsgrad else (1, 6, 30)):
#               print(amsgrad, step, {k: [float(f"{x:.9g}") for x in
#                                         (v.detach().numpy() - 1).ravel()]
#                                     for k, v in p.items()})
TORCH_VALUES = {
    "adam": {
        1: {
            "b": [-0.00999909639, 0.00999927521, 0.00999760628],
            "w": [0.00999879837, -0.00999832153, 0.00998663902, -0.00998330116,
                  0.00996887684, 0.00999462605, -0.009999156, -0.00999873877,
                  0.00999927521, -0.00999867916, 0.00999879837, -0.00999909639],
        },
        6: {
            "b": [-0.000277519226, 0.0289857388, 0.0397695303],
            "w": [0.0484681129, -0.0490103364, 0.0362966061, 0.00805950165,
                  -0.0128931999, -0.0092009306, -0.0212901235, -0.0240567923,
                  0.0233802795, -0.0114875436, 0.0544918776, -0.0129718781],
        },
        30: {
            "b": [0.0198204517, 0.0274305344, 0.079102993],
            "w": [0.093437314, -0.100998163, 0.0664635897, 0.00816035271,
                  -0.0497252941, -0.056132555, -0.0467834473, -0.0183440447,
                  0.00878095627, 0.0213794708, 0.118576765, -0.00342553854],
        },
    },
    "amsgrad": {  # its step 1 is Adam's
        6: {
            "b": [-0.000289678574, 0.0289862156, 0.0397138596],
            "w": [0.0484156609, -0.0489436984, 0.0362774134, 0.00805222988,
                  -0.0128712654, -0.00920307636, -0.0212750435, -0.0240607858,
                  0.0233553648, -0.0114409328, 0.0544518232, -0.0129665136],
        },
        30: {
            "b": [0.0189167261, 0.0275332928, 0.0772724152],
            "w": [0.0913015604, -0.0986553431, 0.0651000738, 0.00816392899,
                  -0.0480437279, -0.0540846586, -0.0456255674, -0.0185865164,
                  0.00946676731, 0.0199503899, 0.115714788, -0.003870368],
        },
    },
}


@pytest.mark.parametrize("rule", ["adam", "amsgrad"])
def test_pytorch_variant_is_torch_adam(rule):
    """variant='pytorch' against torch.optim.Adam(amsgrad=...)'s stored values: the large
    gradients of the first 5 steps set the maximum, which AMSGrad keeps afterwards."""
    grads = shrinking_grads(30)
    tx = ao.adam_family(learning_rate=0.01, beta2=0.99, epsilon=1e-3,
                        amsgrad=rule == "amsgrad", variant="pytorch")
    out = run(tx, grads)
    params = {k: np.ones(shape, np.float32) for k, shape in SHAPES.items()}
    for step, (updates, _) in enumerate(out, start=1):
        params = {k: params[k] + np.asarray(updates[k]) for k in params}
        if step in TORCH_VALUES[rule]:
            for k, expected in TORCH_VALUES[rule][step].items():
                # float32 parameters near 1 hold about 6e-8; torch forms 1 - b2 in float64
                np.testing.assert_allclose((params[k] - 1).ravel(), expected, rtol=1e-5,
                                           atol=1e-7, err_msg=f"{rule}, step {step}, {k}")
    # the stored values do tell the two rules apart
    assert np.abs(np.subtract(TORCH_VALUES["adam"][30]["w"],
                              TORCH_VALUES["amsgrad"][30]["w"])).max() > 1e-3


@pytest.mark.parametrize("variant", ["lasagne", "pytorch", "optax"])
def test_per_run_hyperparameters_equal_separate_runs(variant):
    K = 4
    lr = np.array([0.1, 0.01, 0.001, 0.01], np.float32)
    beta2 = np.array([0.99, 0.999, 0.9, 0.99], np.float32)
    bias_correction = np.array([True, False, True, False])
    is_amsgrad = np.array([True, True, False, False])
    rng = np.random.default_rng(3)
    shapes = {"s": (), "w": (2, 3, 3), "b": (3,)}
    p0 = {k: rng.standard_normal((K,) + shape).astype(np.float32) for k, shape in shapes.items()}
    scales = 10.0 ** rng.uniform(-2, 1, size=30)
    grads = [{k: np.float32(scales[s]) * rng.standard_normal((K,) + shape).astype(np.float32)
              for k, shape in shapes.items()} for s in range(30)]
    stacked = run(ao.adam_family(learning_rate=jnp.asarray(lr), beta2=jnp.asarray(beta2),
                                 bias_correction=jnp.asarray(bias_correction),
                                 amsgrad=jnp.asarray(is_amsgrad), variant=variant),
                  grads, params={k: jnp.asarray(v) for k, v in p0.items()})
    for r in range(K):
        alone = run(ao.adam_family(learning_rate=float(lr[r]), beta2=float(beta2[r]),
                                   bias_correction=bool(bias_correction[r]),
                                   amsgrad=bool(is_amsgrad[r]), variant=variant),
                    [{k: g[k][r] for k in g} for g in grads],
                    params={k: jnp.asarray(v[r]) for k, v in p0.items()})
        # Whole histories per leaf, so a moment that cancels to near zero at one step is
        # judged against the size it has over the run.
        for part in ("updates", "mu", "nu") + (("nu_max",) if is_amsgrad[r] else ()):
            assert_trees_close(history(stacked, part, run=r), history(alone, part))
        assert int(stacked[-1][1].count) == int(alone[-1][1].count) == 30
    # The four runs really did differ.
    final = np.asarray(stacked[-1][0]["w"]).reshape(K, -1)
    assert len({tuple(np.round(row, 8)) for row in final}) == K


def test_per_run_hyperparameter_of_the_wrong_length_is_rejected():
    tx = ao.adam(learning_rate=jnp.array([0.1, 0.01, 0.001]))
    params = {"w": jnp.ones((4, 2))}
    with pytest.raises(ValueError, match=r"\(3,\).*\(4, 2\)"):
        tx.update(params, tx.init(params), params)
    scalar = {"s": jnp.ones(())}
    with pytest.raises(ValueError, match=r"\(3,\).*\(\)"):
        tx.update(scalar, tx.init(scalar), scalar)


def test_learning_rate_schedule_is_read_at_the_step_count():
    """optax convention: step t uses schedule(t - 1). Checked without bias correction,
    where the step is lr_t * m_t / (sqrt(v_t) + eps), by hand in float64."""
    schedule = lambda count: 0.1 / (count + 1.0)
    gs = [2.0, -1.0, 0.5]
    out = run(ao.adam(learning_rate=schedule, beta1=0.5, beta2=0.75, bias_correction=False),
              [{"x": jnp.float32(g)} for g in gs], params={"x": jnp.float32(0.0)})
    m = v = 0.0
    for t, (g, (updates, _)) in enumerate(zip(gs, out), start=1):
        m, v = 0.5 * m + 0.5 * g, 0.75 * v + 0.25 * g * g
        want = -0.1 / t * m / (np.sqrt(v) + 1e-8)
        assert float(updates["x"]) == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_keeps_tuple_and_nested_pytrees(nesterov):
    params = (jnp.ones(3), {"b": jnp.zeros(2), "c": (jnp.zeros(()),)})
    grads = (jnp.full(3, 2.0), {"b": jnp.array([1.0, -1.0]), "c": (jnp.float32(4.0),)})
    tx = ao.momentum(0.1, momentum=0.5, nesterov=nesterov)
    state = tx.init(params)
    updates, state = tx.update(grads, state, params)
    updates, state = tx.update(grads, state, params)
    assert jax.tree_util.tree_structure(updates) == jax.tree_util.tree_structure(params)
    assert jax.tree_util.tree_structure(state.velocity) == jax.tree_util.tree_structure(params)
    # Two equal gradients g: v1 = -lr g, v2 = mu v1 - lr g = -0.15 g;
    # the update is v2, or mu v2 - lr g = -0.175 g with Nesterov.
    factor = -0.175 if nesterov else -0.15
    for g, u, vel in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(updates),
                         jax.tree_util.tree_leaves(state.velocity)):
        np.testing.assert_allclose(u, factor * np.asarray(g), rtol=1e-6)
        np.testing.assert_allclose(vel, -0.15 * np.asarray(g), rtol=1e-6)


def test_adamw_with_per_run_decay_and_without_params():
    wd = jnp.array([0.0, 0.5])
    tx = ao.adamw(learning_rate=0.1, weight_decay=wd)
    params = {"w": jnp.array([[2.0, -2.0], [2.0, -2.0]])}
    grads = {"w": jnp.zeros((2, 2))}  # no gradient: only the decay moves the parameters
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], [[0.0, 0.0], [-0.1, 0.1]], rtol=1e-6)
    with pytest.raises(ValueError, match="weight_decay needs the parameters"):
        tx.update(grads, tx.init(params))


def test_float32_state_and_updates():
    params = {"w": jnp.ones((2, 2), jnp.float32)}
    tx = ao.amsgrad(learning_rate=jnp.float32(0.1), beta2=0.99)
    (updates, state), = run(tx, [{"w": np.ones((2, 2), np.float32)}], params=params)
    for leaf in jax.tree_util.tree_leaves((updates, state.mu, state.nu, state.nu_max)):
        assert leaf.dtype == jnp.float32
    assert state.count.dtype == jnp.int32 and int(state.count) == 1


def test_runs_grouped_by_seed_broadcast_along_first_and_last_axes():
    # parameters stored (S, *shape, R): S=2 seeds, R=3 runs each
    g = jnp.ones((2, 4, 3), jnp.float32)
    lr = jnp.asarray([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    out = ao.per_run(lr, g)
    assert out.shape == (2, 1, 3) and out.dtype == jnp.float32
    np.testing.assert_array_equal((out * g)[1, 2], [4.0, 5.0, 6.0])
    with pytest.raises(ValueError, match=r"shape \(2, 3\) does not match .* \(3, 4, 2\)"):
        ao.per_run(lr, jnp.ones((3, 4, 2)))


def test_a_step_count_per_run_and_runs_that_sit_out():
    """Adam with bias correction, two runs at steps 0 and 9: the first step of each is
    lr * sqrt(1 - b2^t) / (1 - b1^t) * g / (|g| + eps), by hand; an inactive run's
    update is zero and its state, count included, stays."""
    lr, b1, b2 = 0.1, 0.9, 0.99
    tx = ao.active_runs(ao.adam_family(lr, b1, b2, epsilon=0.0, runs=(2,)))
    params = {"w": jnp.zeros((2, 3))}
    state = tx.init(params)
    assert state.count.shape == (2,)
    state = state._replace(count=jnp.asarray([0, 9], jnp.int32))
    g = {"w": jnp.full((2, 3), 2.0)}
    updates, new = tx.update(g, state, params, active=jnp.asarray([True, True]))
    for run, t in ((0, 1), (1, 10)):
        m, v = (1 - b1) * 2.0, (1 - b2) * 4.0
        want = -lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / np.sqrt(v)
        np.testing.assert_allclose(updates["w"][run], [want] * 3, rtol=1e-5)
    np.testing.assert_array_equal(new.count, [1, 10])
    updates, held = tx.update(g, state, params, active=jnp.asarray([False, True]))
    np.testing.assert_array_equal(updates["w"][0], 0.0)
    np.testing.assert_array_equal(held.count, [0, 10])
    np.testing.assert_array_equal(held.mu["w"][0], 0.0)
    np.testing.assert_array_equal(held.mu["w"][1], new.mu["w"][1])
    # no flags: every run steps, as the plain transformation
    plain = ao.adam_family(lr, b1, b2, epsilon=0.0, runs=(2,)).update(g, state, params)
    np.testing.assert_array_equal(tx.update(g, state, params)[0]["w"], plain[0]["w"])


# b2 exact in float32, so optax's float64 1 - b2 does not show (see above)
OPTAX_KW = dict(b1=0.8, b2=1 - 2 ** -7, eps=1e-3)
OURS_KW = dict(beta1=0.8, beta2=1 - 2 ** -7, epsilon=1e-3)


@pytest.mark.parametrize("ours, theirs, eps", [
    (lambda **kw: ao.amsgrad(variant="optax", **kw), optax.amsgrad, 1e-3),
    (lambda **kw: ao.adam(variant="optax", **kw), optax.adam, 1e-3),
    (lambda **kw: ao.adam_family(amsgrad=True, variant="optax", **kw), optax.amsgrad, 1e-3),
    # adamw has no optax variant: ours differs from optax's in epsilon only (see
    # docs/variants.md), below float32 rounding for eps = 1e-8 and these gradients
    (lambda **kw: ao.adamw(weight_decay=0.1, **kw),
     lambda **kw: optax.adamw(weight_decay=0.1, **kw), 1e-8),
], ids=["amsgrad", "adam", "adam_family", "adamw"])
def test_optax_names_are_accepted_and_mean_what_they_do_in_optax(ours, theirs, eps):
    grads = shrinking_grads(15)
    with_optax_names = run(ours(learning_rate=0.01, **OPTAX_KW), grads)
    with_our_names = run(ours(learning_rate=0.01, **OURS_KW), grads)
    for (u_a, _), (u_b, _) in zip(with_optax_names, with_our_names):
        jax.tree_util.tree_map(np.testing.assert_array_equal, u_a, u_b)
    kw = dict(OPTAX_KW, eps=eps)
    for (u_ours, _), (u_theirs, _) in zip(run(ours(learning_rate=0.01, **kw), grads),
                                          run(theirs(learning_rate=0.01, **kw), grads)):
        assert_trees_close(u_ours, u_theirs, rtol=1e-5)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_and_momentum_take_optax_keywords_and_equal_optax_sgd(nesterov):
    """Lasagne's velocity is optax's trace times -lr, so the updates agree."""
    grads = shrinking_grads(10)
    ours = run(ao.momentum(learning_rate=0.05, momentum=0.9, nesterov=nesterov), grads)
    theirs = run(optax.sgd(learning_rate=0.05, momentum=0.9, nesterov=nesterov), grads)
    for (u_ours, _), (u_theirs, _) in zip(ours, theirs):
        assert_trees_close(u_ours, u_theirs)
    plain = run(ao.sgd(learning_rate=0.05), grads[:2])
    jax.tree_util.tree_map(lambda u, g: np.testing.assert_allclose(u, -0.05 * g, rtol=1e-6),
                           plain[1][0], grads[1])


@pytest.mark.parametrize("call, message", [
    (lambda: ao.amsgrad(1e-3, beta2=0.99, b2=0.9), r"amsgrad\(\) got 'beta2' and its optax "
                                                   r"name 'b2'"),
    (lambda: ao.adam(1e-3, 0.9, b1=0.8), r"adam\(\) got 'beta1' and its optax name 'b1'"),
    (lambda: ao.adamw(epsilon=1e-8, eps=1e-7), r"adamw\(\) got 'epsilon' and its optax name "
                                               r"'eps'"),
    (lambda: ao.adam_family(learning_rate=1e-3, b2=0.9, beta2=0.9),
     r"adam_family\(\) got 'beta2' and its optax name 'b2'"),
    (lambda: ao.amsgrad(1e-3, eps_root=0.0), r"unexpected keyword argument 'eps_root'"),
])
def test_a_hyperparameter_under_both_names_is_a_clear_error(call, message):
    with pytest.raises(TypeError, match=message):
        call()


def test_optax_bias_correction_flags_where_this_optax_has_them():
    """docs/variants.md: optax >= 0.2.7 has amsgrad(bias_correction_mu=, bias_correction_nu=);
    both off is our bias_correction=False (every variant). optax 0.2.1 (the Theano
    environment) has no such flags."""
    version = tuple(int(p) for p in optax.__version__.split(".")[:3])
    flags = dict(bias_correction_mu=False, bias_correction_nu=False)
    if version < (0, 2, 7):
        with pytest.raises(TypeError, match="bias_correction_mu"):
            optax.amsgrad(learning_rate=0.01, **flags)
        return
    grads = shrinking_grads(20)
    theirs = run(optax.amsgrad(learning_rate=0.01, b2=0.9, eps=1e-3, **flags), grads)
    for variant in ("lasagne", "pytorch", "optax"):
        ours = run(ao.amsgrad(learning_rate=0.01, b2=0.9, eps=1e-3, bias_correction=False,
                              variant=variant), grads)
        for (u_ours, s_ours), (u_theirs, s_theirs) in zip(ours, theirs):
            assert_trees_close(u_ours, u_theirs)
            assert_trees_close(s_ours.nu_max, s_theirs[0].nu_max)
