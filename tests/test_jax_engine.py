"""The JAX engine: each layer against numpy, the loss and its clipping, the compiled
epoch loop, checkpoints of its arrays, and training on real MNIST and CIFAR-10."""
import math
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import models
from experiments.data import epoch_batches, flip_images, load_dataset, subset
from experiments.engines import base, get_engine
from experiments.engines import jax_layers as L
from experiments.optimizers import Optimizer
from experiments.engines.jax_engine import JaxEngine
from experiments.models import (BatchNormLayer, DenseLayer, DropoutLayer, GlobalPoolLayer,
                                ModelSpec, NonlinearityLayer)
from experiments.config.schedules import learning_rate

REAL = Path(os.environ.get("AMSGRAD_REAL_DATA",
                           Path(__file__).resolve().parents[2] / "shared" / "data"))
needs_real = pytest.mark.skipif(not (REAL / "mnist" / "train-images-idx3-ubyte.gz").is_file(),
                                reason=f"real data not found in {REAL}")
rng = np.random.default_rng(1234)


def nhwc(x):
    return jnp.asarray(np.transpose(x, (0, 2, 3, 1)))


def nchw(x):
    return np.transpose(np.asarray(x), (0, 3, 1, 2))


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class Arrays:  # what an engine reads from a Dataset
    def __init__(self, x_train, y_train, x_val, y_val, flip=False):
        self.x_train, self.y_train, self.x_val, self.y_val = x_train, y_train, x_val, y_val
        self.flip = flip


def fake_data(shape, n_train=64, n_val=7, classes=10):
    r = np.random.default_rng(0)
    return Arrays(r.normal(size=(n_train,) + shape).astype(np.float32),
                       r.integers(0, classes, n_train).astype(np.int32),
                       r.normal(size=(n_val,) + shape).astype(np.float32),
                       r.integers(0, classes, n_val).astype(np.int32))


# ---- layers against numpy ---------------------------------------------------------------

BN_SPEC = ModelSpec("bn", "none", (3, 4, 5), (BatchNormLayer("bn"), GlobalPoolLayer("gp"),
                                               NonlinearityLayer("sm", "softmax")))


def bn_arrays(engine):
    arrays = engine.dump()
    arrays.update({"param:bn.gamma": np.float32([0.5, 2.0, -1.0]),
                   "param:bn.beta": np.float32([0.1, -0.3, 0.7]),
                   "state:bn.mean": np.float32([0.2, -1.0, 3.0]),
                   "state:bn.inv_std": np.float32([1.5, 0.25, 0.8])})
    return arrays


