"""The new rules' faces against the published libraries: optax's own Yogi, AdaBelief and
ADOPT step for step, and the AdaBound authors' package (values stored below); their
state names (amsgrad.slots), dtypes and keyword names. Step values by hand are in
test_fixes_math.py, grids of runs in test_fixes_grid.py."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import amsgrad
from amsgrad import optax as ao
from amsgrad.slots import FIELDS, SLOTS, slot_fields

SHAPES = {"b": (3,), "w": (4, 3)}
OPTAX_VERSION = tuple(int(p) for p in optax.__version__.split(".")[:3])
NEW_RULES = ("adamnc", "adabound", "amsbound", "yogi", "adabelief", "adopt")


def shrinking_grads(n_steps, seed=0):
    """Large gradients for 5 steps, then small ones: v shrinks (Yogi's sign flips)."""
    rng = np.random.default_rng(seed)
    return [{k: np.float32(10.0 if s < 5 else 0.1) * rng.standard_normal(shape, np.float32)
             for k, shape in SHAPES.items()} for s in range(n_steps)]


def run(tx, grads):
    """Apply ``tx`` along ``grads`` from parameters 1; the updates and states of each step."""
    params = {k: jnp.ones(shape, jnp.float32) for k, shape in SHAPES.items()}
    state, update, out = tx.init(params), jax.jit(tx.update), []
    for g in grads:
        updates, state = update(g, state, params)
        params = optax.apply_updates(params, updates)
        out.append((updates, state))
    return out


def assert_trees_close(a, b, rtol):
    """Leaf by leaf, relative to each entry and to the leaf's largest entry (moments that
    cancel to near zero keep only the absolute accuracy of their terms)."""
    def close(x, y):
        x, y = np.asarray(x), np.asarray(y)
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * np.abs(y).max())
    jax.tree_util.tree_map(close, a, b)


# optax took AdaBelief's residual against the previous mean before 0.2.4 (PR #1130)
OPTAX_ADABELIEF = "paper" if OPTAX_VERSION >= (0, 2, 4) else "lagged"


def optax_rule(rule):
    """optax's own transformation for ``rule``, or a skip where this optax lacks it."""
    if rule == "adopt":
        if not hasattr(optax, "contrib") or not hasattr(optax.contrib, "adopt"):
            pytest.skip(f"optax {optax.__version__} has no optax.contrib.adopt (0.2.8 has it)")
        return optax.contrib.adopt
    return getattr(optax, rule)


def ours(rule, *args, **kw):
    """Our ``rule``, as this optax's in the form it has (AdaBelief's variant)."""
    if rule == "adabelief":
        kw = dict(kw, variant=OPTAX_ADABELIEF)
    return getattr(ao, rule)(*args, **kw)


# optax forms 1 - b in float64 where b is a Python number (Yogi, AdaBelief), we in
# float32 (docs/variants.md): betas exact in float32 agree to rounding, the defaults
# (b2 0.999: 1 - float32(b2) is 4.7e-5 off) to 1e-4.
EXACT = dict(b1=0.875, b2=1 - 2 ** -10)


@pytest.mark.parametrize("rule", ["yogi", "adabelief", "adopt"])
@pytest.mark.parametrize("betas, rtol", [(EXACT, 2e-6), ({}, 1e-4)], ids=["exact", "defaults"])
def test_ours_is_optax_step_for_step(rule, betas, rtol):
    grads = shrinking_grads(40)
    theirs = run(optax_rule(rule)(learning_rate=0.01, **betas), grads)
    mine = run(ours(rule, learning_rate=0.01, **betas), grads)
    for step, ((u_ours, s_ours), (u_theirs, s_theirs)) in enumerate(zip(mine, theirs), 1):
        assert_trees_close(u_ours, u_theirs, rtol)
        assert_trees_close(s_ours.mu, s_theirs[0].mu, rtol)
        assert_trees_close(s_ours.nu, s_theirs[0].nu, rtol)
        assert int(s_ours.count) == int(s_theirs[0].count) == step
    if rule == "adopt":  # its first step only sets nu
        jax.tree_util.tree_map(lambda u: np.testing.assert_array_equal(u, 0.0), mine[0][0])


