"""The emulated precisions (tf32_emulated, bf16_emulated): every convolution and dense
product of both JAX engines rounds its operands to TF32's or bfloat16's mantissa and
multiplies in full float32; ``highest`` is untouched; the Theano engine refuses them;
the shipped configs keep their run ids and hashes."""
import hashlib
import io
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import models
from experiments.config import ConfigError, load_config, parse_config
from experiments.config.runs import expand_grid
from experiments.config.setup_keys import SetupKeys
from experiments.data import Dataset
from experiments.engines import get_engine
from experiments.engines import jax_layers as L
from experiments.engines.jax_engine import JaxEngine
from experiments.engines.jax_group import GroupEngine
from experiments.grid.runner import run_grid
from experiments.optimizers import Optimizer
from experiments.training import config_hash

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# x and W in float32 exactly; TF32 keeps 10 mantissa bits (ulp 2^-10 at 1), bf16 7 (2^-7).
X = 1 + 2 ** -9 + 2 ** -12            # TF32: 2^-12 is 1/4 ulp: down to 1 + 2^-9; bf16: 1
W = 1 + 2 ** -6 + 2 ** -11 + 2 ** -14  # TF32: 2^-11 + 2^-14 is 0.56 ulp: up to 1 + 2^-6 + 2^-10;
#                                        bf16: 0.07 ulp: down to 1 + 2^-6
ROUNDED = {"highest": (X, W), "tf32_emulated": (1 + 2 ** -9, 1 + 2 ** -6 + 2 ** -10),
           "bf16_emulated": (1.0, 1 + 2 ** -6)}
#: x * W: float32 drops the exact product's 2^-26; the rounded operands' products are exact.
PRODUCT = {"highest": 1 + 2 ** -6 + 2 ** -9 + 2 ** -11 + 2 ** -12 + 2 ** -14 + 2 ** -15
           + 2 ** -18 + 2 ** -20 + 2 ** -22,
           "tf32_emulated": 1 + 2 ** -6 + 2 ** -9 + 2 ** -10 + 2 ** -15 + 2 ** -19,
           "bf16_emulated": 1 + 2 ** -6}


def _dense(precision, custom_grad):
    return lambda x, w: L.dense(x, w, precision=precision, custom_grad=custom_grad).sum()


def _conv(precision, custom_grad):  # a 1x1 convolution of one pixel, one channel
    return lambda x, w: L.conv2d(x.reshape(1, 1, 1, 1), w.reshape(1, 1, 1, 1),
                                 precision=precision, custom_grad=custom_grad).sum()


@pytest.mark.parametrize("layer", [_dense, _conv])
@pytest.mark.parametrize("custom_grad", [True, False])
@pytest.mark.parametrize("precision", sorted(PRODUCT))
def test_a_product_and_its_gradients_round_their_operands(precision, custom_grad, layer):
    x, w = np.array([[X]], np.float32), np.array([[W]], np.float32)
    assert float(x[0, 0]) == X and float(w[0, 0]) == W
    f = layer(precision, custom_grad)
    assert float(jax.jit(f)(x, w)) == PRODUCT[precision]
    # the backward products round their operands too (the cotangent 1 is exact):
    # d/dx = 1 * rounded W, d/dW = rounded x * 1
    dx, dw = jax.jit(jax.grad(f, argnums=(0, 1)))(x, w)
    assert (float(dx.ravel()[0]), float(dw.ravel()[0])) == ROUNDED[precision][::-1]
    assert float(jnp.float32(PRODUCT["highest"])) == float(np.float32(np.float64(X) * W))


def _round(a, mantissa):
    """``a`` (float32) rounded to ``mantissa`` bits, to nearest, ties to even: numpy."""
    bits = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    drop = 23 - mantissa
    bits = bits + ((bits >> drop) & 1) + (1 << (drop - 1)) - 1
    return (bits & ~np.uint64((1 << drop) - 1)).astype(np.uint32).view(np.float32)


@pytest.mark.parametrize("precision", sorted(L.EMULATED))
def test_random_products_equal_numpy_on_rounded_operands(precision):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 300)).astype(np.float32)
    w = rng.normal(size=(300, 8)).astype(np.float32)
    mantissa = L.EMULATED[precision][1]
    want = _round(x, mantissa).astype(np.float64) @ _round(w, mantissa).astype(np.float64)
    got = np.asarray(jax.jit(lambda x, w: L.dense(x, w, precision=precision))(x, w))
    full = np.asarray(jax.jit(lambda x, w: L.dense(x, w, precision="highest"))(x, w))
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)  # float32 accumulation
    # the rounding is seen: relative error ~2^-11 (TF32) or 2^-8 (bf16) per operand
    exact = x.astype(np.float64) @ w.astype(np.float64)
    assert np.abs(full - exact).max() < 2e-5 < np.abs(got - exact).max()


TINY = models.ModelSpec("tiny", "cifar10", (3, 6, 6), (
    models.Conv2DLayer("conv", 4, 3, "same"), models.MaxPool2DLayer("pool"),
    models.DenseLayer("out", 10, W="he", nonlinearity="softmax")))


