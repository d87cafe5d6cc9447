"""The setup keys (experiments.setup): mean subtraction, He gain, validation averaging,
max-pool tie gradient and precision, each from the config to the engines."""
import hashlib
import io
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from jax import lax

from experiments import models

from experiments.config import setup_keys
from experiments.config import ConfigError, parse_config
from experiments.data import Dataset, preprocess, subtract_training_mean
from experiments.engines import jax_layers as L
from experiments.optimizers import Optimizer
from experiments.engines.base import initial_arrays, validation_means
from experiments.engines.jax_engine import JaxEngine
from experiments.engines.jax_group import GroupEngine
from experiments.data import DataRequest
from experiments.config.runs import expand_grid
from experiments.grid.plan import plan
from experiments.grid.runner import run_grid
from experiments.results.store import RunStore
from experiments.config.setup_keys import SetupKeys
from experiments.training import config_hash, train_run
from experiments.training.inputs import TrainingInputs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- mean subtraction -------------------------------------------------------------------

def test_training_mean_is_taken_in_float64_then_subtracted_in_float32_from_both():
    x_train = np.array([2.0 ** 24, 1, 1], np.float32).reshape(3, 1, 1, 1)
    x_val = np.array([5592409], np.float32).reshape(1, 1, 1, 1)
    # in float32, 2**24 + 1 rounds back to 2**24: a mean of 5592405.5, not 5592406
    assert np.mean(x_train) != 5592406
    train, val = subtract_training_mean(x_train, x_val)
    assert train.dtype == val.dtype == np.float32
    np.testing.assert_array_equal(train.ravel(), [11184810, -5592405, -5592405])
    np.testing.assert_array_equal(val.ravel(), [3])


def _raw(name, n=3):
    x = np.arange(n * 4, dtype=np.float32).reshape(n, 1, 2, 2)  # per-pixel mean: x[1]
    y = np.zeros(n, np.int32)
    return Dataset(name, x, y, x[:1] + 100, y[:1], mean_subtracted=False)


def test_preprocess_subtracts_as_the_setup_says_and_missing_as_before():
    mean = np.arange(4, 8, dtype=np.float32).reshape(1, 2, 2)
    assert preprocess(_raw("cifar10")).mean_subtracted is False  # CIFAR-10: not before
    for data in (preprocess(_raw("mnist")), preprocess(_raw("cifar10"), True)):
        assert data.mean_subtracted is True
        np.testing.assert_array_equal(data.x_train, _raw("cifar10").x_train - mean)
        np.testing.assert_array_equal(data.x_val, _raw("cifar10").x_val - mean)
    assert preprocess(_raw("mnist"), False).mean_subtracted is False
    done = preprocess(_raw("mnist"))
    assert preprocess(done, True) is done  # never twice
    with pytest.raises(ValueError, match="training mean subtracted"):
        preprocess(done, False)
    hand = Dataset("cifar10", *(getattr(_raw("cifar10"), k)
                                for k in ("x_train", "y_train", "x_val", "y_val")))
    assert preprocess(hand, True) is hand  # arrays made by hand are taken as they are


def test_grids_load_the_data_with_the_setups_mean():
    def load(name, data_dir=None, quiet=False):
        return _raw(name, 4)
    for subtract, expected in ((True, -6.0), (False, 0.0), (None, 0.0)):
        data = DataRequest("cifar10", subtract, 2).load(load_fn=load)
        assert len(data.y_train) == 2  # the mean is of all training images, then the subset
        assert data.x_train[0, 0, 0, 0] == expected


def test_a_run_gets_its_setups_dataset():
    run = {"model": "cifarnet", "epochs": 1, "subtract_mean": True}
    data = TrainingInputs.of(run, _raw("cifar10")).dataset
    assert data.mean_subtracted is True and data.x_train[1].sum() == 0


# -- He gain ----------------------------------------------------------------------------

