"""The synthetic problem of the AMSGrad paper: the compiled loop against an independent
plain-Python loop, the paper's outcome, the draws, and the files of a run."""
import csv
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from experiments import synthetic

REPO = Path(__file__).resolve().parents[1]
PAPER = dict(learning_rate=0.001, beta1=0.9, beta2=0.99, epsilon=1e-8, bias_correction=False)


def reference(rule, steps, draws=None, learning_rate=0.001, beta1=0.9, beta2=0.99,
              epsilon=1e-8, bias_correction=False, lr_decay="constant"):
    """x after each step, from the spec's formulas in Python floats (float64).
    ``draws`` (bool per step) makes it the stochastic problem, else the online one.
    ``rule``: adam or amsgrad, ``_pytorch`` or ``_optax`` for those libraries' forms
    (docs/variants.md)."""
    rule, _, variant = rule.partition("_")
    x = m = v = v_hat = 0.0
    out = []
    for t in range(1, steps + 1):
        large = draws[t - 1] if draws is not None else t % 101 == 1
        g = 1010.0 if large else -10.0
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        c1, c2 = (1 - beta1 ** t, 1 - beta2 ** t) if bias_correction else (1.0, 1.0)
        lr = learning_rate / math.sqrt(t) if lr_decay == "sqrt" else learning_rate
        if variant == "optax":  # the max of the corrected v
            v_hat = max(v_hat, v / c2) if rule == "amsgrad" else v / c2
            step = lr * (m / c1) / (math.sqrt(v_hat) + epsilon)
        else:
            v_hat = max(v_hat, v) if rule == "amsgrad" else v
            if variant == "pytorch":  # epsilon after the correction
                step = lr / c1 * m / (math.sqrt(v_hat) / math.sqrt(c2) + epsilon)
            else:
                step = lr * math.sqrt(c2) / c1 * m / (math.sqrt(v_hat) + epsilon)
        x = min(1.0, max(-1.0, x - step))
        out.append(x)
    return np.array(out)


def lane(traj, problem, rule):
    return traj.x[:, traj.lanes.index((problem, rule))]


def test_first_two_steps_by_hand():
    traj = synthetic.simulate(problems=["online"], steps=2, record_every=1, dtype="float64")
    # step 1: g = 1010, m = 101, v = v_hat = 10201 = 101**2, so x = -0.001 * 101/(101+eps)
    # step 2: g = -10, m = 89.9, v = 10099.99; AMSGrad keeps v_hat = 10201
    first = -1e-3 * 101 / (101 + 1e-8)
    assert lane(traj, "online", "adam")[1] == pytest.approx(first, rel=1e-14)
    assert lane(traj, "online", "adam")[2] == pytest.approx(
        first - 1e-3 * 89.9 / (math.sqrt(10099.99) + 1e-8), rel=1e-13)
    assert lane(traj, "online", "amsgrad")[2] == pytest.approx(
        -1e-3 * 190.9 / (101 + 1e-8), rel=1e-13)


@pytest.mark.parametrize("options", [
    {}, {"bias_correction": True}, {"lr_decay": "sqrt"},
    {"learning_rate": 0.05, "beta2": 0.999, "bias_correction": True}])
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-13), ("float32", 1e-6)])
def test_compiled_loop_equals_python_loop_online(options, dtype, tol):
    steps = 250  # past the second and third large gradients (t = 102, 203)
    traj = synthetic.simulate(problems=["online"], steps=steps, record_every=1, dtype=dtype,
                              **options)
    assert traj.x.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(traj.steps, np.arange(steps + 1))
    for rule in ("adam", "amsgrad"):
        expected = np.concatenate([[0.0], reference(rule, steps, **options)])
        np.testing.assert_allclose(lane(traj, "online", rule), expected, rtol=tol, atol=tol)


def test_compiled_loop_equals_python_loop_stochastic():
    steps, seed = 400, 3
    draws = synthetic.stochastic_draws(seed, steps)
    assert 2 <= draws.sum() <= 10
    traj = synthetic.simulate(steps=steps, seed=seed, record_every=1, dtype="float64")
    for problem in ("online", "stochastic"):
        for rule in ("adam", "amsgrad"):
            expected = reference(rule, steps, draws if problem == "stochastic" else None)
            np.testing.assert_allclose(lane(traj, problem, rule)[1:], expected, rtol=1e-13,
                                       atol=1e-13)


def test_recording_does_not_change_the_trajectory():
    full = synthetic.simulate(steps=1000, seed=1, record_every=1)
    for every in (7, 100, 1000, 5000):
        part = synthetic.simulate(steps=1000, seed=1, record_every=every)
        np.testing.assert_array_equal(part.steps, np.unique(np.r_[0:1001:every, 1000]))
        # equal up to float32 rounding: jax 0.4 fuses differently per unroll length
        np.testing.assert_allclose(part.x, full.x[part.steps], rtol=1e-6, atol=1e-7)


