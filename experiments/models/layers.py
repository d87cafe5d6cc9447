"""Lasagne's layers as plain specs: each layer owns what follows from its input shape.

A layer is a frozen dataclass named after a Lasagne layer class. As a Lasagne layer
does (``get_output_shape_for``, its parameters), each owns :meth:`Layer.output_shape`,
:meth:`Layer.param_shapes`, :meth:`Layer.state_shapes`, :meth:`Layer.flops` and its
initial values, drawn host-side with numpy so every engine starts from identical
arrays. Each engine maps a layer type to its forward function in one table
(:func:`implementation`).

Parameter names are ``<layer name>.<param>`` (``conv1.W``, ``conv1_bn.gamma``);
batch-norm running statistics are state, not parameters (``conv1_bn.mean``,
``conv1_bn.inv_std``). Shapes follow Lasagne: conv ``W`` is
``(num_filters, in_channels, kh, kw)``, dense ``W`` is ``(num_inputs, num_units)``.
Shapes here have no batch axis.
"""
import math
from collections import OrderedDict
from dataclasses import dataclass, replace

import numpy as np

__all__ = ["NONLINEARITIES", "Layer", "Conv2DLayer", "DenseLayer", "BatchNormLayer",
           "NonlinearityLayer", "MaxPool2DLayer", "DropoutLayer",
           "LocalResponseNormalization2DLayer", "GlobalPoolLayer", "batch_norm", "he_normal",
           "glorot_uniform", "implementation"]

NONLINEARITIES = ("linear", "relu", "softmax")


@dataclass(frozen=True)
class Layer:
    """A layer without parameters, state or counted FLOPs that keeps its input shape.
    Layer types override what differs."""
    name: str

    def output_shape(self, input_shape):
        """The output shape for ``input_shape``; raises ``ValueError`` if it does not fit."""
        return tuple(input_shape)

    def param_shapes(self, input_shape):
        """Ordered ``{'<name>.<param>': shape}`` of the trainable parameters."""
        return OrderedDict()

    def state_shapes(self, input_shape):
        """Ordered ``{'<name>.<stat>': shape}`` of non-trainable state (running averages)."""
        return OrderedDict()

    def flops(self, input_shape):
        """Forward FLOPs per example: 2 per multiply-add of a weighted product;
        element-wise work is not counted (0)."""
        return 0

    def init_params(self, input_shape, rng, he_gain=np.sqrt(2)):
        """Initial float32 parameters, in :meth:`param_shapes` order, drawn from ``rng``."""
        return OrderedDict()

    def init_state(self, input_shape):
        """Initial float32 state, in :meth:`state_shapes` order."""
        return OrderedDict()


@dataclass(frozen=True)
class _Weighted(Layer):
    """A product with weights ``W`` (He or Glorot) and an optional zero bias ``b``."""

    def init_params(self, input_shape, rng, he_gain=np.sqrt(2)):
        params = OrderedDict()
        for name, shape in self.param_shapes(input_shape).items():
            if name.endswith(".W"):
                value = (he_normal(rng, shape, he_gain) if self.W == "he"
                         else glorot_uniform(rng, shape))
            else:
                value = np.zeros(shape)
            params[name] = value.astype(np.float32)
        return params


@dataclass(frozen=True)
class Conv2DLayer(_Weighted):
    """Stride-1 convolution, ``flip_filters=True``."""
    num_filters: int
    filter_size: int
    pad: str = "valid"  # 'valid' or 'same' (odd filter sizes)
    W: str = "he"  # 'he' (HeNormal, the setup's gain) or 'glorot' (GlorotUniform)
    b: bool = True
    nonlinearity: str = "relu"

    def output_shape(self, input_shape):
        c, h, w = input_shape
        k = self.filter_size
        if self.pad == "same":
            if k % 2 == 0:
                raise ValueError(f"{self.name}: 'same' padding needs an odd filter size")
            return (self.num_filters, h, w)
        if min(h, w) < k:
            raise ValueError(f"{self.name}: a {k}x{k} filter does not fit its {h}x{w} inputs")
        return (self.num_filters, h - k + 1, w - k + 1)

    def param_shapes(self, input_shape):
        k = self.filter_size
        shapes = OrderedDict([(f"{self.name}.W", (self.num_filters, input_shape[0], k, k))])
        if self.b:
            shapes[f"{self.name}.b"] = (self.num_filters,)
        return shapes

    def flops(self, input_shape):
        k = self.filter_size
        return 2 * input_shape[0] * k * k * math.prod(self.output_shape(input_shape))