@pytest.mark.parametrize("gain, value", [("relu", np.sqrt(2)), (1, 1.0), (0.5, 0.5)])
def test_he_std_follows_the_gain(gain, value):
    spec = models.get_model("vgg")
    w = initial_arrays(spec, Optimizer.of("adam"), 7, SetupKeys(he_gain=gain))["param:conv3_1.W"]
    fan_in = 128 * 3 * 3
    assert w.size > 290000  # the std of the sample std is below 0.2%
    assert abs(w.std() / (value * np.sqrt(1.0 / fan_in)) - 1) < 0.01


def test_the_gain_scales_the_same_draws_and_leaves_glorot_layers_alone():
    spec, h = models.get_model("vgg"), Optimizer.of("adam")
    relu, one = (initial_arrays(spec, h, 3, SetupKeys(he_gain=g)) for g in ("relu", 1))
    np.testing.assert_allclose(relu["param:conv1_1.W"], one["param:conv1_1.W"] * np.sqrt(2),
                               rtol=1e-6)
    np.testing.assert_array_equal(relu["param:out.W"], one["param:out.W"])  # GlorotUniform
    assert np.array_equal(relu["param:conv1_1.W"],
                          initial_arrays(spec, h, 3)["param:conv1_1.W"])  # the default


# -- validation averaging ---------------------------------------------------------------

def test_validation_means_over_examples_and_over_batches():
    sums = np.array([2.0, 4.0, 5.0], np.float32)  # batches of 2, 2 and a short one of 1
    assert validation_means(sums, 5, 2, "examples") == pytest.approx(11 / 5)
    assert validation_means(sums, 5, 2, "batches") == pytest.approx((1 + 2 + 5) / 3)
    rows = np.stack([sums, 2 * sums])  # per run
    np.testing.assert_allclose(validation_means(rows, 5, 2, "batches"), [8 / 3, 16 / 3])


def _toy(n_train=32, n_val=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n_train + n_val, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, n_train + n_val).astype(np.int32)
    return Dataset("mnist", x[:n_train], y[:n_train], x[n_train:], y[n_train:])


@pytest.mark.parametrize("average", ["examples", "batches"])
def test_both_jax_engines_average_validation_as_the_setup_says(average):
    data, spec, h = _toy(), models.get_model("logreg"), Optimizer.of("adam")
    setup = SetupKeys(val_average=average)
    single = JaxEngine(spec, data, h, 0, setup=setup)
    group = GroupEngine(spec, data, [h], [0], setup=setup)
    probs = single.forward(data.x_val)
    p = np.clip(probs[np.arange(5), data.y_val], 1e-7, 1 - 1e-7).astype(np.float64)
    losses, hits = -np.log(p), (probs.argmax(1) == data.y_val).astype(np.float64)
    if average == "examples":
        expected = losses.mean(), hits.mean()
    else:  # batches of 2, 2, 1
        expected = (np.mean([losses[:2].mean(), losses[2:4].mean(), losses[4]]),
                    np.mean([hits[:2].mean(), hits[2:4].mean(), hits[4]]))
    np.testing.assert_allclose(single.evaluate(2), expected, rtol=1e-6)
    np.testing.assert_allclose(np.ravel(group.evaluate(2)), expected, rtol=1e-6)


# -- max-pool tie gradient --------------------------------------------------------------

# Two windows: a four-way tie of 1s, and a tie of 2s at window positions 1 and 2.
TIES = np.array([[1, 1, 0, 2],
                 [1, 1, 2, 1]], np.float32).reshape(1, 2, 4, 1)
WEIGHTS = np.array([3.0, 5.0], np.float32).reshape(1, 1, 2, 1)


def _pool_grad(pool):
    return np.asarray(jax.grad(lambda a: jnp.sum(pool(a) * WEIGHTS))(jnp.asarray(TIES)))