def test_batch_norm_running_inv_std_and_outputs_match_numpy():
    engine = JaxEngine(BN_SPEC, None, Optimizer.of("sgd"), seed=0)
    arrays = bn_arrays(engine)
    engine.load(arrays)
    x = (rng.normal(size=(6, 3, 4, 5)) * [[[[1.0]], [[3.0]], [[0.2]]]] + 2).astype(np.float32)
    y = np.int32([0, 1, 2, 0, 1, 2])
    g, b = arrays["param:bn.gamma"], arrays["param:bn.beta"]
    m0, s0 = arrays["state:bn.mean"], arrays["state:bn.inv_std"]
    c = lambda a: np.asarray(a, np.float64)[None, :, None, None]

    # deterministic: the running averages, not the batch
    expected = softmax(((x - c(m0)) * c(g) * c(s0) + c(b)).mean(axis=(2, 3)))
    np.testing.assert_allclose(engine.forward(x), expected, rtol=1e-5)

    # training: batch statistics with the biased variance
    mean, var = x.mean(axis=(0, 2, 3), dtype=np.float64), x.var(axis=(0, 2, 3), dtype=np.float64)
    inv = 1 / np.sqrt(var + 1e-4)
    train_probs = softmax(((x - c(mean)) * c(g) * c(inv) + c(b)).mean(axis=(2, 3)))
    np.testing.assert_allclose(engine.forward(x, deterministic=False), train_probs, rtol=1e-5)

    # one step at lr 0 updates only the running averages, alpha 0.1
    loss = engine.train_steps(x[None], y[None], lr=0.0)
    np.testing.assert_allclose(loss, [-np.log(train_probs[np.arange(6), y]).mean()], rtol=1e-5)
    after = engine.dump()
    np.testing.assert_allclose(after["state:bn.mean"], 0.9 * m0 + 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(after["state:bn.inv_std"], 0.9 * s0 + 0.1 * inv, rtol=1e-5)
    np.testing.assert_array_equal(after["param:bn.gamma"], g)


def lrn_loop(x, alpha=1e-4, k=2.0, beta=0.75, n=5):
    out = np.empty_like(x, dtype=np.float64)
    channels = x.shape[1]
    for ch in range(channels):
        lo, hi = max(0, ch - n // 2), min(channels, ch + n // 2 + 1)
        out[:, ch] = x[:, ch] / (k + alpha * (x[:, lo:hi].astype(np.float64) ** 2).sum(1)) ** beta
    return out


@pytest.mark.parametrize("beta", [0.75, 0.5])
def test_lrn_matches_numpy_loop(beta):
    x = rng.normal(0, 30, size=(2, 7, 3, 4)).astype(np.float32)  # alpha*sum(x^2) ~ 0.45
    out = nchw(L.local_response_norm(nhwc(x), beta=beta))
    np.testing.assert_allclose(out, lrn_loop(x, beta=beta), rtol=2e-6)
    # Lasagne's alpha is not divided by n: that version is far off.
    assert np.abs(out - lrn_loop(x, alpha=1e-4 / 5, beta=beta)).max() > 0.05 * np.abs(out).max()


def test_max_pool_floor():
    x = np.arange(2 * 3 * 5 * 7, dtype=np.float32).reshape(2, 3, 5, 7) * rng.choice([-1, 1], 7)
    out = nchw(L.max_pool(nhwc(x)))
    assert out.shape == (2, 3, 2, 3)
    expected = x[:, :, :4, :6].reshape(2, 3, 2, 2, 3, 2).max(axis=(3, 5))
    np.testing.assert_array_equal(out, expected)


def test_max_pool_gradient_goes_to_every_tied_maximum():
    # Theano's MaxPoolGrad (and so Lasagne) passes the gradient to each input equal to
    # the window's max; on real images ties are common (flat regions, ReLU zeros).
    x = np.array([[1, 1, 0, 2, 9], [0, 1, 2, 0, 9], [3, 3, 3, 3, 9]], np.float32)
    x = x[None, :, :, None]  # NHWC, a 3x5 image: one 2x2 window row, border dropped
    g = np.asarray(jax.grad(lambda a: (L.max_pool(a) * jnp.array([2.0, 5.0])[None, None, :, None]).sum())(x))
    expected = np.array([[2, 2, 0, 5, 0], [0, 2, 5, 0, 0], [0, 0, 0, 0, 0]], np.float32)
    np.testing.assert_array_equal(g[0, :, :, 0], expected)


def conv_loop(x, W, pad):
    """A true convolution (kernel flipped), as Lasagne's Conv2DLayer computes it."""
    k = W.shape[-1]
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))).astype(np.float64)
    Wf = W[:, :, ::-1, ::-1]
    h, w = x.shape[2] - k + 1, x.shape[3] - k + 1
    out = np.zeros((x.shape[0], W.shape[0], h, w))
    for i in range(h):
        for j in range(w):
            out[:, :, i, j] = np.einsum("ncab,ocab->no", x[:, :, i:i + k, j:j + k], Wf)
    return out