@pytest.mark.parametrize("rule, options, theirs", [
    ("yogi", dict(epsilon_root=1e-4, initial_accumulator_value=0.5),
     lambda: optax.chain(optax.scale_by_yogi(eps=1e-3, eps_root=1e-4,
                                             initial_accumulator_value=0.5),
                         optax.scale_by_learning_rate(0.01))),
    ("adabelief", dict(epsilon=1e-3, epsilon_root=1e-4),
     lambda: optax.adabelief(0.01, eps=1e-3, eps_root=1e-4)),
    ("adopt", dict(use_clipping=False, epsilon=1e-3),
     lambda: optax_rule("adopt")(0.01, eps=1e-3, use_clipping=False)),
], ids=["yogi-eps_root-initial", "adabelief-eps", "adopt-noclip"])
def test_optax_options_mean_the_same(rule, options, theirs):
    grads = shrinking_grads(25)
    for (u_ours, _), (u_theirs, _) in zip(run(ours(rule, 0.01, **options), grads),
                                          run(theirs(), grads)):
        assert_trees_close(u_ours, u_theirs, 1e-4)


def test_adabelief_variant_other_than_this_optax_differs():
    grads = shrinking_grads(10)
    other = {"paper": "lagged", "lagged": "paper"}[OPTAX_ADABELIEF]
    theirs = run(optax.adabelief(0.01), grads)[-1][0]["w"]
    ours = run(ao.adabelief(0.01, variant=other), grads)[-1][0]["w"]
    assert np.abs(np.asarray(ours) - np.asarray(theirs)).max() > 1e-4


# adabound.AdaBound's parameters minus their start (1) after steps 1 (AdaBound only), 5,
# 16, 30, lr 0.01 halved from step 16 on (a schedule: the bounds follow it), betas
# (0.9, 0.99), final_lr 0.1, gamma 0.1 (bounds close enough to act); computed once with
# the authors' package adabound 0.0.5 on torch 2.13.0 (CPU) and numpy 2.4, by:
#
#   import numpy as np, torch, adabound
#   SHAPES = {"b": (3,), "w": (4, 3)}
#   rng = np.random.default_rng(7)  # adabound_grads()
#   scale = {k: (10.0 ** rng.uniform(-3, 1, shape)).astype(np.float32)
#            for k, shape in SHAPES.items()}
#   grads = [{k: np.float32(10.0 if s < 5 else 0.1) * scale[k]
#                * rng.standard_normal(shape, np.float32)
#             for k, shape in SHAPES.items()} for s in range(30)]
#   for amsbound in (False, True):
#       p = {k: torch.ones(shape, requires_grad=True) for k, shape in SHAPES.items()}
#       opt = adabound.AdaBound(list(p.values()), lr=0.01, betas=(0.9, 0.99), final_lr=0.1,
#                               gamma=0.1, amsbound=amsbound)
#       for step, g in enumerate(grads, start=1):
#           if step == 16:  # a schedule halves the rate: the bounds follow
#               opt.param_groups[0]["lr"] = 0.005
#           for k in p:
#               p[k].grad = torch.tensor(g[k])
#           opt.step()
#           if step in ((5, 16, 30) if amsbound else (1, 5, 16, 30)):
#               print(amsbound, step, {k: [float(f"{x:.9g}") for x in
#                                          (v.detach().numpy() - 1).ravel()]
#                                      for k, v in p.items()})
ADABOUND_VALUES = {
    "adabound": {
        1: {
            "b": [-0.00999999046, -0.034537375, 0.00999999046],
            "w": [-0.00734370947, 0.00999999046, 0.0216219425, 0.000556945801, -0.00999999046,
                  0.00999999046, 0.00999999046, 0.00999999046, 0.00953042507, -0.00101840496,
                  -0.00477588177, -0.00999999046],
        },
        5: {
            "b": [-0.0377982259, -0.304396629, -0.31818825],
            "w": [0.00978577137, 0.0248051882, 0.0779095888, 0.00389027596, -0.404058337,
                  -0.0359663963, 0.00807976723, 0.0357527733, -0.00321787596, 0.000313997269,
                  0.0173853636, -0.0438153744],
        },
        16: {
            "b": [-0.157433629, -1.91798401, -1.72121167],
            "w": [0.0243641138, 0.012174964, -1.30205119, 0.00738370419, -1.94399285,
                  -0.0545541048, 0.02075243, 0.0582631826, -0.0152500868, 0.000502943993,
                  0.0374459028, -0.125477254],
        },
        30: {
            "b": [-0.185645521, -2.34024215, -2.08153749],
            "w": [0.0270653963, 0.00973594189, -1.65457654, 0.00782835484, -2.33112168,
                  -0.0610768795, 0.0234533548, 0.0607836246, -0.0170263052, 0.000771164894,
                  0.0418339968, -0.144707799],
        },
    },
    "amsbound": {  # its step 1 is AdaBound's
        5: {
            "b": [-0.0377850533, -0.304396629, -0.31818825],
            "w": [0.00978565216, 0.024798274, 0.0779095888, 0.00389027596, -0.404058337,
                  -0.0359663963, 0.00807976723, 0.0356205702, -0.00321787596, 0.000313997269,
                  0.017377615, -0.0438153744],
        },
        16: {
            "b": [-0.157420456, -1.91798401, -1.72121167],
            "w": [0.0240164995, 0.0124598742, -1.30205119, 0.00738370419, -1.94399285,
                  -0.0545541048, 0.0207005739, 0.0580377579, -0.0150697827, 0.000502943993,
                  0.0373675823, -0.125477254],
        },
        30: {
            "b": [-0.185632348, -2.34024215, -2.08153749],
            "w": [0.0266720057, 0.0102223158, -1.65457654, 0.00782835484, -2.33112168,
                  -0.0610768795, 0.0234014988, 0.0605581999, -0.0168460011, 0.000771164894,
                  0.0417556763, -0.144707799],
        },
    },
}