def test_x_is_clipped_to_the_interval():
    # lr 0.1 pushes both rules onto the bounds within a few hundred steps
    traj = synthetic.simulate(steps=20_000, record_every=1, learning_rate=0.1)
    assert traj.x.min() == -1.0 and traj.x.max() == 1.0
    assert (lane(traj, "online", "adam") == 1.0).any()
    assert (lane(traj, "online", "amsgrad") == -1.0).any()


def test_stochastic_draws_follow_the_documented_generator():
    seed, steps = 7, 200_000
    draws = synthetic.stochastic_draws(seed, steps)
    positions = np.cumsum(np.random.default_rng(seed).geometric(0.01, 5000))
    expected = np.zeros(steps, bool)
    expected[positions[positions <= steps] - 1] = True
    np.testing.assert_array_equal(draws, expected)
    np.testing.assert_array_equal(synthetic.stochastic_draws(seed, 1234), draws[:1234])
    assert abs(synthetic.stochastic_draws(0, 1_000_000).mean() - 0.01) < 5e-4
    assert not np.array_equal(synthetic.stochastic_draws(8, steps), draws)


def test_online_drift_direction_short_run():
    traj = synthetic.simulate(problems=["online"], steps=200_000, record_every=10_000,
                              **PAPER)
    adam, ams = lane(traj, "online", "adam"), lane(traj, "online", "amsgrad")
    assert adam[-1] > 0.9
    assert np.all(np.diff(ams) < 0) and ams[-1] < -0.1


@pytest.mark.parametrize("seed", range(8))
def test_stochastic_drift_direction_short_run(seed):
    # The stochastic gradient's mean (0.2) is small against its spread (about 100): the
    # sign of AMSGrad's x is robust after about 3M steps (checked for seeds 0-39).
    traj = synthetic.simulate(problems=["stochastic"], steps=3_000_000,
                              record_every=3_000_000, seed=seed, **PAPER)
    assert lane(traj, "stochastic", "adam")[-1] > 0.5
    assert lane(traj, "stochastic", "amsgrad")[-1] < 0.0


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_paper_outcome_full_run(seed):
    traj = synthetic.simulate(steps=9_000_000, seed=seed, **PAPER)
    assert traj.steps[-1] == 9_000_000 and len(traj.steps) == 9001
    assert lane(traj, "stochastic", "adam")[-1] > 0.9
    assert lane(traj, "stochastic", "amsgrad")[-1] < -0.5
    assert lane(traj, "online", "adam")[-1] > 0.99
    assert lane(traj, "online", "amsgrad")[-1] < -0.99


