"""The JAX engine runs the experiment the Theano reference engine runs.

Both engines get the same arrays and the same real batches (dropout off); they must
agree on the forward pass, on every training step (losses, batch-norm statistics,
gradient-driven state), on checkpoints, and on logreg's curves over two real epochs.
docs/parity.md explains every tolerance below; in short:

* Forward values (probabilities, losses, batch-norm statistics) are smooth functions
  of the arrays, so they agree to float32 rounding: measured <= 2e-6 relative.
* Gradients are not smooth: ReLU, max-pool and clip are decided by comparisons, and
  where two values are within rounding of each other (a pre-activation at +-1e-7, two
  pixels of a flat image region tied in a pooling window) the two engines can decide
  differently. On real CIFAR-10 batches that shifts a few percent of a layer's gradient
  in some steps, and Adam's per-element normalisation passes it on to the update. Conv
  nets are therefore compared step by step from identical states ("teacher forcing":
  the JAX engine loads the Theano engine's arrays before every step), with norm-wise
  tolerances on the updates. Training freely, two float32 runs of a ReLU net drift
  apart after a few steps whatever the engines (a one-ulp change of the initial
  weights does the same), so free-running trajectories are compared on logreg only,
  which has no such comparisons: there everything agrees to 1e-5.
"""
import os
from pathlib import Path

import numpy as np
import pytest

from experiments import models
from experiments.data import epoch_batches, load_dataset
from experiments.engines import get_engine
from experiments.optimizers import Optimizer
from experiments.config.setup_keys import SetupKeys
from experiments.training.inputs import TrainingInputs

pytestmark = pytest.mark.theano

REAL = Path(os.environ.get("AMSGRAD_REAL_DATA",
                           Path(__file__).resolve().parents[2] / "shared" / "data"))
needs_real = pytest.mark.skipif(not (REAL / "mnist" / "train-images-idx3-ubyte.gz").is_file(),
                                reason=f"real data not found in {REAL}")

SEED, STEPS, LR = 1, 20, 1e-3
# Small batches keep the CPU cost of the big nets affordable; batch norm still sees
# batch x height x width >= 32 values per channel in every layer.
BATCH = {"logreg": 64, "cifarnet": 32, "small_vgg": 16, "vgg": 8}
CONFIGS = {"amsgrad": Optimizer.of("amsgrad"),
           "adam": Optimizer.of("adam"),
           "adam-nobc": Optimizer.of("adam", bias_correction=False)}

FORWARD_ATOL = 1e-5  # probabilities; measured <= 1e-6
LOSS_RTOL = 1e-5     # a step's loss, from the same state; measured <= 8e-7
STATE_RTOL = 1e-4    # batch-norm statistics, relative to the array's largest value; <= 7e-6
MOMENT_TOL = 0.15    # |m, v, v_hat difference| / |their change in the step|; <= 0.075
PARAM_TOL = 0.25     # |parameter difference| / |the step's update|; measured <= 0.12
LOGREG_LOSS_ATOL = 2e-6   # logreg trains freely: measured <= 2.4e-7
LOGREG_ARRAY_RTOL = 1e-5  # relative to each array's largest value; measured <= 6e-7
CURVE_ATOL = 1e-4


def published(name):
    """The published runs' setup (configs/*.yaml) at the pooling gradient Theano offers."""
    return SetupKeys(subtract_mean=True, he_gain=1 if name == "vgg" else "relu",
                 val_average="batches", maxpool_tie_gradient="all", precision="highest")


def slow_if_big(name):
    return pytest.param(name, marks=pytest.mark.slow) if name in ("small_vgg", "vgg") else name


