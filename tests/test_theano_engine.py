"""The Theano reference engine against hand-computed and numpy references.

Layers are checked one by one against numpy formulas (Lasagne's definitions), the
engine end to end on tiny specs: the AMSGrad step against the spec's rule, batch-norm
running statistics, clipping, dropout seeding, flips, evaluation, and checkpoints.
"""
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from experiments import models, optimizers
from experiments.engines import base
from experiments.optimizers import Optimizer

pytestmark = pytest.mark.theano
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def th():
    """``theano``, ``T``, the layers module and the engine class."""
    from experiments.engines import theano_engine, theano_layers
    return SimpleNamespace(theano=theano_engine.theano, T=theano_engine.T,
                           layers=theano_layers, Engine=theano_engine.TheanoEngine)


def compile_layer(th, fn, x, *args):
    """Evaluate ``fn(layer input expression, *args)`` on the array ``x`` (float32)."""
    with th.theano.change_flags(floatX="float32"):
        xt = th.T.TensorType("float32", (False,) * x.ndim)("x")
        out = fn(xt, *args)
        return th.theano.function([xt], out)(x.astype(np.float32))


def spec_of(shape, *layers):
    return models.ModelSpec("test", "cifar10", shape, tuple(layers))


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# -- theano_env -------------------------------------------------------------------------

def test_flags_fill_in_only_what_the_user_left_unset(th, tmp_path):
    from experiments.engines.theano_env import theano_flags
    env = {"THEANORC": str(tmp_path / "none"), "AMSGRAD_CACHE_DIR": str(tmp_path / "c")}
    assert theano_flags(env) == (f"blas.ldflags=,floatX=float32,"
                                 f"base_compiledir={tmp_path / 'c' / 'theano'}")
    env["THEANO_FLAGS"] = "floatX=float64,base_compiledir=/x"
    assert theano_flags(env) == "floatX=float64,base_compiledir=/x,blas.ldflags="
    rc = tmp_path / "theanorc"
    rc.write_text("[blas]\nldflags = -lopenblas\n[global]\nfloatX = float16\n")
    env = {"THEANORC": str(rc), "THEANO_FLAGS": "base_compiledir=/x"}
    assert theano_flags(env) == "base_compiledir=/x"


