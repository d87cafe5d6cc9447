"""The four models, written once in Lasagne's vocabulary as plain layer specs.

A model is a sequence of frozen dataclasses named after Lasagne's layer classes.
Each engine (JAX, Theano) compiles the same spec; initial values are drawn here,
host-side with numpy, so both engines start from identical arrays for a seed.

Parameter names are ``<layer name>.<param>`` (``conv1.W``, ``conv1_bn.gamma``);
batch-norm running statistics are state, not parameters (``conv1_bn.mean``,
``conv1_bn.inv_std``). Shapes follow Lasagne: conv ``W`` is
``(num_filters, in_channels, kh, kw)``, dense ``W`` is ``(num_inputs, num_units)``.
"""
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Tuple

import numpy as np

NONLINEARITIES = ("linear", "relu", "softmax")


@dataclass(frozen=True)
class Conv2DLayer:
    name: str
    num_filters: int
    filter_size: int
    pad: str = "valid"  # 'valid' or 'same' (odd filter sizes)
    W: str = "he"  # 'he' (HeNormal, the setup's gain) or 'glorot' (GlorotUniform)
    b: bool = True
    nonlinearity: str = "relu"


@dataclass(frozen=True)
class DenseLayer:
    """Flattens its input to 2-d first, as Lasagne's DenseLayer does."""
    name: str
    num_units: int
    W: str = "glorot"
    b: bool = True
    nonlinearity: str = "relu"


@dataclass(frozen=True)
class BatchNormLayer:
    """Normalises over batch and spatial axes per channel. Training mode uses batch
    statistics (biased variance) and updates ``mean = (1-alpha)*mean + alpha*batch_mean``
    and ``inv_std = (1-alpha)*inv_std + alpha/sqrt(batch_var + epsilon)``; deterministic
    mode uses those running averages: ``(x - mean) * inv_std * gamma + beta``."""
    name: str
    epsilon: float = 1e-4
    alpha: float = 0.1


@dataclass(frozen=True)
class NonlinearityLayer:
    name: str
    nonlinearity: str = "relu"


@dataclass(frozen=True)
class MaxPool2DLayer:
    """Non-overlapping max-pooling; floor output sizes (``ignore_border=True``)."""
    name: str
    pool_size: int = 2


@dataclass(frozen=True)
class DropoutLayer:
    """Drops units with probability ``p`` and rescales kept ones by ``1/(1-p)`` in training."""
    name: str
    p: float = 0.5


@dataclass(frozen=True)
class LocalResponseNormalization2DLayer:
    """``x / (k + alpha * sum over n neighbouring channels of x**2) ** beta``; alpha is
    not divided by ``n`` (Lasagne's convention). Zero-padded at the channel edges."""
    name: str
    alpha: float = 1e-4
    k: float = 2.0
    beta: float = 0.75
    n: int = 5


@dataclass(frozen=True)
class GlobalPoolLayer:
    """Mean over the spatial axes."""
    name: str


@dataclass(frozen=True)
class ModelSpec:
    name: str
    dataset: str
    input_shape: Tuple[int, int, int]  # (C, H, W), without the batch axis
    layers: Tuple


def batch_norm(layer, name=None):
    """Lasagne's ``batch_norm()``: drop the layer's bias, normalise, then apply its
    nonlinearity. Returns the three layers that replace ``layer``."""
    bn_name = name or f"{layer.name}_bn"
    return (replace(layer, b=False, nonlinearity="linear"),
            BatchNormLayer(bn_name),
            NonlinearityLayer(f"{bn_name}_nl", layer.nonlinearity))


def _logreg():
    return (DenseLayer("out", 10, W="glorot", nonlinearity="softmax"),)


