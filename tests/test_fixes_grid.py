"""A grid of runs through one transformation of the new rules equals the runs one by
one: per-run hyperparameter arrays, a step count per run (``runs=``) and runs that sit
steps out (``active_runs``), as test_optax_face.py checks for the Adam family."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from amsgrad import optax as ao

K = 3
SHAPES = {"s": (), "w": (2, 3)}
LR = [0.1, 0.01, 0.05]

# rule -> (per-run hyperparameters, Python values that stay as they are)
GRIDS = {
    "adamnc": ({"learning_rate": LR, "beta1": [0.9, 0.5, 0.8],
                "beta1_decay": [0.9, 1.0, 0.5], "epsilon": [1e-8, 1e-3, 1e-8]}, {}),
    "adabound": ({"learning_rate": LR, "final_lr": [0.1, 0.5, 0.01], "gamma": [0.1, 0.01, 0.5],
                  "initial_learning_rate": [0.2, 0.01, 0.05], "beta2": [0.99, 0.9, 0.999],
                  "amsbound": [True, False, True]}, {}),
    "adabound-paper": ({"learning_rate": LR, "final_lr": [0.1, 0.5, 0.01],
                        "gamma": [0.1, 0.01, 0.5], "amsbound": [False, True, True]},
                       {"variant": "paper"}),
    "yogi": ({"learning_rate": LR, "beta2": [0.99, 0.9, 0.999], "epsilon": [1e-3, 1e-2, 1e-4],
              "bias_correction": [True, False, True]}, {}),
    "adabelief": ({"learning_rate": LR, "beta1": [0.9, 0.8, 0.5],
                   "epsilon": [1e-16, 1e-8, 1e-3]}, {}),
    "adabelief-lagged": ({"learning_rate": LR, "beta2": [0.99, 0.9, 0.999]},
                         {"variant": "lagged"}),
    "adopt": ({"learning_rate": LR, "beta2": [0.99, 0.9, 0.9999],
               "epsilon": [1e-6, 1e-3, 0.1]}, {}),
    "adopt-noclip": ({"learning_rate": LR, "beta1": [0.9, 0.5, 0.0]},
                     {"use_clipping": False}),
}


def problem(seed=3, n_steps=20):
    rng = np.random.default_rng(seed)
    p0 = {k: rng.standard_normal((K,) + shape).astype(np.float32) for k, shape in SHAPES.items()}
    scales = 10.0 ** rng.uniform(-2, 1, size=n_steps)  # v rises and falls
    grads = [{k: np.float32(scales[s]) * rng.standard_normal((K,) + shape).astype(np.float32)
              for k, shape in SHAPES.items()} for s in range(n_steps)]
    return p0, grads


def as_array(values):
    return jnp.asarray(values, bool if isinstance(values[0], bool) else jnp.float32)


def as_python(values, r):
    return bool(values[r]) if isinstance(values[0], bool) else float(values[r])


def steps(tx, params, grads, count0=None, active=None, runs=False):
    """Parameters and state after each step; a step an inactive run sits out is kept."""
    state = tx.init(params)
    if count0 is not None:
        state = state._replace(count=jnp.asarray(count0, jnp.int32))
    update = jax.jit(tx.update)
    out = []
    for s, g in enumerate(grads):
        if runs:
            updates, state = update(g, state, params, None if active is None else active[s])
        elif active is None or active[s]:
            updates, state = update(g, state, params)
        else:
            updates = jax.tree_util.tree_map(jnp.zeros_like, g)
        params = jax.tree_util.tree_map(lambda p, u: p + u, params, updates)
        out.append((params, state))
    return out


def history(out, part, run=None):
    """One array per leaf stacking ``part`` ('params' or a state field) over the steps;
    ``run`` picks one run of the grid."""
    trees = [p if part == "params" else getattr(s, part) for p, s in out]
    pick = (lambda x: x) if run is None else (lambda x: x[run])
    return jax.tree_util.tree_map(lambda *xs: np.stack([pick(np.asarray(x)) for x in xs]),
                                  *trees)


def assert_close(a, b, rtol=1e-6):
    """Whole histories per leaf, relative to the leaf's largest entry as well: a value
    that passes near zero keeps only the absolute accuracy of its history."""
    def close(x, y):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * max(np.abs(y).max(), 1e-30))
    jax.tree_util.tree_map(close, a, b)


def fields(state):
    return [f for f in state._fields if getattr(state, f) is not None]


@pytest.mark.parametrize("name", sorted(GRIDS))
@pytest.mark.parametrize("per_run_counts", [False, True], ids=["one-count", "runs"])
def test_grid_equals_separate_runs(name, per_run_counts):
    """Runs start at steps 0, 3, 7 (resumed) with ``runs=(K,)``; with ``active_runs`` run 1
    sits out steps 2-4 and run 2 step 5."""
    rule = name.split("-")[0]
    grid, fixed = GRIDS[name]
    p0, grads = problem()
    count0 = [0, 3, 7] if per_run_counts else None
    active = None
    if per_run_counts:
        active = np.ones((len(grads), K), bool)
        active[2:5, 1] = False
        active[5, 2] = False
    options = dict(runs=(K,)) if per_run_counts else {}
    tx = getattr(ao, rule)(**{k: as_array(v) for k, v in grid.items()}, **fixed, **options)
    if per_run_counts:
        tx = ao.active_runs(tx)
    stacked = steps(tx, {k: jnp.asarray(v) for k, v in p0.items()}, grads, count0,
                    None if active is None else jnp.asarray(active), runs=per_run_counts)
    finals = []
    for r in range(K):
        alone_tx = getattr(ao, rule)(**{k: as_python(v, r) for k, v in grid.items()}, **fixed)
        alone = steps(alone_tx, {k: jnp.asarray(v[r]) for k, v in p0.items()},
                      [{k: g[k][r] for k in g} for g in grads],
                      None if count0 is None else count0[r],
                      None if active is None else active[:, r])
        # a grid with some AMSBound runs keeps the maximum for all of them
        assert set(fields(alone[0][1])) <= set(fields(stacked[0][1]))
        for part in ["params"] + [f for f in fields(alone[0][1]) if f != "count"]:
            assert_close(history(stacked, part, run=r), history(alone, part))
        want = len(grads) - (0 if active is None else int((~active[:, r]).sum()))
        want += 0 if count0 is None else count0[r]
        assert int(np.asarray(stacked[-1][1].count).reshape(-1)[r if per_run_counts else 0]) \
            == int(alone[-1][1].count) == want
        finals.append(np.asarray(stacked[-1][0]["w"][r]))
    assert len({tuple(np.round(f.ravel(), 7)) for f in finals}) == K  # the runs differed


def test_adopt_first_step_is_per_run():
    """Run 0 starts fresh (its first step only sets v), run 1 resumes at step 4 (it moves)."""
    tx = ao.adopt(0.1, runs=(2,))
    params = {"w": jnp.zeros((2, 3))}
    state = tx.init(params)._replace(count=jnp.asarray([0, 4], jnp.int32))
    state = state._replace(nu={"w": jnp.ones((2, 3))})
    updates, new = tx.update({"w": jnp.full((2, 3), 0.5)}, state, params)
    np.testing.assert_array_equal(updates["w"][0], 0.0)
    np.testing.assert_allclose(new.nu["w"][0], 0.25)  # v_1 = g**2
    # run 1: m = 0.1 * 0.5 / max(sqrt(1), eps) = 0.05, the update -lr m = -0.005
    np.testing.assert_allclose(updates["w"][1], -0.005, rtol=1e-6)
    np.testing.assert_allclose(new.nu["w"][1], 0.9999 + 0.0001 * 0.25, rtol=1e-6)


def test_grid_by_seed_broadcasts_along_first_and_last_axes():
    """Parameters stored (S, *shape, R): hyperparameters of shape (S, R), counts too."""
    lr = jnp.asarray([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    tx = ao.adabelief(lr, runs=(2, 3))
    params = {"w": jnp.zeros((2, 4, 3))}
    state = tx.init(params)
    assert state.count.shape == (2, 3)
    updates, _ = tx.update({"w": jnp.ones((2, 4, 3))}, state, params)
    # AdaBelief's first step is lr / beta1 per coordinate (test_fixes_math.py)
    np.testing.assert_allclose(updates["w"][1, 2], -lr[1] / 0.9, rtol=1e-5)
