"""Lasagne's layers as pure JAX functions, a model spec's forward pass, and what both
JAX engines share besides (loss, accuracy, data placement, device facts).

Each function follows the formula of the Lasagne layer it is named after (Lasagne
0.2.dev1, the version behind the original experiment), including the order of the
floating-point operations where that is cheap, so that the JAX and Theano engines
agree to float32 rounding. The model's input is NCHW and its weights are Lasagne's
(conv ``W (out, in, kh, kw)``), but images travel through the network as NHWC, the
layout XLA's CPU convolutions are fast in; only the flattening before a dense layer
goes back to Lasagne's order.
"""
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from experiments import models
from .base import CLIP


_DN = ("NHWC", "HWIO", "NHWC")  # the layout XLA's CPU convolutions run fast in
#: The setup's ``precision`` as XLA's (``bf16`` casts the operands instead, the
#: emulated ones round them; a ``lax.Precision`` or None given directly is passed on).
PRECISIONS = {"default": None, "highest": lax.Precision.HIGHEST, "tf32": lax.Precision.HIGH}
#: The emulated precisions: the (exponent, mantissa) bits each operand of a product is
#: rounded to (to nearest, ties to even) before the product is computed in float32 at
#: HIGHEST: what TF32 and bfloat16 tensor cores do to float32 operands (they
#: accumulate in float32), on any device, a CPU included.
EMULATED = {"tf32_emulated": (8, 10), "bf16_emulated": (8, 7)}


def _operands(a, b, precision):
    """``(a, b, lax precision, result type)`` of a product at ``precision``: 'bf16'
    multiplies bfloat16 operands and accumulates in float32; an :data:`EMULATED` one
    multiplies rounded float32 operands in full float32."""
    if precision == "bf16":
        return a.astype(jnp.bfloat16), b.astype(jnp.bfloat16), None, jnp.float32
    if precision in EMULATED:
        exponent, mantissa = EMULATED[precision]
        rounded = [lax.reduce_precision(x, exponent_bits=exponent, mantissa_bits=mantissa)
                   for x in (a, b)]
        return (*rounded, lax.Precision.HIGHEST, None)
    return a, b, PRECISIONS.get(precision, precision), None


def _conv(x, k, pad, precision=None):
    x, k, precision, result = _operands(x, k, precision)
    return lax.conv_general_dilated(x, k, (1, 1), [(pad, pad), (pad, pad)],
                                    dimension_numbers=_DN, precision=precision,
                                    preferred_element_type=result)


def _dot(x, W, precision=None):
    x, W, precision, result = _operands(x, W, precision)
    return jnp.dot(x, W, precision=precision, preferred_element_type=result)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv_nhwc(x, k, pad=0, precision=None):
    """Stride-1 convolution of NHWC ``x`` with HWIO ``k``, padded by ``pad`` on each side.

    Its gradients are written as forward convolutions in the same layout. XLA's CPU
    backend runs convolutions in other layouts (those autodiff produces for the
    backward pass) up to 20 times slower inside a loop such as ``lax.scan``; the
    values are the same.
    """
    return _conv(x, k, pad, precision)


def _conv_fwd(x, k, pad, precision):
    return _conv(x, k, pad, precision), (x, k)


def _conv_bwd(pad, precision, res, dy):
    x, k = res
    # dx: full correlation of dy with the spatially flipped kernel, in/out swapped.
    dx = _conv(dy, jnp.transpose(k[::-1, ::-1], (0, 1, 3, 2)), k.shape[0] - 1 - pad,
               precision)
    # dk[h, w, i, o] = sum_{n,y,x} x[n, y+h, x+w, i] dy[n, y, x, o]: a convolution with
    # the input channels as batch and the examples as features.
    dk = _conv(jnp.transpose(x, (3, 1, 2, 0)), jnp.transpose(dy, (1, 2, 0, 3)), pad, precision)
    return dx, jnp.transpose(dk, (1, 2, 0, 3))


conv_nhwc.defvjp(_conv_fwd, _conv_bwd)


def conv2d(x, W, b=None, pad="valid", precision=None, custom_grad=True):
    """``Conv2DLayer`` with ``flip_filters=True`` (Lasagne's default), on NHWC ``x``
    with Lasagne's ``W (out, in, kh, kw)``: a true convolution, so the kernel is
    flipped spatially before the cross-correlation XLA computes. 'same' pads
    ``k // 2`` on each side. ``custom_grad=False`` differentiates XLA's convolution
    directly (the same values; see :func:`conv_nhwc`), except at an emulated
    precision (:func:`_own_grad`)."""
    k = jnp.transpose(W[:, :, ::-1, ::-1], (2, 3, 1, 0))
    p = 0 if pad == "valid" else W.shape[-1] // 2
    out = conv_nhwc(x, k, p, precision) if _own_grad(custom_grad, precision) \
        else _conv(x, k, p, precision)
    return out if b is None else out + b