def adabound_grads():
    rng = np.random.default_rng(7)
    scale = {k: (10.0 ** rng.uniform(-3, 1, shape)).astype(np.float32)
             for k, shape in SHAPES.items()}
    return [{k: np.float32(10.0 if s < 5 else 0.1) * scale[k]
             * rng.standard_normal(shape, np.float32) for k, shape in SHAPES.items()}
            for s in range(30)]


def check_adabound_values(rule, step, params):
    """float32 parameters near 1 hold about 6e-8; torch forms the step size in float64."""
    for k, expected in ADABOUND_VALUES[rule].get(step, {}).items():
        np.testing.assert_allclose((np.asarray(params[k]) - 1).ravel(), expected, rtol=1e-5,
                                   atol=1e-7, err_msg=f"{rule}, step {step}, {k}")


@pytest.mark.parametrize("rule", ["adabound", "amsbound"])
def test_optax_face_is_the_authors_adabound(rule):
    schedule = lambda count: jnp.where(count >= 15, 0.005, 0.01)
    tx = getattr(ao, rule)(schedule, beta2=0.99, final_lr=0.1, gamma=0.1)  # base: schedule(0)
    params = {k: np.ones(shape, np.float32) for k, shape in SHAPES.items()}
    for step, (updates, _) in enumerate(run(tx, adabound_grads()), start=1):
        params = {k: params[k] + np.asarray(updates[k]) for k in params}
        check_adabound_values(rule, step, params)
    # the stored values tell the rules apart, and show both bounds at work at step 1:
    # an Adam first step is lr = 0.01 at most; the lower bound lifts one above it, the
    # upper bound holds one below it
    first = np.abs(ADABOUND_VALUES["adabound"][1]["b"] + ADABOUND_VALUES["adabound"][1]["w"])
    assert first.max() > 0.03 and np.sort(first)[0] < 0.001
    assert np.abs(np.subtract(ADABOUND_VALUES["adabound"][30]["w"],
                              ADABOUND_VALUES["amsbound"][30]["w"])).max() > 1e-4


@pytest.mark.parametrize("rule", ["adabound", "amsbound"])
def test_lasagne_face_is_the_authors_adabound(lasagne_face, rule):
    """A shared learning rate set by a schedule; its value when the updates are built is
    the base rate, as the authors' package reads ``lr`` at construction."""
    with lasagne_face.float32():
        params = [lasagne_face.shared(np.ones(shape), name=k) for k, shape in SHAPES.items()]
        inputs = [lasagne_face.tensor(len(shape)) for shape in SHAPES.values()]
        lr = lasagne_face.shared(0.01, name="lr")
        updates = getattr(amsgrad, rule)(inputs, params, lr, beta2=0.99, final_lr=0.1,
                                         gamma=0.1)
        step_fn = lasagne_face.lib.function(inputs, [], updates=updates)
    for step, g in enumerate(adabound_grads(), start=1):
        if step == 16:
            lr.set_value(np.float32(0.005))
        step_fn(*g.values())
        check_adabound_values(rule, step, {p.name: p.get_value() for p in params})