@pytest.mark.parametrize("pad, k", [("valid", 3), ("same", 3), ("same", 1), ("valid", 6)])
def test_conv_matches_numpy_and_custom_gradient_matches_autodiff(pad, k):
    x = rng.normal(size=(2, 3, 9, 8)).astype(np.float32)
    W = rng.normal(size=(4, 3, k, k)).astype(np.float32)
    b = np.float32([0.1, 0.2, -0.3, 0.0])
    out = nchw(L.conv2d(nhwc(x), jnp.asarray(W), jnp.asarray(b), pad))
    np.testing.assert_allclose(out, conv_loop(x, W, k // 2 if pad == "same" else 0)
                               + b[None, :, None, None], rtol=1e-4, atol=1e-5)
    target = rng.normal(size=out.shape).astype(np.float32)
    grads = [jax.grad(lambda x_, W_: jnp.sum((L.conv2d(x_, W_, None, pad, custom_grad=cg)
                                              - nhwc(target)) ** 2), (0, 1))(nhwc(x), W)
             for cg in (True, False)]
    for custom, auto in zip(*grads):
        np.testing.assert_allclose(custom, auto, rtol=1e-5, atol=1e-5)


def test_dense_flattens_in_lasagne_order_and_custom_gradient_matches_autodiff():
    x = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    W = rng.normal(size=(60, 6)).astype(np.float32)
    np.testing.assert_allclose(L.dense(nhwc(x), W), x.reshape(2, -1) @ W, rtol=1e-5)
    target = rng.normal(size=(2, 6)).astype(np.float32)
    grads = [jax.grad(lambda x_, W_: jnp.sum((L.dense(x_, W_, None, custom_grad=cg)
                                              - target) ** 2), (0, 1))(nhwc(x), W)
             for cg in (True, False)]
    for custom, auto in zip(*grads):
        np.testing.assert_allclose(custom, auto, rtol=1e-5, atol=1e-6)
    # the weight gradient by hand: x.T @ dL/dout
    out = x.reshape(2, -1) @ W
    np.testing.assert_allclose(grads[0][1], x.reshape(2, -1).T @ (2 * (out - target)),
                               rtol=1e-4, atol=1e-5)


def test_clipped_crossentropy_value_and_zero_gradient_where_clipped():
    probs = jnp.float32([[0.0, 1.0, 0.0], [0.2, 0.5, 0.3]])
    y = jnp.int32([0, 1])
    loss = L.clipped_crossentropy(probs, y)
    np.testing.assert_allclose(loss, [-np.log(np.float32(1e-7)), -np.log(0.5)], rtol=1e-6)
    assert abs(float(loss[0]) - 16.118) < 1e-3
    g = jax.grad(lambda p: jnp.sum(L.clipped_crossentropy(p, y)))(probs)
    np.testing.assert_allclose(g, [[0, 0, 0], [0, -2, 0]], rtol=1e-6)
    # Through a saturated softmax: no gradient reaches the logits at all.
    logits = jnp.float32([[-50.0, 50.0, 0.0]])
    g = jax.grad(lambda z: L.clipped_crossentropy(jax.nn.softmax(z), jnp.int32([0]))[0])(logits)
    assert not np.any(np.asarray(g))
    # The target is picked, not multiplied out: NaN in another class does not leak in,
    # and the values are those of a gather.
    odd = jnp.float32([[np.nan, 0.25, 0.75], [0.1, 0.6, 0.3]])
    loss = L.clipped_crossentropy(odd, jnp.int32([1, 2]))
    np.testing.assert_array_equal(loss, -jnp.log(jnp.float32([0.25, 0.3])))
    # A diverged net, saturated on one class: 9 in 10 examples wrong -> 0.9 * -ln(1e-7).
    sat = jnp.tile(jnp.float32([[1.0] + [0.0] * 9]), (10, 1))
    mean = float(jnp.mean(L.clipped_crossentropy(sat, jnp.arange(10, dtype=jnp.int32))))
    assert abs(mean - 14.506) < 1e-3


def test_dropout_scaling():
    for p in (0.5, 0.25):
        out = np.asarray(L.dropout(jnp.ones(200_000), p, jax.random.PRNGKey(0)))
        kept = out != 0
        np.testing.assert_allclose(out[kept], 1 / (1 - p), rtol=1e-6)
        assert abs(kept.mean() - (1 - p)) < 0.005  # 5 binomial std


@pytest.mark.parametrize("name", models.model_names())
def test_forward_of_every_model(name):
    spec = models.get_model(name)
    engine = JaxEngine(spec, None, Optimizer.of("adam"), seed=0)
    probs = engine.forward(rng.random((2,) + spec.input_shape, dtype=np.float32))
    assert probs.shape == (2, 10) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)