@pytest.fixture(scope="module")
def mnist():
    if not (REAL / "mnist" / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real data not found in {REAL}")
    return load_dataset("mnist", REAL, download=False)


@pytest.fixture(scope="module")
def cifar_images(cifar_root):
    """The first 640 real CIFAR-10 training images and labels, the training mean
    subtracted as in the published runs."""
    data = load_dataset("cifar10", cifar_root, download=False, subtract_mean=True)
    return data.x_train[:640].copy(), data.y_train[:640].copy()


@pytest.fixture
def batches(request):
    """``(x, y)`` of shape ``(STEPS, B, ...)`` for the model named by the test's param."""
    name = request.node.callspec.params["name"]
    n, b = STEPS * BATCH[name], BATCH[name]
    if name == "logreg":
        mnist = request.getfixturevalue("mnist")
        x, y = mnist.x_train, mnist.y_train
    else:
        x, y = request.getfixturevalue("cifar_images")
    return (x[:n].reshape((STEPS, b) + x.shape[1:]), y[:n].reshape(STEPS, b))


def engines(spec, hparams, dataset=None):
    """The Theano and the JAX engine of ``spec`` in its published setup, holding the
    same arrays."""
    setup = published(spec.name)
    th = get_engine("theano").load()(spec, dataset, hparams, SEED, dropout=False, setup=setup)
    jx = get_engine("jax").load()(spec, dataset, hparams, SEED, dropout=False, setup=setup)
    assert all(np.array_equal(v, jx.dump()[k]) for k, v in th.dump().items())
    jx.load(th.dump())
    return th, jx


def max_rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-30))


def norm_rel(a, b, scale):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(scale), 1e-30))


# -- forward ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", [slow_if_big(n) for n in models.model_names()])
def test_forward_agrees(name, batches):
    spec = models.get_model(name)
    th, jx = engines(spec, CONFIGS["amsgrad"])
    arrays = th.dump()
    rng = np.random.default_rng(0)  # running statistics away from (0, 1), so they matter
    for key in arrays:
        if key.startswith("state:"):
            shape = arrays[key].shape
            arrays[key] = (rng.uniform(0.5, 2.0, shape) if key.endswith("inv_std")
                           else rng.normal(0.0, 0.2, shape)).astype(np.float32)
    th.load(arrays)
    jx.load(arrays)
    x = batches[0][0]
    for deterministic in (True, False):
        p_th, p_jx = th.forward(x, deterministic), jx.forward(x, deterministic)
        assert p_th.shape == (len(x), 10)
        np.testing.assert_allclose(p_th.sum(axis=1), 1.0, rtol=1e-5)
        np.testing.assert_allclose(p_jx, p_th, rtol=0, atol=FORWARD_ATOL,
                                   err_msg=f"deterministic={deterministic}")


# -- training steps ---------------------------------------------------------------------

def forced_step_errors(th, jx, x_batches, y_batches, lr):
    """Step both engines through the batches, the JAX engine loading the Theano
    engine's arrays before each step; return the largest error of each kind, with
    the step and array where it occurred."""
    worst = {}

    def record(kind, value, where):
        if value > worst.get(kind, (-1.0,))[0]:
            worst[kind] = (value, where)

    for step, (x, y) in enumerate(zip(x_batches, y_batches)):
        before = th.dump()
        jx.load(before)
        loss_th = th.train_steps(x[None], y[None], lr)[0]
        loss_jx = jx.train_steps(x[None], y[None], lr)[0]
        after_th, after_jx = th.dump(), jx.dump()
        record("loss", abs(float(loss_th) - float(loss_jx)) / float(loss_th), step)
        assert sorted(after_th) == sorted(after_jx)
        assert int(after_th["opt:t"]) == int(after_jx["opt:t"]) == int(before["opt:t"]) + 1
        for key, value in after_th.items():
            where = (step, key)
            if key.startswith("state:"):
                record("state", max_rel(value, after_jx[key]), where)
            elif key.startswith("param:"):
                record("param", norm_rel(value, after_jx[key], value - before[key]), where)
            elif key != "opt:t":
                record("moment", norm_rel(value, after_jx[key], value - before[key]), where)
    return worst


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("name", [slow_if_big(n) for n in models.model_names()])
def test_training_steps_agree(name, config, batches):
    """20 steps from identical states: losses and batch-norm statistics to float32
    rounding, updates and moments norm-wise (see the module docstring)."""
    th, jx = engines(models.get_model(name), CONFIGS[config])
    worst = forced_step_errors(th, jx, *batches, LR)
    tolerances = {"loss": LOSS_RTOL, "state": STATE_RTOL, "moment": MOMENT_TOL,
                  "param": PARAM_TOL}
    failed = {k: v for k, v in worst.items() if v[0] > tolerances[k]}
    assert not failed, f"beyond tolerance {tolerances}: {failed}"
    assert set(worst) >= {"loss", "param", "moment"}