def _trained(precision):
    """The weights after 3 steps of one run alone and in a group of two seeds."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(24, 3, 6, 6)).astype(np.float32)
    y = rng.integers(0, 10, 24).astype(np.int32)
    data = Dataset("cifar10", x, y, x[:8], y[:8])
    setup, indices = SetupKeys(precision=precision), np.arange(24, dtype=np.int32).reshape(3, 8)
    single = JaxEngine(TINY, data, Optimizer.of("adam"), 0, setup=setup)
    single.train_epoch(0, 0.01, indices)
    group = GroupEngine(TINY, data, [Optimizer.of("adam")] * 2, [0, 1], setup=setup)
    group.train_epoch(0, [0.01, 0.01], [True, True], {0: (indices, None), 1: (indices, None)})
    return single.dump()["param:conv.W"], group.dump()[0]["param:conv.W"]


def test_both_jax_engines_train_alike_at_an_emulated_precision_and_not_as_at_highest():
    highest, emulated = _trained("highest"), _trained("tf32_emulated")
    for single, grouped in (highest, emulated):
        np.testing.assert_allclose(grouped, single, rtol=1e-5, atol=1e-7)
    gap = np.abs(emulated[0] - highest[0]).max()
    assert 1e-6 < gap < 1e-2  # the rounding changes the steps, a little


@pytest.mark.parametrize("precision", ["tf32_emulated", "bf16_emulated"])
def test_the_theano_engine_refuses_an_emulated_precision_in_one_line(precision, tmp_path):
    problem = get_engine("theano").problem(SetupKeys(precision=precision))
    assert problem == (f"precision {precision!r} is not offered by the Theano engine (it "
                       f"computes in full float32 on the CPU, and only the JAX engines round "
                       f"operands); use --engine jax or precision: highest")
    assert get_engine("jax").problem(SetupKeys(precision=precision)) is None
    config = parse_config({"name": "c", "model": "logreg", "updater": "adam", "epochs": 1,
                           "precision": precision}, path="c.yaml")
    with pytest.raises(ConfigError) as error:
        run_grid(config, results_dir=str(tmp_path), engine="theano", quiet=True,
                 out=io.StringIO())
    assert str(error.value) == f"c.yaml: {problem}"


#: configs/<name>.yaml: the first run's config hash and a digest of all run ids and
#: hashes, as the code before the emulated precisions computed them (442d104).
SHIPPED = {"logreg": ("786820b6c9cb84f4", "3a47a37a140911a9"),
           "cifarnet": ("76f84529d8a8c494", "3851007a003b939d"),
           "small_vgg": ("2b6ecac6617a1c72", "055ea62db37c73e9"),
           "vgg": ("bd197f719a4c2995", "7a460ec7389ce040")}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_the_shipped_configs_keep_their_run_ids_and_hashes(name):
    runs = expand_grid(load_config(os.path.join(REPO, "configs", f"{name}.yaml")))
    digest = hashlib.sha256(" ".join(f"{r['run_id']}:{config_hash(r)}" for r in runs)
                            .encode()).hexdigest()[:16]
    assert (config_hash(runs[0]), digest) == SHIPPED[name]


REAL = os.environ.get("AMSGRAD_REAL_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))


@pytest.mark.skipif(not os.path.isfile(os.path.join(REAL, "mnist", "train-images-idx3-ubyte.gz")),
                    reason=f"real MNIST not found in {REAL} (set AMSGRAD_REAL_DATA)")
def test_the_precision_study_command_trains_and_tabulates(tmp_path):
    import subprocess
    import sys
    args = [sys.executable, "scripts/benchmark.py", "precision", "--models", "logreg",
            "--seeds", "2", "--epochs", "logreg=2", "--train-subset", "logreg=256",
            "--val-subset", "256", "--precisions", "highest,bf16_emulated", "--results",
            str(tmp_path / "r"), "--data-dir", REAL, "--out", str(tmp_path / "t.md")]
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    means, diffs = [{tuple(c.strip() for c in line.split("|")[2:4]):
                     [float(c.split("±")[0]) for c in line.split("|")[4:8]]
                     for line in table.splitlines() if line.startswith("| logreg")}
                    for table in (tmp_path / "t.md").read_text().split("\n\n")]
    assert set(means) == {(e, p) for e in ("1", "2") for p in ("highest", "bf16_emulated")}
    assert set(diffs) == {(e, p) for e in ("1", "2")
                          for p in ("bf16_emulated", "seed sd at highest")}
    for epoch in ("1", "2"):  # the mean of the paired differences: the means' difference
        want = [b - a for a, b in zip(means[epoch, "highest"], means[epoch, "bf16_emulated"])]
        assert diffs[epoch, "bf16_emulated"] == pytest.approx(want, abs=1.5e-4)
    assert "--set precision=bf16_emulated" in done.stdout  # the run_grid command, shown
    bad = subprocess.run(args[:5] + ["--epochs", "logreg"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode != 0 and bad.stderr.strip().splitlines() == [
        "benchmark precision: --epochs 'logreg': expected model=N for each of logreg"]