def test_dropout_flag():
    spec = models.get_model("cifarnet")  # no batch norm: training mode differs by dropout only
    x = rng.random((4, 3, 32, 32), dtype=np.float32)
    on, off = (JaxEngine(spec, None, Optimizer.of("amsgrad"), 0, dropout=d) for d in (True, False))
    np.testing.assert_array_equal(off.forward(x, deterministic=False), off.forward(x))
    assert not np.allclose(on.forward(x, deterministic=False), on.forward(x))


# ---- the engine -------------------------------------------------------------------------

def test_interface_and_checkpoint_names():
    spec = models.get_model("logreg")
    assert get_engine("jax").load() is JaxEngine and issubclass(JaxEngine, base.Engine)
    engine = JaxEngine(spec, None, Optimizer.of("amsgrad"), seed=3)
    arrays = engine.dump()
    assert sorted(arrays) == sorted(["param:out.W", "param:out.b", "opt:t", "opt:m:out.W",
                                     "opt:m:out.b", "opt:v:out.W", "opt:v:out.b",
                                     "opt:v_hat:out.W", "opt:v_hat:out.b"])
    np.testing.assert_array_equal(arrays["param:out.W"],
                                  models.init_params(spec, 3)["out.W"])
    assert arrays["opt:t"] == 0
    del arrays["opt:v_hat:out.b"]
    with pytest.raises(ValueError, match="missing \\['opt:v_hat:out.b'\\]"):
        engine.load(arrays)
    adam = JaxEngine(spec, None, Optimizer.of("adam"), seed=3).dump()
    assert "opt:v_hat:out.W" not in adam
    with pytest.raises(ValueError, match=r"unknown updater 'adamm' \(did you mean 'adam'\?\)"):
        Optimizer.of("adamm")


def test_epoch_loop_flips_on_device_and_resumes_from_its_arrays():
    data = fake_data((1, 6, 5))
    spec = ModelSpec("tiny", "none", (1, 6, 5), (DenseLayer("out", 10, nonlinearity="softmax"),))
    hp = Optimizer.of("amsgrad", bias_correction=False)
    indices, flips = epoch_batches(0, 0, 64, 16, flip=True)
    a = JaxEngine(spec, data, hp, seed=1)
    start = a.dump()
    loss, acc = a.train_epoch(0, 0.01, indices, flips)
    # the same steps with batches gathered and flipped on the host
    b = JaxEngine(spec, None, hp, seed=1)
    xs = np.stack([flip_images(data.x_train[i], f) for i, f in zip(indices, flips)])
    losses = b.train_steps(xs, data.y_train[indices], 0.01)
    assert loss == pytest.approx(losses.mean(), rel=1e-6)
    for k, v in a.dump().items():
        np.testing.assert_allclose(v, b.dump()[k], rtol=1e-6, atol=1e-7, err_msg=k)
    assert a.dump()["opt:t"] == 4
    # without the flips the epoch differs; from the same arrays it repeats exactly
    a.load(start)
    assert a.train_epoch(0, 0.01, indices, None)[0] != loss
    a.load(start)
    assert a.train_epoch(0, 0.01, indices, flips) == (loss, acc)


