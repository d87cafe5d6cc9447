"""The layers of :mod:`experiments.models` as Theano expressions, as Lasagne 0.2 builds them.

Each function takes a layer spec and its input expression and returns the output
expression; :data:`LAYERS` maps each layer type to one, and :func:`get_output` chains them
for a whole spec, like ``lasagne.layers.get_output``. Batch-norm running averages are
returned as a list of ``(shared, update)`` pairs for ``theano.function(..., updates=...)``
(Lasagne attaches the same expressions as ``default_update``).

Float constants are built with ``T.constant`` or Python floats, which Theano casts to
``floatX``; build under ``floatX=float32`` so the graphs stay float32.
"""
from experiments.engines.theano_env import theano  # noqa: F401  (sets Theano's flags before the imports below)

from typing import NamedTuple  # noqa: E402

import theano.tensor as T  # noqa: E402
from theano.tensor.signal.pool import pool_2d  # noqa: E402

from experiments import models  # noqa: E402


def nonlinearity(name, x):
    if name == "relu":
        return T.nnet.relu(x)  # lasagne.nonlinearities.rectify
    if name == "softmax":
        return T.nnet.softmax(x)
    if name == "linear":
        return x
    raise ValueError(f"unknown nonlinearity {name!r}")


def conv2d(layer, x, W, b, input_shape, filter_flip):
    """``Conv2DLayer``: stride 1, ``'valid'`` or ``'same'`` (Theano's ``'half'``).

    ``filter_flip=True`` is Lasagne's ``flip_filters=True`` (a true convolution);
    ``False`` is a cross-correlation, as ``jax.lax.conv``.
    """
    y = T.nnet.conv2d(x, W, input_shape=(None,) + tuple(input_shape),
                      filter_shape=W.get_value(borrow=True).shape,
                      border_mode="half" if layer.pad == "same" else "valid",
                      filter_flip=filter_flip)
    if b is not None:
        y = y + b.dimshuffle("x", 0, "x", "x")
    return nonlinearity(layer.nonlinearity, y)


def dense(layer, x, W, b):
    """``DenseLayer``: flattens to 2-d first."""
    if x.ndim > 2:
        x = x.flatten(2)
    y = T.dot(x, W)
    if b is not None:
        y = y + b.dimshuffle("x", 0)
    return nonlinearity(layer.nonlinearity, y)


def batch_norm(layer, x, beta, gamma, mean, inv_std, deterministic):
    """``BatchNormLayer`` over all axes but the channel axis 1.

    Returns ``(output, updates)``; ``updates`` holds the running averages' new values
    (empty in deterministic mode, which normalises with the running averages).
    """
    axes = (0,) + tuple(range(2, x.ndim))
    pattern = ("x", 0) + ("x",) * (x.ndim - 2)
    updates = []
    if deterministic:
        use_mean, use_inv_std = mean, inv_std
    else:
        use_mean = x.mean(axes)
        use_inv_std = T.inv(T.sqrt(x.var(axes) + layer.epsilon))  # biased variance
        updates = [(mean, (1 - layer.alpha) * mean + layer.alpha * use_mean),
                   (inv_std, (1 - layer.alpha) * inv_std + layer.alpha * use_inv_std)]
    out = ((x - use_mean.dimshuffle(pattern))
           * (gamma.dimshuffle(pattern) * use_inv_std.dimshuffle(pattern))
           + beta.dimshuffle(pattern))
    return out, updates


def local_response_normalization(layer, x, channels):
    """``LocalResponseNormalization2DLayer``: ``x / (k + alpha * sum x**2) ** beta`` over
    ``n`` neighbouring channels, zero-padded at the edges; alpha not divided by ``n``."""
    half_n = layer.n // 2
    b, _, r, c = x.shape
    padded = T.alloc(T.constant(0, dtype=x.dtype), b, channels + 2 * half_n, r, c)
    sqr = T.set_subtensor(padded[:, half_n:half_n + channels, :, :], T.sqr(x))
    scale = layer.k
    for i in range(layer.n):  # summed one term at a time, as Lasagne does
        scale += layer.alpha * sqr[:, i:i + channels, :, :]
    return x / scale ** layer.beta


def dropout(layer, x, srng):
    """``DropoutLayer`` in training mode: kept units rescaled by ``1 / (1 - p)``."""
    retain = T.constant(1) - layer.p
    x = x / retain
    return x * srng.binomial(x.shape, p=retain, dtype=x.dtype)


class Pass(NamedTuple):
    """What :func:`get_output` tells each layer function besides its input."""
    deterministic: bool
    srng: object
    filter_flip: bool
    input_shape: tuple = ()  # the layer's, without the batch axis


def _conv_layer(layer, x, params, state, run):
    W, b = params[f"{layer.name}.W"], params.get(f"{layer.name}.b")
    return conv2d(layer, x, W, b, run.input_shape, run.filter_flip), []


def _dense_layer(layer, x, params, state, run):
    return dense(layer, x, params[f"{layer.name}.W"], params.get(f"{layer.name}.b")), []


def _batch_norm_layer(layer, x, params, state, run):
    name = layer.name
    return batch_norm(layer, x, params[f"{name}.beta"], params[f"{name}.gamma"],
                      state[f"{name}.mean"], state[f"{name}.inv_std"], run.deterministic)


def _dropout_layer(layer, x, params, state, run):
    if not run.deterministic and run.srng is not None and layer.p > 0:
        x = dropout(layer, x, run.srng)
    return x, []


#: Each layer type's expression ``(layer, x, params, state, Pass) -> (x, updates)`` on
#: NCHW ``x``: the one place the Theano engine maps specs to code.
LAYERS = {
    models.Conv2DLayer: _conv_layer,
    models.DenseLayer: _dense_layer,
    models.BatchNormLayer: _batch_norm_layer,
    models.NonlinearityLayer: lambda layer, x, *_: (nonlinearity(layer.nonlinearity, x), []),
    models.MaxPool2DLayer: lambda layer, x, *_: (
        pool_2d(x, ws=(layer.pool_size,) * 2, ignore_border=True, mode="max"), []),
    models.DropoutLayer: _dropout_layer,
    models.LocalResponseNormalization2DLayer: lambda layer, x, _, __, run: (
        local_response_normalization(layer, x, run.input_shape[0]), []),
    models.GlobalPoolLayer: lambda layer, x, *_: (T.mean(x.flatten(3), axis=2), []),
}


def get_output(spec, x, params, state, deterministic, srng=None, filter_flip=False):
    """The output of ``spec`` for the input expression ``x``.

    Parameters
    ----------
    spec : experiments.models.ModelSpec
        Each layer builds :data:`LAYERS`' expression for its type.
    x : 4-d tensor
    params, state : dict name -> shared variable
        As named by :func:`experiments.models.param_shapes` and ``state_shapes``.
    deterministic : bool
        Running batch-norm statistics and no dropout, else batch statistics.
    srng : MRG_RandomStreams or None
        Dropout masks in training mode; ``None`` disables dropout.
    filter_flip : bool
        See :func:`conv2d`.

    Returns
    -------
    output, updates
        Class probabilities, and the batch-norm running-average updates.
    """
    functions = [models.implementation(LAYERS, layer, "the Theano engine")
                 for layer in spec.layers]
    run, updates = Pass(deterministic, srng, filter_flip), []
    for (layer, shape, _), fn in zip(models.layer_shapes(spec), functions):
        x, new = fn(layer, x, params, state, run._replace(input_shape=shape))
        updates += new
    return x, updates