def _own_grad(custom_grad, precision):
    """Whether a product's gradients are the products written out here. An emulated
    precision always is: there the backward products round their own operands, as a
    tensor core would; autodiff through the rounding would round their results."""
    return custom_grad or precision in EMULATED


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def matmul(x, W, precision=None):
    """``x @ W`` whose weight gradient is the product ``x.T @ g`` in ``W``'s own
    layout. Autodiff computes ``(g.T @ x).T`` and, under the grouped engine's ``vmap``
    over runs, XLA's CPU backend then transposes every run's weight gradient in each
    step; the values are the same."""
    return _dot(x, W, precision)


def _matmul_fwd(x, W, precision):
    return _dot(x, W, precision), (x, W)


def _matmul_bwd(precision, res, g):
    x, W = res
    return _dot(g, W.T, precision), _dot(x.T, g, precision)


matmul.defvjp(_matmul_fwd, _matmul_bwd)


def dense(x, W, b=None, precision=None, custom_grad=True):
    """``DenseLayer``: flattens all but the batch axis in Lasagne's (C, H, W) order,
    then ``x @ W + b`` (``custom_grad``: through :func:`matmul`)."""
    if x.ndim == 4:
        x = jnp.transpose(x, (0, 3, 1, 2))
    x = x.reshape(x.shape[0], -1)
    out = matmul(x, W, precision) if _own_grad(custom_grad, precision) \
        else _dot(x, W, precision)
    return out if b is None else out + b