# -- logreg: free-running, exact to float32 ---------------------------------------------

@needs_real
@pytest.mark.parametrize("config, neighbour", [("amsgrad", "adam"), ("adam", "adam-nobc"),
                                               ("adam-nobc", "adam")])
def test_logreg_trains_identically(config, neighbour, mnist):
    """Logreg has no ReLU or pooling, so 20 free-running steps agree to float32
    rounding, tightly enough that the neighbouring rule (AMSGrad vs Adam, bias
    correction on vs off) would fail the comparison."""
    spec = models.get_model("logreg")
    n = STEPS * 128
    x = mnist.x_train[:n].reshape((STEPS, 128) + spec.input_shape)
    y = mnist.y_train[:n].reshape(STEPS, 128)
    th, jx = engines(spec, CONFIGS[config])
    losses_th, losses_jx = th.train_steps(x, y, LR), jx.train_steps(x, y, LR)
    np.testing.assert_allclose(losses_jx, losses_th, rtol=0, atol=LOGREG_LOSS_ATOL)
    after_th, after_jx = th.dump(), jx.dump()
    assert sorted(after_th) == sorted(after_jx) and int(after_jx["opt:t"]) == STEPS
    for key in after_th:
        assert max_rel(after_th[key], after_jx[key]) <= LOGREG_ARRAY_RTOL, key

    other = get_engine("jax").load()(spec, None, CONFIGS[neighbour], SEED, dropout=False)
    other.train_steps(x, y, LR)
    gap = max_rel(after_th["param:out.W"], other.dump()["param:out.W"])
    assert gap > 10 * LOGREG_ARRAY_RTOL, f"{config} vs {neighbour}: {gap}"


#: Every other rule of the library (and the Adam family's variants), with its learning
#: rate and the rule next to it that the comparison must tell apart. Epsilon 1e-3 makes
#: the variants' placement of epsilon matter (with 1e-8 they agree to ~1e-6).
RULES = {"adamw": (Optimizer.of("adamw", weight_decay=0.5), 1e-3, "adam"),
         "sgd": (Optimizer.of("sgd"), 0.1, "momentum"),
         "momentum": (Optimizer.of("momentum", momentum=0.9), 0.1, "nesterov_momentum"),
         "nesterov_momentum": (Optimizer.of("nesterov_momentum", momentum=0.9), 0.1,
                               "momentum"),
         "amsgrad-pytorch": (Optimizer.of("amsgrad", epsilon=1e-3, variant="pytorch"),
                             1e-3, "amsgrad-lasagne"),
         "amsgrad-optax": (Optimizer.of("amsgrad", epsilon=1e-3, variant="optax"), 1e-3,
                           "amsgrad-pytorch"),
         "amsgrad-lasagne": (Optimizer.of("amsgrad", epsilon=1e-3), 1e-3, "amsgrad-optax"),
         "adamw-amsgrad": (Optimizer.of("adamw", weight_decay=0.5, amsgrad=True), 1e-3,
                           "adamw"),
         "adam": (Optimizer.of("adam"), 1e-3, "adamw"),
         # the later fixes of Adam (amsgrad.fixes), each told apart from Adam or its twin
         "adamnc": (Optimizer.of("adamnc", beta1_decay=0.99), 1e-3, "adam"),
         "adabound": (Optimizer.of("adabound", final_lr=0.01), 1e-3, "amsbound"),
         "amsbound": (Optimizer.of("amsbound", final_lr=0.01), 1e-3, "adabound-paper"),
         "adabound-paper": (Optimizer.of("adabound", final_lr=0.01, variant="paper"), 1e-3,
                            "adabound"),
         "yogi": (Optimizer.of("yogi"), 1e-2, "adam"),
         "adabelief": (Optimizer.of("adabelief"), 1e-3, "adabelief-lagged"),
         "adabelief-lagged": (Optimizer.of("adabelief", variant="lagged"), 1e-3, "adam"),
         "adopt": (Optimizer.of("adopt"), 1e-3, "adam")}