def test_importing_theano_env_configures_a_fresh_theano(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "THEANO_FLAGS"}
    env.update(AMSGRAD_CACHE_DIR=str(tmp_path), THEANORC=str(tmp_path / "none"),
               PYTHONPATH=str(REPO))
    code = ("from experiments.engines.theano_env import theano as t; c = t.config; "
            "print(c.floatX, repr(c.blas.ldflags), c.base_compiledir)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True)
    assert out.stdout.split() == ["float32", "''", str(tmp_path / "theano")]
    assert "BLAS" not in out.stderr  # the expected notice about empty ldflags is dropped


# -- layers against numpy ---------------------------------------------------------------

def conv_reference(x, W, pad):
    """A true convolution (the kernel flipped), as Lasagne's ``flip_filters=True``."""
    k = W.shape[-1]
    if pad == "same":
        x = np.pad(x, ((0, 0), (0, 0), (k // 2, k // 2), (k // 2, k // 2)))
    n, _, h, w = x.shape
    out = np.zeros((n, W.shape[0], h - k + 1, w - k + 1))
    flipped = W[:, :, ::-1, ::-1]
    for i in range(h - k + 1):
        for j in range(w - k + 1):
            out[:, :, i, j] = np.einsum("nchw,ochw->no", x[:, :, i:i + k, j:j + k], flipped)
    return out


@pytest.mark.parametrize("pad", ["valid", "same"])
def test_conv_is_a_true_convolution(th, pad):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 6, 5)).astype(np.float32)
    W = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    b = rng.normal(size=4).astype(np.float32)
    layer = models.Conv2DLayer("c", 4, 3, pad, nonlinearity="linear")
    shared = lambda a: th.theano.shared(a)
    out = compile_layer(th, lambda xt: th.layers.conv2d(layer, xt, shared(W), shared(b),
                                                         (3, 6, 5), filter_flip=True), x)
    expected = conv_reference(x, W, pad) + b[None, :, None, None]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_local_response_normalization_does_not_divide_alpha_by_n(th):
    x = np.zeros((1, 7, 1, 1), np.float32)
    x[0, :, 0, 0] = [1, 2, 3, 4, 5, 6, 7]
    layer = models.LocalResponseNormalization2DLayer("lrn", alpha=0.01, k=2.0, beta=0.75, n=5)
    out = compile_layer(th, lambda xt: th.layers.local_response_normalization(layer, xt, 7), x)
    v = x[0, :, 0, 0].astype(float)
    # Channel 0 sees channels 0..2 (zero-padded below), channel 3 sees 1..5.
    assert out[0, 0, 0, 0] == pytest.approx(1 / (2 + 0.01 * (1 + 4 + 9)) ** 0.75, rel=1e-6)
    assert out[0, 3, 0, 0] == pytest.approx(4 / (2 + 0.01 * (4 + 9 + 16 + 25 + 36)) ** 0.75,
                                            rel=1e-6)
    expected = [v[c] / (2 + 0.01 * np.sum(v[max(c - 2, 0):c + 3] ** 2)) ** 0.75 for c in range(7)]
    np.testing.assert_allclose(out[0, :, 0, 0], expected, rtol=1e-6)


def test_batch_norm_uses_batch_statistics_and_updates_running_averages(th):
    rng = np.random.default_rng(1)
    x = rng.normal(2.0, 3.0, size=(4, 3, 2, 2)).astype(np.float32)
    gamma, beta = np.float32([0.5, 1.0, 2.0]), np.float32([0.1, -0.2, 0.3])
    mean0, inv_std0 = np.float32([0.0, 1.0, -1.0]), np.float32([1.0, 0.5, 2.0])
    s = {k: th.theano.shared(v) for k, v in
         dict(gamma=gamma, beta=beta, mean=mean0, inv_std=inv_std0).items()}
    layer = models.BatchNormLayer("bn")
    with th.theano.change_flags(floatX="float32"):
        xt = th.T.tensor4()
        out, updates = th.layers.batch_norm(layer, xt, s["beta"], s["gamma"], s["mean"],
                                            s["inv_std"], deterministic=False)
        y = th.theano.function([xt], out, updates=updates)(x)
        det, no_updates = th.layers.batch_norm(layer, xt, s["beta"], s["gamma"], s["mean"],
                                               s["inv_std"], deterministic=True)
        y_det = th.theano.function([xt], det)(x)
    assert no_updates == []
    mu = x.mean(axis=(0, 2, 3))
    inv = 1 / np.sqrt(x.var(axis=(0, 2, 3)) + 1e-4)  # biased variance
    c = lambda a: a[None, :, None, None]
    np.testing.assert_allclose(y, (x - c(mu)) * c(gamma * inv) + c(beta), rtol=1e-5, atol=1e-6)
    mean1, inv_std1 = 0.9 * mean0 + 0.1 * mu, 0.9 * inv_std0 + 0.1 * inv
    np.testing.assert_allclose(s["mean"].get_value(), mean1, rtol=1e-6)
    np.testing.assert_allclose(s["inv_std"].get_value(), inv_std1, rtol=1e-6)
    np.testing.assert_allclose(y_det, (x - c(mean1)) * c(gamma * inv_std1) + c(beta),
                               rtol=1e-5, atol=1e-6)


def test_dropout_rescales_kept_units(th):
    from theano.sandbox.rng_mrg import MRG_RandomStreams
    srng = MRG_RandomStreams(5)
    x = np.ones((200, 50), np.float32)
    out = compile_layer(th, lambda xt: th.layers.dropout(models.DropoutLayer("d", 0.25), xt,
                                                         srng), x)
    assert set(np.unique(out)) == {0.0, np.float32(1 / 0.75)}
    assert (out == 0).mean() == pytest.approx(0.25, abs=0.02)



def test_a_layer_missing_from_the_theano_table_is_named(th):
    @dataclass(frozen=True)
    class ScaleLayer(models.Layer):
        factor: float = 2.0

    spec = spec_of((1, 2, 2), models.DenseLayer("out", 3), ScaleLayer("double"))
    with th.theano.change_flags(floatX="float32"):
        x = th.T.tensor4("x")
        params = {k: th.theano.shared(v) for k, v in models.init_params(spec, 0).items()}
        with pytest.raises(TypeError, match="layer 'double': the Theano engine has no "
                                            "implementation of ScaleLayer"):
            th.layers.get_output(spec, x, params, {}, deterministic=True)
        th.layers.LAYERS[ScaleLayer] = lambda layer, x, *_: (x * layer.factor, [])
        try:  # the table is the one place to add it
            out, _ = th.layers.get_output(spec, x, params, {}, deterministic=True)
            value = th.theano.function([x], out)(np.ones((2, 1, 2, 2), np.float32))
        finally:
            del th.layers.LAYERS[ScaleLayer]
    W, b = (params[k].get_value() for k in ("out.W", "out.b"))
    np.testing.assert_allclose(value, 2 * np.maximum(np.ones((2, 4)) @ W + b, 0), rtol=1e-6)

# -- the engine end to end --------------------------------------------------------------

def test_dump_names_shapes_and_dtypes_follow_the_interface(th):
    spec = models.get_model("logreg")
    lasagne_faced = [r.name for r in optimizers.registered_rules() if r.family.lasagne]
    assert {"adam", "amsgrad", "adamnc", "adabound", "yogi", "adopt"} <= set(lasagne_faced)
    for updater in lasagne_faced:
        hparams = Optimizer.of(updater)
        arrays = th.Engine(spec, None, hparams, seed=0).dump()
        expected = base.array_shapes(spec, hparams)
        assert list(arrays) == list(expected)
        for name, shape in expected.items():
            assert arrays[name].shape == shape, name
            assert arrays[name].dtype == (np.int64 if name == "opt:t" else np.float32), name
        np.testing.assert_array_equal(arrays["param:out.W"],
                                      models.init_params(spec, 0)["out.W"])


def test_load_rejects_arrays_that_do_not_fit(th):
    engine = th.Engine(models.get_model("logreg"), None, Optimizer.of("amsgrad"), seed=0)
    arrays = engine.dump()
    del arrays["opt:v_hat:out.b"]
    with pytest.raises(ValueError, match="opt:v_hat:out.b"):
        engine.load(arrays)
    arrays = engine.dump()
    arrays["param:out.W"] = arrays["param:out.W"][:5]
    with pytest.raises(ValueError, match="param:out.W"):
        engine.load(arrays)


def test_one_amsgrad_step_follows_the_spec(th):
    """Logreg's gradient and the spec's AMSGrad rule in numpy, after two steps."""
    spec = spec_of((1, 2, 3), models.DenseLayer("out", 4, nonlinearity="softmax"))
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 5, 1, 2, 3)).astype(np.float32)
    y = rng.integers(0, 4, size=(2, 5)).astype(np.int32)
    lr, b1, b2, eps = 0.01, 0.9, 0.99, 1e-8
    engine = th.Engine(spec, None, Optimizer.of("amsgrad", beta2=b2), seed=3)
    p = {k: v.astype(np.float64) for k, v in models.init_params(spec, 3).items()}
    m = {k: 0.0 for k in p}
    v = {k: 0.0 for k in p}
    v_hat = {k: 0.0 for k in p}
    losses = engine.train_steps(x, y, lr)
    for t in (1, 2):
        xs, ys = x[t - 1].reshape(5, -1), y[t - 1]
        probs = softmax(xs @ p["out.W"] + p["out.b"])
        assert losses[t - 1] == pytest.approx(-np.log(probs[np.arange(5), ys]).mean(), rel=1e-5)
        delta = (probs - np.eye(4)[ys]) / 5
        grads = {"out.W": xs.T @ delta, "out.b": delta.sum(axis=0)}
        a_t = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        for k in p:
            m[k] = b1 * m[k] + (1 - b1) * grads[k]
            v[k] = b2 * v[k] + (1 - b2) * grads[k] ** 2
            v_hat[k] = np.maximum(v_hat[k], v[k])
            p[k] = p[k] - a_t * m[k] / (np.sqrt(v_hat[k]) + eps)
    arrays = engine.dump()
    assert arrays["opt:t"] == 2
    for k in p:
        np.testing.assert_allclose(arrays[f"param:{k}"], p[k], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(arrays[f"opt:m:{k}"], m[k], rtol=1e-4, atol=1e-9)
        np.testing.assert_allclose(arrays[f"opt:v_hat:{k}"], v_hat[k], rtol=1e-4, atol=1e-12)


def test_batch_norm_statistics_after_a_training_step(th):
    spec = spec_of((2, 3, 3), models.BatchNormLayer("bn"), models.GlobalPoolLayer("g"),
                   models.DenseLayer("out", 10, nonlinearity="softmax"))
    rng = np.random.default_rng(3)
    x = rng.normal(1.0, 2.0, size=(1, 6, 2, 3, 3)).astype(np.float32)
    engine = th.Engine(spec, None, Optimizer.of("adam"), seed=0)
    engine.train_steps(x, np.zeros((1, 6), np.int32), 0.001)
    arrays = engine.dump()
    np.testing.assert_allclose(arrays["state:bn.mean"], 0.1 * x[0].mean(axis=(0, 2, 3)),
                               rtol=1e-5)
    inv = 1 / np.sqrt(x[0].var(axis=(0, 2, 3)) + 1e-4)
    np.testing.assert_allclose(arrays["state:bn.inv_std"], 0.9 + 0.1 * inv, rtol=1e-5)
    before = engine.dump()
    engine.forward(x[0], deterministic=False)  # batch statistics, no update
    np.testing.assert_array_equal(engine.dump()["state:bn.mean"], before["state:bn.mean"])


def test_a_saturated_wrong_prediction_costs_the_clip_and_passes_no_gradient(th):
    spec = spec_of((1, 1, 2), models.DenseLayer("out", 2, nonlinearity="softmax"))
    engine = th.Engine(spec, None, Optimizer.of("sgd"), seed=0)
    arrays = engine.dump()
    arrays["param:out.W"] = np.float32([[100.0, -100.0], [0.0, 0.0]])
    engine.load(arrays)
    x = np.float32([[[[[1.0, 0.0]]]]])  # class 0 with probability 1, the target is 1
    loss = engine.train_steps(x, np.int32([[1]]), 1.0)
    assert loss[0] == pytest.approx(-np.log(np.float32(1e-7)), rel=1e-6)  # 16.118
    np.testing.assert_array_equal(engine.dump()["param:out.W"], arrays["param:out.W"])


def test_max_pool_gradient_goes_to_every_tied_maximum(th):
    """A constant 2x2 image through a 1x1 filter is a four-way tie; Theano passes the
    pooled gradient to all four, so dL/dw = 4 * 0.5 * gz."""
    spec = spec_of((1, 2, 2),
                   models.Conv2DLayer("conv", 1, 1, b=False, nonlinearity="linear"),
                   models.MaxPool2DLayer("pool"),
                   models.DenseLayer("out", 2, b=False, nonlinearity="softmax"))
    engine = th.Engine(spec, None, Optimizer.of("sgd"), seed=0)
    w, U = engine.dump()["param:conv.W"].item(), engine.dump()["param:out.W"].astype(float)
    probs = softmax(0.5 * w * U)
    gz = ((probs - [[1.0, 0.0]]) @ U.T).item()
    engine.train_steps(np.full((1, 1, 1, 2, 2), 0.5, np.float32), np.int32([[0]]), 1.0)
    assert engine.dump()["param:conv.W"].item() == pytest.approx(w - 4 * 0.5 * gz, rel=1e-5)


def tiny_dataset(n_train=12, n_val=5):
    rng = np.random.default_rng(4)
    return SimpleNamespace(
        x_train=rng.normal(size=(n_train, 1, 2, 3)).astype(np.float32),
        y_train=rng.integers(0, 10, n_train).astype(np.int32),
        x_val=rng.normal(size=(n_val, 1, 2, 3)).astype(np.float32),
        y_val=rng.integers(0, 10, n_val).astype(np.int32))


def test_train_epoch_flips_and_averages_its_batches(th):
    spec = spec_of((1, 2, 3), models.DenseLayer("out", 10, nonlinearity="softmax"))
    data = tiny_dataset()
    indices = np.int32([[3, 1, 4, 1], [5, 9, 2, 6]])
    flips = np.array([[True, False, False, True], [False, False, True, False]])
    a = th.Engine(spec, data, Optimizer.of("amsgrad"), seed=0)
    b = th.Engine(spec, None, Optimizer.of("amsgrad"), seed=0)
    loss, acc = a.train_epoch(0, 0.01, indices, flips)
    x = data.x_train[indices]
    x[flips] = x[flips][..., ::-1]
    losses = b.train_steps(x, data.y_train[indices], 0.01)
    assert loss == pytest.approx(float(np.mean(losses)), rel=1e-6)
    assert 0.0 <= acc <= 1.0
    for key, value in a.dump().items():
        np.testing.assert_array_equal(value, b.dump()[key], err_msg=key)


def test_evaluate_weighs_the_last_partial_batch_by_its_size(th):
    spec = spec_of((1, 2, 3), models.DenseLayer("out", 10, nonlinearity="softmax"))
    data = tiny_dataset()
    engine = th.Engine(spec, data, Optimizer.of("adam"), seed=0)
    probs = engine.forward(data.x_val).astype(float)
    p_target = np.clip(probs[np.arange(5), data.y_val], 1e-7, 1 - 1e-7)
    val_loss, val_acc = engine.evaluate(batch_size=2)
    assert val_loss == pytest.approx(-np.log(p_target).mean(), rel=1e-5)
    assert val_acc == pytest.approx(np.mean(probs.argmax(axis=1) == data.y_val))


def test_dropout_masks_depend_on_seed_and_epoch_only(th):
    spec = spec_of((1, 2, 3), models.DropoutLayer("drop", 0.5),
                   models.DenseLayer("out", 10, nonlinearity="softmax"))
    data = tiny_dataset()
    indices = np.arange(12, dtype=np.int32).reshape(3, 4)

    def epoch_loss(seed, epoch):
        engine = th.Engine(spec, data, Optimizer.of("amsgrad"), seed=seed)
        return engine.train_epoch(epoch, 0.01, indices)[0]

    assert epoch_loss(0, 3) == epoch_loss(0, 3)
    assert len({epoch_loss(0, 3), epoch_loss(0, 4), epoch_loss(1, 3)}) == 3
    engine = th.Engine(spec, data, Optimizer.of("amsgrad"), seed=0, dropout=False)
    np.testing.assert_array_equal(engine.forward(data.x_val, deterministic=False),
                                  engine.forward(data.x_val))