def test_evaluate_weighs_the_last_partial_batch_by_its_size():
    data = fake_data((1, 6, 5), n_val=7)
    spec = ModelSpec("tiny", "none", (1, 6, 5), (DenseLayer("out", 10, nonlinearity="softmax"),))
    engine = JaxEngine(spec, data, Optimizer.of("amsgrad"), seed=2)
    probs = engine.forward(data.x_val)
    per_example = -np.log(np.clip(probs[np.arange(7), data.y_val], 1e-7, 1 - 1e-7))
    for batch in (3, 7, 1024):  # 3 + 3 + 1: a mean over batches would weigh them equally
        loss, acc = engine.evaluate(batch_size=batch)
        assert loss == pytest.approx(per_example.mean(), rel=1e-6)
        assert acc == pytest.approx((probs.argmax(1) == data.y_val).mean())


def test_dropout_masks_follow_seed_and_epoch():
    spec = ModelSpec("drop", "none", (1, 6, 5), (DenseLayer("h", 50), DropoutLayer("d", 0.5),
                                                 DenseLayer("out", 10, nonlinearity="softmax")))
    data = fake_data((1, 6, 5))
    engine = JaxEngine(spec, data, Optimizer.of("amsgrad"), seed=0)
    start = engine.dump()
    indices = np.arange(64, dtype=np.int32).reshape(4, 16)
    first = engine.train_epoch(4, 0.0, indices)  # lr 0: only dropout changes the loss
    assert engine.train_epoch(4, 0.0, indices) == first
    assert engine.train_epoch(5, 0.0, indices) != first
    other = JaxEngine(spec, data, Optimizer.of("amsgrad"), seed=1)
    other.load(start)
    assert other.train_epoch(4, 0.0, indices) != first
    off = JaxEngine(spec, data, Optimizer.of("amsgrad"), seed=0, dropout=False)
    assert off.train_epoch(4, 0.0, indices) == off.train_epoch(5, 0.0, indices) != first


# ---- real data --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist", REAL, download=False, quiet=True)


@needs_real
@pytest.mark.parametrize("updater", ["amsgrad", "adam"])
def test_logreg_on_mnist(mnist, updater):
    spec = models.get_model("logreg")
    engine = JaxEngine(spec, mnist, Optimizer.of(updater, beta2=0.999), seed=0)
    losses = []
    for epoch in range(3):
        indices, _ = epoch_batches(0, epoch, len(mnist.y_train))
        losses.append(engine.train_epoch(epoch, learning_rate(0.001, epoch, 150), indices)[0])
    # The published first-epoch training loss of logistic regression is about 0.70.
    assert 0.6 < losses[0] < 0.8 and losses[0] > losses[1] > losses[2]
    val_loss, val_acc = engine.evaluate()
    assert val_acc > 0.91 and val_loss < 0.35


@pytest.fixture(scope="module")
def cifar(cifar_root):
    return load_dataset("cifar10", cifar_root, download=False, quiet=True)


@needs_real
@pytest.mark.slow
def test_cifarnet_on_cifar10_starts_at_ln10_and_learns(cifar):
    spec = models.get_model("cifarnet")
    data = subset(cifar, 1600, 1000)
    engine = JaxEngine(spec, data, Optimizer.of("amsgrad"), seed=0)
    loss0, acc0 = engine.evaluate()
    # An untrained net predicts nearly uniformly: the He-initialised logits spread by
    # about 0.3 across classes, which adds about 0.3**2 / 2 = 0.05 to ln 10 (measured
    # 2.33-2.37 over seeds 0-4); 0.1 leaves room for that and for the 1000 examples.
    assert abs(loss0 - math.log(10)) < 0.1 and acc0 < 0.2
    # 200 steps of 32 images (4 epochs of the 1600), with flips, lower the loss.
    first = None
    for epoch in range(4):
        indices, flips = epoch_batches(0, epoch, 1600, 32, flip=True)
        loss, _ = engine.train_epoch(epoch, 0.001, indices, flips)
        first = loss if first is None else first
    val_loss, val_acc = engine.evaluate()
    assert loss < first - 0.2
    assert val_loss < loss0 - 0.1 and val_acc > 0.2