@needs_real
@pytest.mark.parametrize("rule", [r for r in RULES if r != "adam"])
def test_every_rule_trains_identically_in_both_engines(rule, mnist):
    """Each rule the grids may name, 20 free-running logreg steps in the Theano and the
    JAX engine: equal to float32 rounding, and apart from the neighbouring rule."""
    spec, (hparams, lr, neighbour) = models.get_model("logreg"), RULES[rule]
    n = STEPS * 128
    x = mnist.x_train[:n].reshape((STEPS, 128) + spec.input_shape)
    y = mnist.y_train[:n].reshape(STEPS, 128)
    th, jx = engines(spec, hparams)
    np.testing.assert_allclose(jx.train_steps(x, y, lr), th.train_steps(x, y, lr), rtol=0,
                               atol=LOGREG_LOSS_ATOL)
    after_th, after_jx = th.dump(), jx.dump()
    assert sorted(after_th) == sorted(after_jx)
    for key in after_th:
        assert max_rel(after_th[key], after_jx[key]) <= LOGREG_ARRAY_RTOL, key
    other_h, other_lr, _ = RULES[neighbour]
    other = get_engine("jax").load()(spec, None, other_h, SEED, dropout=False)
    other.train_steps(x, y, other_lr)
    gap = max_rel(after_th["param:out.W"], other.dump()["param:out.W"])
    assert gap > 10 * LOGREG_ARRAY_RTOL, f"{rule} vs {neighbour}: {gap}"


@needs_real
def test_logreg_curves_agree_over_two_real_epochs(mnist):
    """The trainer's view: two epochs of the real MNIST plan (same seed, same batch
    order), per-epoch training and validation curves."""
    spec = models.get_model("logreg")
    th, jx = engines(spec, CONFIGS["amsgrad"], dataset=mnist)
    curves = {"theano": [], "jax": []}
    for epoch in range(2):
        indices, flips = epoch_batches(SEED, epoch, len(mnist.y_train), 128, flip=False)
        lr = LR * (1 - epoch / 2)
        for engine in (th, jx):
            loss, acc = engine.train_epoch(epoch, lr, indices, flips)
            curves[engine.name].append((loss, acc) + engine.evaluate())
    rows_th, rows_jx = np.array(curves["theano"]), np.array(curves["jax"])
    np.testing.assert_allclose(rows_jx, rows_th, rtol=0, atol=CURVE_ATOL)
    assert rows_th[1, 3] > 0.9 and rows_th[1, 0] < rows_th[0, 0]  # it did learn


# -- conventions that decide gradients --------------------------------------------------

def _tie_spec():
    """One 1x1 filter, then a 2x2 max-pool over a constant image: a four-way tie."""
    return models.ModelSpec("ties", "cifar10", (1, 2, 2), (
        models.Conv2DLayer("conv", 1, 1, "valid", W="he", b=False, nonlinearity="linear"),
        models.MaxPool2DLayer("pool"),
        models.DenseLayer("out", 2, nonlinearity="softmax")))


def test_max_pool_ties_pass_the_gradient_to_every_maximum():
    """Theano's max-pool gradient goes to every input equal to the window's maximum
    (Lasagne's behaviour, and frequent on real images with flat regions); the JAX
    engine must route it the same way."""
    th, jx = engines(_tie_spec(), Optimizer.of("sgd"))
    x = np.full((1, 1, 1, 2, 2), 0.5, np.float32)
    y = np.zeros((1, 1), np.int32)
    before = th.dump()["param:conv.W"]
    th.train_steps(x, y, 1.0)
    jx.train_steps(x, y, 1.0)
    np.testing.assert_allclose(jx.dump()["param:conv.W"] - before,
                               th.dump()["param:conv.W"] - before, rtol=1e-5)