def _cifarnet():
    return (Conv2DLayer("conv1", 64, 6, "valid", W="he"),
            LocalResponseNormalization2DLayer("lrn1"),
            MaxPool2DLayer("pool1"),
            Conv2DLayer("conv2", 64, 6, "valid", W="he"),
            LocalResponseNormalization2DLayer("lrn2"),
            MaxPool2DLayer("pool2"),
            DenseLayer("fc1", 384, W="he"),
            DropoutLayer("drop1", 0.5),
            DenseLayer("fc2", 192, W="he"),
            DenseLayer("out", 10, W="he", nonlinearity="softmax"))


def _conv_bn(name, filters, size=3, pad="same"):
    return batch_norm(Conv2DLayer(name, filters, size, pad, W="he"))


def _small_vgg():
    layers = []
    for block, filters in enumerate((32, 64, 128), start=1):
        layers += _conv_bn(f"conv{block}_1", filters)
        layers += _conv_bn(f"conv{block}_2", filters)
        layers += [MaxPool2DLayer(f"pool{block}"), DropoutLayer(f"drop{block}", 0.25)]
    layers += _conv_bn("conv4", 512, 3, "valid") + (DropoutLayer("drop4", 0.5),)
    layers += _conv_bn("conv5", 512, 1) + (DropoutLayer("drop5", 0.5),)
    layers += _conv_bn("conv6", 10, 1)
    layers += [GlobalPoolLayer("gpool"), NonlinearityLayer("softmax", "softmax")]
    return tuple(layers)


def _vgg():
    layers = list(_conv_bn("conv1_1", 64) + _conv_bn("conv1_2", 64))
    layers += [MaxPool2DLayer("pool1"), DropoutLayer("drop1", 0.25)]
    # The original keeps a bias and no batch norm on the first conv of block 2.
    layers += [Conv2DLayer("conv2_1", 128, 3, "same", W="he", b=True, nonlinearity="relu")]
    layers += _conv_bn("conv2_2", 128)
    layers += [MaxPool2DLayer("pool2"), DropoutLayer("drop2", 0.25)]
    for i in range(1, 5):
        layers += _conv_bn(f"conv3_{i}", 256)
    layers += [MaxPool2DLayer("pool3"), DropoutLayer("drop3", 0.25)]
    layers += _conv_bn("conv4", 1024, 3, "valid") + (DropoutLayer("drop4", 0.5),)
    layers += _conv_bn("conv5", 1024, 1) + (DropoutLayer("drop5", 0.5),)
    layers += _conv_bn("conv6", 10, 1)
    layers += [GlobalPoolLayer("gpool"), DenseLayer("out", 10, W="glorot", nonlinearity="softmax")]
    return tuple(layers)


_MODELS = {
    "logreg": ("mnist", (1, 28, 28), _logreg),
    "cifarnet": ("cifar10", (3, 32, 32), _cifarnet),
    "small_vgg": ("cifar10", (3, 32, 32), _small_vgg),
    "vgg": ("cifar10", (3, 32, 32), _vgg),
}
MODEL_NAMES = tuple(_MODELS)