def test_tie_gradient_to_every_maximum():
    np.testing.assert_array_equal(_pool_grad(lambda a: L.max_pool(a, 2, "all"))[0, :, :, 0],
                                  [[3, 3, 0, 5], [3, 3, 5, 0]])


def test_tie_gradient_to_the_first_maximum_as_xla():
    first = _pool_grad(lambda a: L.max_pool(a, 2, "first"))
    np.testing.assert_array_equal(first[0, :, :, 0], [[3, 0, 0, 5], [0, 0, 0, 0]])
    xla = _pool_grad(lambda a: lax.reduce_window(a, -jnp.inf, lax.max, (1, 2, 2, 1),
                                                 (1, 2, 2, 1), "VALID"))
    np.testing.assert_array_equal(first, xla)


def test_tie_gradient_key_reaches_both_jax_engines():
    """A 1x1 convolution of a constant image, then one 2x2 pooling window: a four-way
    tie. The conv weight's gradient sums the pixels that receive the pool's gradient:
    four of them ('all') or one ('first')."""
    spec = models.ModelSpec("ties", "cifar10", (1, 2, 2), (
        models.Conv2DLayer("conv", 1, 1, "valid", W="he", b=False, nonlinearity="linear"),
        models.MaxPool2DLayer("pool"),
        models.DenseLayer("out", 2, nonlinearity="softmax")))
    x = np.ones((1, 1, 2, 2), np.float32)
    data = Dataset("cifar10", x, np.zeros(1, np.int32), x, np.zeros(1, np.int32))
    indices = np.zeros((1, 1), np.int32)
    grads = {}
    for ties in ("all", "first"):
        setup = SetupKeys(maxpool_tie_gradient=ties)
        single = JaxEngine(spec, data, Optimizer.of("adam"), 0, setup=setup)
        group = GroupEngine(spec, data, [Optimizer.of("adam")], [0], setup=setup)
        single.train_epoch(0, 0.1, indices)
        group.train_epoch(0, [0.1], [True], {0: (indices, None)})
        grads[ties] = single.dump()["opt:m:conv.W"] / 0.1  # m = (1 - beta1) * gradient
        np.testing.assert_allclose(group.dump()[0]["opt:m:conv.W"] / 0.1, grads[ties],
                                   rtol=1e-6)
    assert abs(float(grads["first"].ravel()[0])) > 1e-4
    np.testing.assert_allclose(grads["all"], 4 * grads["first"], rtol=1e-6)


# -- precision --------------------------------------------------------------------------

def _products(text):
    """The lines of the convolutions and matrix products of a lowered program."""
    return [l for l in text.splitlines() if "stablehlo.convolution" in l
            or "stablehlo.dot_general" in l]


TINY = models.ModelSpec("tiny", "cifar10", (3, 6, 6), (
    models.Conv2DLayer("conv", 4, 3, "same"), models.MaxPool2DLayer("pool"),
    models.DenseLayer("out", 10, W="he", nonlinearity="softmax")))