@pytest.mark.parametrize("subtract_mean", [True, False])
@pytest.mark.parametrize("he_gain", ["relu", 1])
def test_engines_get_the_same_data_and_initial_arrays_for_every_setup(subtract_mean, he_gain,
                                                                       cifar_root):
    """What a run's setup fixes before the first step reaches every engine alike: the
    preprocessed images (TrainingInputs) and the initial arrays (the He gain)."""
    from experiments.engines.jax_group import GroupEngine
    raw = load_dataset("cifar10", cifar_root, download=False, subtract_mean=False)
    run = {"model": "vgg", "epochs": 1, "train_subset": 64, "val_subset": 16,
           "subtract_mean": subtract_mean, "he_gain": he_gain, "updater": "adam"}
    inputs = TrainingInputs.of(run, raw)
    spec, data, setup = inputs.spec, inputs.dataset, inputs.setup
    np.testing.assert_array_equal(data.x_train[0], raw.x_train[0] - raw.x_train.mean(
        axis=0, dtype=np.float64).astype(np.float32) if subtract_mean else raw.x_train[0])
    h = Optimizer.of("adam")
    th = get_engine("theano").load()(spec, data, h, SEED, setup=setup)
    jx = get_engine("jax").load()(spec, data, h, SEED, setup=setup)
    group = GroupEngine(spec, data, [h], [SEED], setup=setup)
    for name in ("x_train", "x_val"):
        assert th.dataset.__dict__[name] is data.__dict__[name]
        np.testing.assert_array_equal(np.asarray(jx._data[name]), data.__dict__[name])
        np.testing.assert_array_equal(np.asarray(group._data[name]), data.__dict__[name])
    first = th.dump()
    std = float(first["param:conv1_1.W"].std())
    assert abs(std / ((np.sqrt(2) if he_gain == "relu" else 1.0) / np.sqrt(27)) - 1) < 0.1
    for arrays in (jx.dump(), group.dump()[0]):
        assert sorted(arrays) == sorted(first)
        for key, value in first.items():
            np.testing.assert_array_equal(arrays[key], value, err_msg=key)


@pytest.mark.parametrize("key, value", [("maxpool_tie_gradient", "first"),
                                        ("precision", "tf32"), ("precision", "bf16"),
                                        ("precision", "tf32_emulated"),
                                        ("precision", "bf16_emulated")])
def test_the_theano_engine_refuses_what_it_does_not_offer(key, value):
    with pytest.raises(ValueError) as error:
        get_engine("theano").load()(_tie_spec(), None, Optimizer.of("sgd"), SEED,
                             setup=SetupKeys(**{key: value}))
    assert "Theano engine" in str(error.value) and "\n" not in str(error.value)
    assert f"{key} {value!r}" in str(error.value)


def test_checkpoints_move_between_engines():
    """A checkpoint written by one engine loads into the other unchanged (names,
    shapes, dtypes, values), including batch-norm and AMSGrad state, and training
    continues from it identically."""
    spec = models.ModelSpec("tiny", "cifar10", (3, 6, 6), (
        *models.batch_norm(models.Conv2DLayer("conv", 4, 3, "same")),
        models.GlobalPoolLayer("gpool"),
        models.DenseLayer("out", 10, nonlinearity="softmax")))
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(4, 8, 3, 6, 6)).astype(np.float32)
    y = rng.integers(0, 10, size=(4, 8)).astype(np.int32)
    th, jx = engines(spec, CONFIGS["amsgrad"])
    th.train_steps(x[:2], y[:2], LR)
    written = th.dump()
    jx.load(written)
    read = jx.dump()
    assert sorted(read) == sorted(written)
    for key in written:
        assert read[key].dtype == written[key].dtype, key
        np.testing.assert_array_equal(read[key], written[key], err_msg=key)
    assert int(read["opt:t"]) == 2 and np.any(read["opt:v_hat:conv.W"] > 0)
    assert np.any(read["state:conv_bn.mean"] != 0)

    loss_th, loss_jx = th.train_steps(x[2:3], y[2:3], LR), jx.train_steps(x[2:3], y[2:3], LR)
    np.testing.assert_allclose(loss_jx, loss_th, rtol=LOSS_RTOL)
    th.load(jx.dump())  # and back
    for key, value in jx.dump().items():
        np.testing.assert_array_equal(th.dump()[key], value, err_msg=key)