def get_model(name):
    """The :class:`ModelSpec` of ``'logreg'``, ``'cifarnet'``, ``'small_vgg'`` or ``'vgg'``."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")
    dataset, input_shape, build = _MODELS[name]
    return ModelSpec(name, dataset, input_shape, build())


def output_shapes(spec):
    """``[(layer, output shape without batch axis)]`` in order; checks the spec's sizes."""
    shape, out = tuple(spec.input_shape), []
    for layer in spec.layers:
        if isinstance(layer, Conv2DLayer):
            c, h, w = shape
            k = layer.filter_size
            if layer.pad == "same":
                if k % 2 == 0:
                    raise ValueError(f"{layer.name}: 'same' padding needs an odd filter size")
                shape = (layer.num_filters, h, w)
            else:
                shape = (layer.num_filters, h - k + 1, w - k + 1)
        elif isinstance(layer, MaxPool2DLayer):
            c, h, w = shape
            shape = (c, h // layer.pool_size, w // layer.pool_size)
        elif isinstance(layer, GlobalPoolLayer):
            shape = (shape[0],)
        elif isinstance(layer, DenseLayer):
            shape = (layer.num_units,)
        out.append((layer, shape))
    return out


def param_shapes(spec):
    """Ordered ``{name: shape}`` of the trainable parameters, in Lasagne's order."""
    shapes, shape = OrderedDict(), tuple(spec.input_shape)
    for layer, out_shape in output_shapes(spec):
        if isinstance(layer, Conv2DLayer):
            k = layer.filter_size
            shapes[f"{layer.name}.W"] = (layer.num_filters, shape[0], k, k)
            if layer.b:
                shapes[f"{layer.name}.b"] = (layer.num_filters,)
        elif isinstance(layer, DenseLayer):
            shapes[f"{layer.name}.W"] = (int(np.prod(shape)), layer.num_units)
            if layer.b:
                shapes[f"{layer.name}.b"] = (layer.num_units,)
        elif isinstance(layer, BatchNormLayer):
            shapes[f"{layer.name}.beta"] = (shape[0],)
            shapes[f"{layer.name}.gamma"] = (shape[0],)
        shape = out_shape
    return shapes


def state_shapes(spec):
    """Ordered ``{name: shape}`` of batch-norm running statistics (``mean``, ``inv_std``)."""
    shapes, shape = OrderedDict(), tuple(spec.input_shape)
    for layer, out_shape in output_shapes(spec):
        if isinstance(layer, BatchNormLayer):
            shapes[f"{layer.name}.mean"] = (shape[0],)
            shapes[f"{layer.name}.inv_std"] = (shape[0],)
        shape = out_shape
    return shapes


def _fans(shape):
    if len(shape) == 2:  # dense (n_in, n_out)
        return shape[0], shape[1]
    receptive = int(np.prod(shape[2:]))  # conv (out, in, kh, kw), as Lasagne computes them
    return shape[1] * receptive, shape[0] * receptive


def he_normal(rng, shape, gain=np.sqrt(2)):
    """Lasagne's HeNormal: normal with std ``gain * sqrt(1 / fan_in)``."""
    fan_in, _ = _fans(shape)
    return rng.normal(0.0, gain * np.sqrt(1.0 / fan_in), size=shape)


def glorot_uniform(rng, shape, gain=1.0):
    """Lasagne's GlorotUniform: uniform in ``+-gain * sqrt(6 / (fan_in + fan_out))``."""
    fan_in, fan_out = _fans(shape)
    bound = gain * np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, size=shape)


def init_params(spec, seed, he_gain=np.sqrt(2)):
    """Initial parameters for ``seed``: float32 arrays, drawn in spec order from
    ``np.random.default_rng([seed, 0])`` (weights He with gain ``he_gain``, or Glorot;
    biases and BN beta 0, BN gamma 1). The same draws for every gain: a gain only
    scales the He weights."""
    rng = np.random.default_rng([seed, 0])
    layers = {layer.name: layer for layer in spec.layers}
    params = OrderedDict()
    for name, shape in param_shapes(spec).items():
        layer_name, kind = name.rsplit(".", 1)
        if kind == "W":
            value = (he_normal(rng, shape, he_gain) if layers[layer_name].W == "he"
                     else glorot_uniform(rng, shape))
        elif kind == "gamma":
            value = np.ones(shape)
        else:  # biases, BN beta
            value = np.zeros(shape)
        params[name] = value.astype(np.float32)
    return params


def init_state(spec):
    """Initial batch-norm running statistics: ``mean`` 0 and ``inv_std`` 1, as Lasagne."""
    return OrderedDict((name, (np.zeros if name.endswith(".mean") else np.ones)(shape, np.float32))
                       for name, shape in state_shapes(spec).items())


def count_params(spec):
    return int(sum(np.prod(s) for s in param_shapes(spec).values()))