@pytest.mark.parametrize("precision", setup_keys.PRECISIONS)
def test_precision_reaches_the_compiled_programs(precision):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(8, 3, 6, 6)).astype(np.float32)
    data = Dataset("cifar10", x, np.arange(8, dtype=np.int32), x, np.arange(8, dtype=np.int32))
    setup = SetupKeys(precision=precision)
    single = JaxEngine(TINY, data, Optimizer.of("adam"), 0, setup=setup)
    xb = jnp.asarray(x[None])
    texts = [single._steps_fn.lower(single._carry, xb, jnp.zeros((1, 8), jnp.int32),
                                    np.float32(0.1), single._epoch_key(0)).as_text()]
    group = GroupEngine(TINY, data, [Optimizer.of("adam")], [0], setup=setup)
    args, use_flips, masked = group._epoch_args(
        0, [0.1], [True], {0: (np.arange(8, dtype=np.int32)[None], None)})
    texts.append(jax.jit(group._epoch, static_argnames=("use_flips", "masked")).lower(
        *args, use_flips=use_flips, masked=masked).as_text())
    want = {"default": None, "highest": "HIGHEST", "tf32": "HIGH", "bf16": None,
            "tf32_emulated": "HIGHEST", "bf16_emulated": "HIGHEST"}[precision]
    bits = L.EMULATED.get(precision)
    for text in texts:
        lines = _products(text)
        # forward and backward: conv and its weight gradient, dense and its two, ...
        assert len(lines) >= 5
        # emulated: both operands of every product rounded (inside the loop's body)
        rounding = re.findall(r"stablehlo.reduce_precision .*format = e(\d+)m(\d+)", text)
        assert len(rounding) >= (2 * len(lines) if bits else 0)
        assert set(rounding) == ({tuple(map(str, bits))} if bits else set())
        for line in lines:
            found = re.findall(r"precision(?:_config)? = \[([^\]]*)\]", line)
            names = {p.strip().removeprefix("#stablehlo<precision ").rstrip(">")
                     for f in found for p in f.split(",")}
            assert names <= ({want} if want else {"DEFAULT"}), (precision, line)
            assert ("bf16>" in line.split(" : ")[-1].split("->")[0]) == (precision == "bf16")


# -- results written before the keys existed --------------------------------------------

#: As the code before the setup keys (d530a7b) computed them for configs/<name>.yaml
#: then: the first run's config hash, and a digest of all 120 run ids and hashes.
BEFORE = {"cifarnet": ("5e9d87d2ab384075", "1fba960b00f4ed2f"),
          "logreg": ("f91e7cef21ecc2e0", "743c8e96f352a3a1")}


def _shipped_without_the_keys(name, **keys):
    with open(os.path.join(REPO, "configs", f"{name}.yaml"), encoding="utf-8") as f:
        data = yaml.safe_load(f)
    data = {k: v for k, v in data.items() if k not in setup_keys.NAMES}
    return parse_config({**data, **keys}, path=f"{name}.yaml")


def _ids_and_hashes(config):
    runs = expand_grid(config)
    digest = hashlib.sha256(" ".join(f"{r['run_id']}:{config_hash(r)}" for r in runs)
                            .encode()).hexdigest()[:16]
    return config_hash(runs[0]), digest, [r["run_id"] for r in runs]


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_a_config_without_the_keys_keeps_its_run_ids_and_hashes(name):
    first, digest, ids = _ids_and_hashes(_shipped_without_the_keys(name))
    assert (first, digest) == BEFORE[name] and len(ids) == 120
    # a key written out at the value of before is the same setup ...
    same = _shipped_without_the_keys(name, he_gain="relu", val_average="examples",
                                     precision="default",
                                     subtract_mean=name == "logreg")
    assert _ids_and_hashes(same)[:2] == BEFORE[name]
    # ... another value is another setup: the same run ids, other hashes
    other = _shipped_without_the_keys(name, val_average="batches")
    assert _ids_and_hashes(other)[2] == ids
    assert _ids_and_hashes(other)[0] != first