@pytest.mark.parametrize("rule", NEW_RULES)
def test_state_is_named_as_the_slot_table_says(lasagne_face, optax_face, rule):
    """The Lasagne face's ``<param>.<slot>`` and the optax state's fields are
    ``amsgrad.SLOTS[rule]`` (through ``amsgrad.FIELDS``), so checkpoints match."""
    with lasagne_face.float32():
        params = [lasagne_face.shared(np.ones(3), name="W"), lasagne_face.shared(0.5, name="s")]
        grads = [lasagne_face.tensor(p.ndim) for p in params]
        updates = getattr(amsgrad, rule)(grads, params)
    names = sorted(v.name for v in updates)
    assert names == sorted(["W", "s", "t"] + [f"{p}.{s}" for p in "Ws" for s in SLOTS[rule]])
    state = getattr(ao, rule)().init({"W": jnp.ones(3), "s": jnp.float32(0.5)})
    held = {f for f in state._fields if getattr(state, f) is not None} - {"count"}
    assert held == {FIELDS[s] for s in SLOTS[rule]}
    assert amsgrad.SLOTS is SLOTS and set(NEW_RULES) <= set(SLOTS)
    assert slot_fields(rule) == {FIELDS[s]: s for s in SLOTS[rule]}


def test_slot_fields_add_the_maximum_where_it_is_optional():
    with_max = {"mu": "m", "nu": "v", "nu_max": "v_hat"}
    for rule in ("adabound", "adam_family", "adamw"):
        assert slot_fields(rule) == {"mu": "m", "nu": "v"}
        assert slot_fields(rule, keep_max=True) == with_max
    assert slot_fields("amsbound") == slot_fields("amsgrad") == with_max
    assert slot_fields("yogi", keep_max=True) == {"mu": "m", "nu": "v"}
    assert slot_fields("momentum") == {"velocity": "velocity"} and slot_fields("sgd") == {}


@pytest.mark.parametrize("rule", NEW_RULES)
def test_float32_stays_float32(lasagne_face, rule):
    with lasagne_face.float32():
        params = [lasagne_face.shared(np.ones((3, 2)), name="W"),
                  lasagne_face.shared(0.5, name="s")]
        grads = [lasagne_face.tensor(p.ndim) for p in params]
        lr = lasagne_face.T.scalar("lr")
        kw = dict(initial_learning_rate=0.01) if rule in ("adabound", "amsbound") else {}
        updates = getattr(amsgrad, rule)(grads, params, lr, **kw)
        for variable, expression in updates.items():
            assert variable.dtype == expression.dtype == "float32", variable.name
        seen, todo = set(), list(updates.values())
        while todo:  # nothing in the graph is float64, constants included
            var = todo.pop()
            if id(var) not in seen:
                seen.add(id(var))
                assert getattr(var.type, "dtype", None) != "float64", var
                todo.extend(var.owner.inputs if var.owner is not None else ())


def test_adabound_needs_a_base_rate_for_a_symbolic_learning_rate(lasagne_face):
    with lasagne_face.float32():
        W = lasagne_face.shared(np.ones(3), name="W")
        lr = lasagne_face.T.scalar("lr")
        with pytest.raises(ValueError, match="initial_learning_rate"):
            amsgrad.adabound([lasagne_face.tensor(1)], [W], lr)


def test_optax_names_are_accepted():
    grads = shrinking_grads(5)
    pairs = [(ao.yogi(0.01, b1=0.8, b2=0.99, eps=1e-2, eps_root=1e-4),
              ao.yogi(0.01, beta1=0.8, beta2=0.99, epsilon=1e-2, epsilon_root=1e-4)),
             (ao.adabelief(0.01, b2=0.99, eps_root=1e-8),
              ao.adabelief(0.01, beta2=0.99, epsilon_root=1e-8)),
             (ao.adopt(0.01, b2=0.99, eps=1e-3), ao.adopt(0.01, beta2=0.99, epsilon=1e-3)),
             (ao.adabound(0.01, b1=0.8, eps=1e-6), ao.adabound(0.01, beta1=0.8, epsilon=1e-6))]
    for a, b in pairs:
        for (u_a, _), (u_b, _) in zip(run(a, grads), run(b, grads)):
            jax.tree_util.tree_map(np.testing.assert_array_equal, u_a, u_b)
    with pytest.raises(TypeError, match=r"adabelief\(\) got 'epsilon' and its optax name"):
        ao.adabelief(epsilon=1e-8, eps=1e-8)
    with pytest.raises(TypeError, match="unexpected keyword argument 'eps_root'"):
        ao.adopt(eps_root=0.0)  # ADOPT has no eps_root, in optax either