@dataclass(frozen=True)
class DenseLayer(_Weighted):
    """Flattens its input to 2-d first, as Lasagne's DenseLayer does."""
    num_units: int
    W: str = "glorot"
    b: bool = True
    nonlinearity: str = "relu"

    def output_shape(self, input_shape):
        return (self.num_units,)

    def param_shapes(self, input_shape):
        shapes = OrderedDict([(f"{self.name}.W", (math.prod(input_shape), self.num_units))])
        if self.b:
            shapes[f"{self.name}.b"] = (self.num_units,)
        return shapes

    def flops(self, input_shape):
        return 2 * math.prod(input_shape) * self.num_units


@dataclass(frozen=True)
class BatchNormLayer(Layer):
    """Normalises over batch and spatial axes per channel. Training mode uses batch
    statistics (biased variance) and updates ``mean = (1-alpha)*mean + alpha*batch_mean``
    and ``inv_std = (1-alpha)*inv_std + alpha/sqrt(batch_var + epsilon)``; deterministic
    mode uses those running averages: ``(x - mean) * inv_std * gamma + beta``."""
    epsilon: float = 1e-4
    alpha: float = 0.1

    def param_shapes(self, input_shape):
        return OrderedDict([(f"{self.name}.beta", (input_shape[0],)),
                            (f"{self.name}.gamma", (input_shape[0],))])

    def state_shapes(self, input_shape):
        return OrderedDict([(f"{self.name}.mean", (input_shape[0],)),
                            (f"{self.name}.inv_std", (input_shape[0],))])

    def init_params(self, input_shape, rng, he_gain=np.sqrt(2)):
        """beta 0, gamma 1 (no draws)."""
        return OrderedDict((k, (np.ones if k.endswith(".gamma") else np.zeros)(s, np.float32))
                           for k, s in self.param_shapes(input_shape).items())

    def init_state(self, input_shape):
        """``mean`` 0 and ``inv_std`` 1, as Lasagne."""
        return OrderedDict((k, (np.ones if k.endswith(".inv_std") else np.zeros)(s, np.float32))
                           for k, s in self.state_shapes(input_shape).items())


@dataclass(frozen=True)
class NonlinearityLayer(Layer):
    nonlinearity: str = "relu"


@dataclass(frozen=True)
class MaxPool2DLayer(Layer):
    """Non-overlapping max-pooling; floor output sizes (``ignore_border=True``)."""
    pool_size: int = 2

    def output_shape(self, input_shape):
        c, h, w = input_shape
        if min(h, w) < self.pool_size:
            raise ValueError(f"{self.name}: {self.pool_size}x{self.pool_size} pooling does not "
                             f"fit its {h}x{w} inputs")
        return (c, h // self.pool_size, w // self.pool_size)


@dataclass(frozen=True)
class DropoutLayer(Layer):
    """Drops units with probability ``p`` and rescales kept ones by ``1/(1-p)`` in training."""
    p: float = 0.5


@dataclass(frozen=True)
class LocalResponseNormalization2DLayer(Layer):
    """``x / (k + alpha * sum over n neighbouring channels of x**2) ** beta``; alpha is
    not divided by ``n`` (Lasagne's convention). Zero-padded at the channel edges."""
    alpha: float = 1e-4
    k: float = 2.0
    beta: float = 0.75
    n: int = 5


@dataclass(frozen=True)
class GlobalPoolLayer(Layer):
    """Mean over the spatial axes."""

    def output_shape(self, input_shape):
        return (input_shape[0],)


def batch_norm(layer, name=None):
    """Lasagne's ``batch_norm()``: drop the layer's bias, normalise, then apply its
    nonlinearity. Returns the three layers that replace ``layer``."""
    bn_name = name or f"{layer.name}_bn"
    return (replace(layer, b=False, nonlinearity="linear"),
            BatchNormLayer(bn_name),
            NonlinearityLayer(f"{bn_name}_nl", layer.nonlinearity))


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


def implementation(table, layer, engine):
    """``table[type(layer)]``: an engine's function for ``layer``. A layer type missing
    from the table is a ``TypeError`` naming the layer, its type and the engine."""
    try:
        return table[type(layer)]
    except KeyError:
        raise TypeError(f"layer {layer.name!r}: {engine} has no implementation of "
                        f"{type(layer).__name__} (add it to the engine's layer table)") from None