def test_results_from_before_the_keys_load_report_and_resume(tmp_path):
    base = {"name": "old", "model": "logreg", "epochs": 2, "train_subset": 32,
            "val_subset": 5, "updater": "adam", "seeds": [0]}
    config, data = parse_config(base, path="old.yaml"), _toy()
    load = lambda name, data_dir=None, quiet=False: data  # noqa: E731
    run = expand_grid(config)[0]
    store = RunStore(str(tmp_path / "old" / run["run_id"]))

    class Stop(Exception):
        pass

    def stop(row):
        raise Stop
    with pytest.raises(Stop):  # one epoch checkpointed, then the process ends
        train_run(run, store, dataset=data, quiet=True, on_epoch=stop)
    # the files as the code before the keys wrote them
    old_run = {k: v for k, v in run.items() if k not in setup_keys.NAMES}
    store.write_config(old_run)
    settings = {"kind": "train", "axes": [],
                **{k: v for k, v in config.fixed.items() if k not in setup_keys.NAMES}}
    with open(tmp_path / "old" / "grid.yaml", "w", encoding="utf-8") as f:
        yaml.safe_dump({"name": "old", "config": "old.yaml", "settings": settings}, f)
    first_row = store.read_curves()[0]

    with pytest.raises(ConfigError, match=r"holds a grid with other fixed settings "
                                          r"\(val_average: 'examples' -> 'batches'\)"):
        run_grid(parse_config({**base, "val_average": "batches"}, path="new.yaml"),
                 results_dir=str(tmp_path), load_fn=load, quiet=True, out=io.StringIO())
    assert plan(config, str(tmp_path)).epochs_done[run["run_id"]] == 1
    summary = run_grid(config, results_dir=str(tmp_path), load_fn=load, quiet=True,
                       out=io.StringIO())
    assert summary["trained"] == [run["run_id"]] and not summary["failed"]
    status = store.read_status()
    assert status["state"] == "finished" and status["trainings"] == 2  # resumed
    curves = store.read_curves()
    assert len(curves) == 2 and curves[0] == first_row
    assert store.read_config() == run  # now written with every key
    report = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "report.py"),
                             str(tmp_path / "old")], capture_output=True, text=True)
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "old" / "report.md").is_file()


# -- config ------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value, message", [
    ("subtract_mean", "yes", "key 'subtract_mean': expected true or false, got 'yes'"),
    ("he_gain", -1, "key 'he_gain': expected 'relu' (sqrt 2) or a positive number, got -1"),
    ("val_average", "batch", "key 'val_average': unknown val_average 'batch' (did you mean "
                             "'batches'?); choose from examples, batches"),
    ("maxpool_tie_gradient", "any", "key 'maxpool_tie_gradient': unknown maxpool_tie_gradient "
                                    "'any'; choose from all, first"),
    ("precision", "fp32", "key 'precision': unknown precision 'fp32' (did you mean 'tf32'?); "
                          "choose from default, highest, tf32, bf16, tf32_emulated, bf16_emulated"),
])
def test_bad_setup_values_are_one_line_errors(key, value, message):
    with pytest.raises(ConfigError) as error:
        parse_config({"model": "cifarnet", "updater": "adam", key: value}, path="c.yaml",
                     default_name="c")
    assert str(error.value).startswith(f"c.yaml: {message}")
    assert "\n" not in str(error.value)


def test_a_key_that_does_not_apply_is_an_error_only_away_from_its_default():
    ok = parse_config({"name": "ok", "model": "logreg", "updater": "adam", "he_gain": "relu",
                       "maxpool_tie_gradient": "all"})
    assert ok.fixed["he_gain"] == "relu"
    for key, value, why in (("he_gain", 1, "no He-initialised layers"),
                            ("maxpool_tie_gradient", "first", "no max-pooling")):
        with pytest.raises(ConfigError, match=f"c.yaml: key '{key}': model 'logreg' has {why}"):
            parse_config({"model": "logreg", "updater": "adam", key: value}, path="c.yaml",
                         default_name="c")
    with pytest.raises(ConfigError, match="not something a grid can vary"):
        parse_config({"name": "c", "model": "cifarnet", "grid": {"he_gain": [1, 2]},
                      "updater": "adam"})


def test_a_grid_refuses_an_engine_that_cannot_train_its_setup(tmp_path):
    config = parse_config({"name": "c", "model": "cifarnet", "updater": "adam", "epochs": 1,
                           "maxpool_tie_gradient": "first"}, path="c.yaml")
    with pytest.raises(ConfigError, match=r"^c.yaml: maxpool_tie_gradient 'first' is not "
                                          r"offered by the Theano engine"):
        run_grid(config, results_dir=str(tmp_path), engine="theano", quiet=True,
                 load_fn=lambda name, data_dir=None, quiet=False: _raw(name),
                 out=io.StringIO())