def test_run_synthetic_writes_csv_and_status(tmp_path):
    config = {"name": "synthetic", "kind": "synthetic", "steps": 2500, "record_every": 1000,
              "seed": 2, **PAPER}
    status = synthetic.run_synthetic(config, tmp_path, quiet=True)
    out = tmp_path / "synthetic"
    with open(out / "trajectories.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == ["step", "problem", "rule", "x"]
    assert len(rows) == 4 * 4  # steps 0, 1000, 2000, 2500 for four lanes
    assert {(r["problem"], r["rule"]) for r in rows} == set(synthetic.lanes_of())
    assert sorted({int(r["step"]) for r in rows}) == [0, 1000, 2000, 2500]
    last = {f"{r['problem']}/{r['rule']}": float(r["x"]) for r in rows if r["step"] == "2500"}
    assert last == pytest.approx(status["final_x"])
    assert last["online/adam"] == pytest.approx(reference("adam", 2500)[-1], rel=1e-5)
    assert status["state"] == "finished"
    assert yaml.safe_load((out / "config.yaml").read_text())["steps"] == 2500
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("key,value,message", [  # the vocabulary of every config's keys
    ("lr_decay", "linear", "key 'lr_decay': unknown lr_decay 'linear'; choose from constant, "
                           "sqrt"),
    ("problems", ["offline"], "key 'problems': unknown problem 'offline' (did you mean "
                              "'online'?)"),
    ("rules", [], "key 'rules': expected a non-empty list, got a list"),
    ("steps", 0, "key 'steps': expected an integer >= 1, got 0"),
    ("beta2", 1.0, "key 'beta2': expected a number in [0, 1), got 1.0"),
    ("learning_rate", "fast", "key 'learning_rate': expected a number, got 'fast'"),
    ("seed", -1, "key 'seed': expected an integer >= 0, got -1"),
    ("name", "../elsewhere", "key 'name': expected a folder name"),
    ("bias_correction", "no", "key 'bias_correction': expected true or false, got 'no'"),
])
def test_bad_config_is_one_clear_error_before_any_file(tmp_path, key, value, message):
    with pytest.raises(ValueError) as info:
        synthetic.run_synthetic({"name": "synthetic", key: value}, tmp_path, quiet=True)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert not list(tmp_path.iterdir())


def test_benchmark_dispatcher_lists_modes_and_rejects_unknown_ones():
    script = [sys.executable, str(REPO / "scripts" / "benchmark.py")]
    listed = subprocess.run(script + ["--help"], capture_output=True, text=True)
    assert listed.returncode == 0 and "  synthetic " in listed.stdout
    modes = sorted(line.split()[0] for line in listed.stdout.split("modes:")[1].splitlines()
                   if line.strip())
    bad = subprocess.run(script + ["nosuchmode"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [
        f"benchmark.py: unknown mode 'nosuchmode' (available: {', '.join(modes)})"]


VARIANT_RULES = ["adam", "amsgrad", "adam_pytorch", "amsgrad_pytorch", "adam_optax",
                 "amsgrad_optax"]


def test_the_rules_name_the_registrys_rules_and_their_forms():
    from experiments.config.synthetic_keys import lane_rule
    assert lane_rule("amsgrad") == ("amsgrad", {})
    assert lane_rule("adam_optax") == ("adam", {"variant": "optax"})
    assert lane_rule("amsgrad_pytorch") == ("amsgrad", {"variant": "pytorch"})
    assert lane_rule("adabound_paper") == ("adabound", {"variant": "paper"})
    assert lane_rule("yogi") == ("yogi", {})
    with pytest.raises(ValueError, match=r"key 'rules': unknown variant 'keras'"):
        synthetic.run_synthetic({"rules": ["amsgrad_keras"]}, "unused", quiet=True)
    with pytest.raises(ValueError, match=r"key 'rules': unknown rule 'amsgard' \(did you "
                                         r"mean 'amsgrad'\?\); choose from adam"):
        synthetic.run_synthetic({"rules": ["amsgard"]}, "unused", quiet=True)


def test_optax_amsgrad_first_two_steps_by_hand():
    """With bias correction, optax keeps the max of v / (1 - beta2**t): at step 1 that is
    g**2 = 1010**2, far above any later corrected v; ours keeps the raw v_1 = 101**2."""
    traj = synthetic.simulate(problems=["online"], rules=["amsgrad", "amsgrad_optax"],
                              steps=2, record_every=1, dtype="float64", bias_correction=True)
    # step 1: m = 101, v = 10201, c1 = 0.1, c2 = 0.01; both step by lr (to eps)
    ours, optax_ = lane(traj, "online", "amsgrad"), lane(traj, "online", "amsgrad_optax")
    assert ours[1] == pytest.approx(-1e-3 * 101 / (101 + 1e-8), rel=1e-14)
    assert optax_[1] == pytest.approx(-1e-3 * 1010 / (1010 + 1e-8), rel=1e-14)
    # step 2: g = -10, m = 89.9, c1 = 0.19, c2 = 0.0199; v_2 = 10099.99 < v_1
    assert ours[2] == pytest.approx(
        ours[1] - 1e-3 * math.sqrt(0.0199) / 0.19 * 89.9 / (101 + 1e-8), rel=1e-13)
    assert optax_[2] == pytest.approx(optax_[1] - 1e-3 * (89.9 / 0.19) / (1010 + 1e-8),
                                      rel=1e-13)


@pytest.mark.parametrize("bias_correction", [True, False])
def test_variant_lanes_equal_their_formulas(bias_correction):
    """Every rule of the library, side by side in one loop, against the Python loop
    (online and stochastic, float64, past the third large gradient)."""
    steps, seed = 400, 3
    draws = synthetic.stochastic_draws(seed, steps)
    traj = synthetic.simulate(rules=VARIANT_RULES, steps=steps, seed=seed, record_every=1,
                              dtype="float64", bias_correction=bias_correction)
    for problem in ("online", "stochastic"):
        for rule in VARIANT_RULES:
            expected = reference(rule, steps, draws if problem == "stochastic" else None,
                                 bias_correction=bias_correction)
            np.testing.assert_allclose(lane(traj, problem, rule)[1:], expected, rtol=1e-13,
                                       atol=1e-13, err_msg=f"{problem}/{rule}")


def test_without_bias_correction_the_variants_are_one_rule():
    traj = synthetic.simulate(rules=VARIANT_RULES, steps=20_000, record_every=100, seed=1,
                              bias_correction=False)
    for problem in ("online", "stochastic"):
        for rule in ("adam", "amsgrad"):
            for variant in ("pytorch", "optax"):
                # one formula; each form is its own compiled program, whose float32
                # rounding may differ in the last bit
                np.testing.assert_allclose(lane(traj, problem, f"{rule}_{variant}"),
                                           lane(traj, problem, rule), rtol=0, atol=1e-7)
    corrected = synthetic.simulate(rules=VARIANT_RULES, steps=20_000, record_every=100,
                                   seed=1, bias_correction=True)
    gap = np.abs(lane(corrected, "online", "amsgrad_optax")
                 - lane(corrected, "online", "amsgrad")).max()
    assert gap > 1e-3  # with it, optax's AMSGrad is another rule


def test_a_loop_of_the_paper_rules_is_unchanged_by_the_variant_lanes():
    alone = synthetic.simulate(steps=3000, record_every=10, seed=2, bias_correction=True)
    mixed = synthetic.simulate(rules=VARIANT_RULES, steps=3000, record_every=10, seed=2,
                               bias_correction=True)
    for problem in ("online", "stochastic"):
        for rule in ("adam", "amsgrad"):
            np.testing.assert_allclose(lane(mixed, problem, rule), lane(alone, problem, rule),
                                       rtol=1e-6, atol=1e-7)


def _yogi_reference(steps, beta2, lr=0.001):
    """x of a Yogi lane in numpy float64 from amsgrad.fixes.yogi_step (the optax face's
    start: m and v at 1e-6), clipped after every step, online problem."""
    from amsgrad import fixes, rules
    ns = rules.namespace("numpy")
    x, m, v, out = 0.0, 1e-6, 1e-6, []
    for t in range(1, steps + 1):
        g = 1010.0 if t % 101 == 1 else -10.0
        step, m, v = fixes.yogi_step(ns, g, m, v, float(t), lr, 0.9, beta2, 1e-8,
                                     bias_correction=False)
        x = min(1.0, max(-1.0, x - step))
        out.append(x)
    return np.array(out)


def test_any_rule_of_the_registry_is_a_lane_and_beta2_a_sweep():
    traj = synthetic.simulate(problems=["online"], rules=["amsgrad", "yogi"],
                              beta2=[0.99, 0.999], steps=300, record_every=1, dtype="float64")
    assert traj.lanes == (("online", "amsgrad_b2=0.99"), ("online", "amsgrad_b2=0.999"),
                          ("online", "yogi_b2=0.99"), ("online", "yogi_b2=0.999"))
    for beta2 in (0.99, 0.999):
        np.testing.assert_allclose(lane(traj, "online", f"yogi_b2={beta2:g}")[1:],
                                   _yogi_reference(300, beta2), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(lane(traj, "online", f"amsgrad_b2={beta2:g}")[1:],
                                   reference("amsgrad", 300, beta2=beta2), rtol=1e-12,
                                   atol=1e-13)
    assert not np.allclose(lane(traj, "online", "yogi_b2=0.99"),
                           lane(traj, "online", "yogi_b2=0.999"))


def test_an_optax_rule_is_a_lane_and_steps_as_optax_steps_it():
    """radam is not registered: optax's rule of that name, found by the registry; its
    lane is optax.radam applied to the scalar x, clipped, step by step (float64)."""
    import jax
    import optax
    traj = synthetic.simulate(problems=["online"], rules=["radam"], steps=120, record_every=1,
                              dtype="float64")
    with synthetic.precision("float64"):
        tx = optax.radam(0.001, b1=0.9, b2=0.99, eps=1e-8)
        x = jax.numpy.zeros((), "float64")
        state, out = tx.init(x), []
        for t in range(1, 121):
            g = jax.numpy.asarray(1010.0 if t % 101 == 1 else -10.0, "float64")
            updates, state = tx.update(g, state, x)
            x = jax.numpy.clip(x + updates, -1, 1)
            out.append(float(x))
    np.testing.assert_allclose(lane(traj, "online", "radam")[1:], out, rtol=1e-12, atol=1e-14)
    assert out[0] < -0.5  # its first steps are momentum SGD's: not Adam's (x - 0.001)


def test_the_plan_line_counts_the_lanes_of_a_sweep(tmp_path):
    from experiments.config.loading import parse_config
    from experiments.grid.options import GridOptions
    import io
    config = parse_config({"name": "sweep", "kind": "synthetic", "rules": ["adam", "yogi"],
                           "beta2": [0.9, 0.99, 0.999], "steps": 10}, default_name="sweep")
    out = io.StringIO()
    synthetic.run(config, GridOptions(results_dir=tmp_path, dry_run=True, out=out))
    assert out.getvalue().startswith("sweep: 1 run (12 lanes x 10 steps) in ")