def nonlinearity(x, name):
    if name == "relu":
        return jax.nn.relu(x)
    if name == "softmax":
        return jax.nn.softmax(x, axis=-1)
    if name == "linear":
        return x
    raise ValueError(f"unknown nonlinearity {name!r}")


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def max_pool(x, size=2, ties="all"):
    """``MaxPool2DLayer(ignore_border=True)`` on NHWC: non-overlapping, floor sizes.

    Where several inputs of a window equal its maximum, the gradient goes to ``'all'``
    of them, as Theano's CPU ``MaxPoolGrad`` does, or to the ``'first'`` in row-major
    window order, as XLA's select-and-scatter and cuDNN do. Ties are common on real
    images (flat regions, ReLU zeros), so this changes the training trajectory, not
    just rounding.
    """
    n, h, w, c = x.shape
    hh, ww = h // size * size, w // size * size
    return x[:, :hh, :ww].reshape(n, h // size, size, w // size, size, c).max(axis=(2, 4))


def _max_pool_fwd(x, size, ties):
    y = max_pool(x, size, ties)
    return y, (x, y)


def _max_pool_bwd(size, ties, residuals, g):
    x, y = residuals
    n, h, w, c = x.shape
    hh, ww = h // size * size, w // size * size
    if ties == "all":
        up = lambda a: jnp.repeat(jnp.repeat(a, size, axis=1), size, axis=2)
        dx = jnp.where(x[:, :hh, :ww] == up(y), up(g), jnp.zeros((), g.dtype))
    elif ties == "first":  # windows as (n, H, W, size * size, c), row-major inside
        win = x[:, :hh, :ww].reshape(n, hh // size, size, ww // size, size, c)
        win = win.transpose(0, 1, 3, 2, 4, 5).reshape(n, hh // size, ww // size, -1, c)
        first = jnp.argmax(win == y[:, :, :, None], axis=3)  # the first True
        pick = first[:, :, :, None] == jnp.arange(size * size)[:, None]
        dx = jnp.where(pick, g[:, :, :, None], jnp.zeros((), g.dtype))
        dx = dx.reshape(n, hh // size, ww // size, size, size, c)
        dx = dx.transpose(0, 1, 3, 2, 4, 5).reshape(n, hh, ww, c)
    else:
        raise ValueError(f"unknown maxpool_tie_gradient {ties!r}; choose from all, first")
    return (jnp.pad(dx, ((0, 0), (0, h - hh), (0, w - ww), (0, 0))),)


max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def global_mean_pool(x):
    """``GlobalPoolLayer``: mean over the spatial axes of NHWC ``x``."""
    return jnp.mean(x, axis=(1, 2))


def local_response_norm(x, alpha=1e-4, k=2.0, beta=0.75, n=5):
    """``LocalResponseNormalization2DLayer`` on NHWC ``x``:
    ``x / (k + alpha * sum x**2) ** beta``, the sum over the ``n`` channels centred
    on each (zero-padded at the edges); alpha is not divided by ``n``.

    The window sum is a product with a 0/1 band matrix and ``** 0.75`` is
    ``rsqrt * sqrt(rsqrt)``: ten times faster on CPU than slices and ``pow``, and
    within float32 rounding of them."""
    channels = x.shape[-1]
    offsets = np.arange(channels)
    band = (np.abs(offsets[:, None] - offsets[None, :]) <= n // 2).astype(np.float32)
    scale = k + alpha * jnp.dot(jnp.square(x), band, precision=lax.Precision.HIGHEST)
    if beta == 0.75:
        r = lax.rsqrt(scale)
        return x * (r * jnp.sqrt(r))
    return x / scale ** beta


def batch_norm_train(x, gamma, beta, mean, inv_std, epsilon=1e-4, alpha=0.1):
    """``BatchNormLayer`` in training: normalise with the batch statistics (biased
    variance) over all axes but the channels (the last); returns the output and the
    updated running ``(mean, inv_std)``."""
    axes = tuple(range(x.ndim - 1))
    batch_mean = jnp.mean(x, axis=axes)
    batch_inv_std = 1.0 / jnp.sqrt(jnp.var(x, axis=axes) + epsilon)
    new_mean = (1 - alpha) * mean + alpha * batch_mean
    new_inv_std = (1 - alpha) * inv_std + alpha * batch_inv_std
    return batch_norm_eval(x, gamma, beta, batch_mean, batch_inv_std), (new_mean, new_inv_std)


def batch_norm_eval(x, gamma, beta, mean, inv_std):
    """``BatchNormLayer(deterministic=True)``: the running averages."""
    return (x - mean) * (gamma * inv_std) + beta  # Lasagne's grouping


def partitionable(fn):
    """Trace and run ``fn`` with threefry's partitionable key derivation, which both
    JAX engines use so that dropout masks are the same on every jax version."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with jax.threefry_partitionable(True):
            return fn(*args, **kwargs)
    return wrapper


def dropout(x, p, key):
    """``DropoutLayer``: ``x / (1 - p) * mask`` with ``mask ~ Bernoulli(1 - p)``."""
    retain = 1.0 - p
    mask = jax.random.bernoulli(key, retain, x.shape)
    return x / retain * mask.astype(x.dtype)


class Pass(NamedTuple):
    """What a forward pass tells each layer function besides its input (see :func:`apply`)."""
    train: bool
    key: object
    precision: object
    custom_grad: bool
    pool_ties: str
    index: int = 0  # the layer's position in the spec


def _conv_layer(layer, x, params, state, run):
    x = conv2d(x, params[f"{layer.name}.W"], params.get(f"{layer.name}.b"), layer.pad,
               run.precision, run.custom_grad)
    return nonlinearity(x, layer.nonlinearity), {}


def _dense_layer(layer, x, params, state, run):
    x = dense(x, params[f"{layer.name}.W"], params.get(f"{layer.name}.b"), run.precision,
              run.custom_grad)
    return nonlinearity(x, layer.nonlinearity), {}


def _batch_norm_layer(layer, x, params, state, run):
    name = layer.name
    gb = params[f"{name}.gamma"], params[f"{name}.beta"]
    stats = state[f"{name}.mean"], state[f"{name}.inv_std"]
    if not run.train:
        return batch_norm_eval(x, *gb, *stats), {}
    x, (mean, inv_std) = batch_norm_train(x, *gb, *stats, layer.epsilon, layer.alpha)
    return x, {f"{name}.mean": mean, f"{name}.inv_std": inv_std}


def _dropout_layer(layer, x, params, state, run):
    if run.train and run.key is not None and layer.p > 0:
        x = dropout(x, layer.p, jax.random.fold_in(run.key, run.index))
    return x, {}


#: Each layer type's forward function ``(layer, x, params, state, Pass) -> (x, new
#: state entries)`` on NHWC ``x``: the one place the JAX engines map specs to code.
LAYERS = {
    models.Conv2DLayer: _conv_layer,
    models.DenseLayer: _dense_layer,
    models.BatchNormLayer: _batch_norm_layer,
    models.NonlinearityLayer: lambda layer, x, *_: (nonlinearity(x, layer.nonlinearity), {}),
    models.MaxPool2DLayer: lambda layer, x, _, __, run: (
        max_pool(x, layer.pool_size, run.pool_ties), {}),
    models.DropoutLayer: _dropout_layer,
    models.LocalResponseNormalization2DLayer: lambda layer, x, *_: (
        local_response_norm(x, layer.alpha, layer.k, layer.beta, layer.n), {}),
    models.GlobalPoolLayer: lambda layer, x, *_: (global_mean_pool(x), {}),
}


def apply(spec, params, state, x, train=False, key=None, precision=None, custom_grad=True,
          pool_ties="all"):
    """The spec's output probabilities for the NCHW batch ``x``.

    Parameters
    ----------
    spec : ModelSpec
        Each layer runs :data:`LAYERS`' function for its type.
    params, state : dict name -> array
        As ``models.init_params`` / ``models.init_state``.
    train : bool
        Batch-norm with batch statistics (and dropout, when ``key`` is given).
    key : PRNG key or None
        Dropout key; each dropout layer uses ``fold_in(key, its index in the spec)``.
        ``None`` disables dropout.
    precision, custom_grad
        For the convolutions and dense layers, see :func:`conv2d` and :func:`dense`;
        ``precision`` is a setup's (:data:`PRECISIONS`, 'bf16', :data:`EMULATED`) or
        XLA's.
    pool_ties : {'all', 'first'}
        The max-pooling gradient where a window ties (:func:`max_pool`).

    Returns
    -------
    probs, new_state
        ``new_state`` holds the updated running averages in training, else ``state``.
    """
    functions = [models.implementation(LAYERS, layer, "the JAX engine") for layer in spec.layers]
    run = Pass(train, key, precision, custom_grad, pool_ties)
    new_state = dict(state)
    if x.ndim == 4:
        x = jnp.transpose(x, (0, 2, 3, 1))  # NCHW -> NHWC
    for i, (layer, fn) in enumerate(zip(spec.layers, functions)):
        x, updates = fn(layer, x, params, state, run._replace(index=i))
        new_state.update(updates)
    return x, new_state


def clipped_crossentropy(probs, targets):
    """Per-example ``-log(clip(p[target], CLIP, 1 - CLIP))``. The clip comes before the
    log, so a prediction clipped at either end passes no gradient back."""
    # the target's probability picked by a select, not a gather: the same values, and
    # its gradient is a select too (a gather's is a scatter, slow on CPU under vmap)
    hit = targets[:, None] == jnp.arange(probs.shape[1], dtype=targets.dtype)
    p = jnp.sum(jnp.where(hit, probs, 0.0), axis=1)
    return -jnp.log(jnp.clip(p, CLIP, 1.0 - CLIP))


def accuracy(probs, targets):
    """Per-example 1.0 where the arg-max class is the target."""
    return (jnp.argmax(probs, axis=1) == targets).astype(probs.dtype)


def eval_batches(x, y, batch_size):
    """``x``, ``y`` zero-padded to whole batches and reshaped to ``(n_batches, batch_size,
    ...)``, with a 0/1 mask of the real rows, so a scan over batches can sum per-example
    loss and accuracy exactly (a mean over examples, not over batches)."""
    n = x.shape[0]
    n_batches = -(-n // batch_size)
    pad = n_batches * batch_size - n
    x = jnp.pad(x, ((0, pad),) + ((0, 0),) * (x.ndim - 1))
    y = jnp.pad(y, (0, pad))
    valid = (jnp.arange(n_batches * batch_size) < n).astype(jnp.float32)
    shape = lambda a: a.reshape((n_batches, batch_size) + a.shape[1:])
    return shape(x), shape(y), shape(valid)


def place_dataset(dataset, device):
    """The dataset's arrays on ``device`` (float32 images, int32 labels): copied once,
    so an epoch sends only its batch plan."""
    put = lambda a, dtype: jax.device_put(np.asarray(a, dtype), device)
    return {"x_train": put(dataset.x_train, np.float32),
            "y_train": put(dataset.y_train, np.int32),
            "x_val": put(dataset.x_val, np.float32), "y_val": put(dataset.y_val, np.int32)}


def device_info(device):
    """A JAX engine's facts for the run's status file."""
    import jaxlib
    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "device": f"{device.platform}:{device.device_kind}"}


def compile_with(lowered, options):
    """``lowered.compile`` with XLA ``options``, without those this jax does not know."""
    if options:
        try:
            return lowered.compile(compiler_options=options)
        except Exception as e:  # jax's XlaRuntimeError/JaxRuntimeError, by version
            if "No such compile option" not in str(e):
                raise
    return lowered.compile()
