"""The models, written once in Lasagne's vocabulary, and what follows from a spec.

A model is registered by name with the function that builds its layers for a number of
classes (:func:`register_model`); :func:`get_model` builds its :class:`ModelSpec` for a
dataset (its own by default), whose registry entry gives the input shape and the number
of classes. The four models of the post are registered here.
"""
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Tuple

import numpy as np

from experiments.data.registry import get_dataset
from experiments.models.layers import (Conv2DLayer, DenseLayer, DropoutLayer, GlobalPoolLayer,
                                       LocalResponseNormalization2DLayer, MaxPool2DLayer,
                                       NonlinearityLayer, batch_norm)

__all__ = ["ModelSpec", "register_model", "get_model", "model_names", "model_dataset",
           "layer_shapes", "output_shapes", "param_shapes", "state_shapes", "init_params",
           "init_state", "count_params", "costs", "epoch_flops"]


@dataclass(frozen=True)
class ModelSpec:
    """A model built for a dataset: its layers, in order, and one example's shape."""
    name: str
    dataset: str
    input_shape: Tuple[int, int, int]  # (C, H, W), without the batch axis
    layers: Tuple


@dataclass(frozen=True)
class _Model:
    build: Callable  # classes -> layers
    dataset: str  # the dataset it trains on unless a config names another
    description: str


_MODELS = {}


def register_model(name, build, dataset, description=""):
    """Register a model: ``build(classes)`` returns its layers (a tuple of
    :mod:`experiments.models.layers` specs) for ``classes`` output classes; ``dataset``
    is the one it trains on by default. A name taken already is a ValueError."""
    if name in _MODELS:
        raise ValueError(f"a model named {name!r} is registered already")
    _MODELS[name] = _Model(build, dataset, description)


def model_names():
    return tuple(_MODELS)


def model_dataset(name):
    """The dataset model ``name`` trains on by default."""
    return _entry(name).dataset


def _entry(name):
    try:
        return _MODELS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model {name!r}; choose from "
                         f"{', '.join(_MODELS)}") from None


def get_model(name, dataset=None):
    """The :class:`ModelSpec` of model ``name`` for ``dataset`` (default: the model's):
    its layers for that dataset's classes, its input shape that dataset's examples'."""
    entry = _entry(name)
    data = get_dataset(dataset or entry.dataset)
    return ModelSpec(name, data.name, tuple(data.input_shape), tuple(entry.build(data.classes)))


def _logreg(classes):
    return (DenseLayer("out", classes, W="glorot", nonlinearity="softmax"),)


def _cifarnet(classes):
    return (Conv2DLayer("conv1", 64, 6, "valid", W="he"),
            LocalResponseNormalization2DLayer("lrn1"),
            MaxPool2DLayer("pool1"),
            Conv2DLayer("conv2", 64, 6, "valid", W="he"),
            LocalResponseNormalization2DLayer("lrn2"),
            MaxPool2DLayer("pool2"),
            DenseLayer("fc1", 384, W="he"),
            DropoutLayer("drop1", 0.5),
            DenseLayer("fc2", 192, W="he"),
            DenseLayer("out", classes, W="he", nonlinearity="softmax"))


def _conv_bn(name, filters, size=3, pad="same"):
    return batch_norm(Conv2DLayer(name, filters, size, pad, W="he"))


def _small_vgg(classes):
    layers = []
    for block, filters in enumerate((32, 64, 128), start=1):
        layers += _conv_bn(f"conv{block}_1", filters)
        layers += _conv_bn(f"conv{block}_2", filters)
        layers += [MaxPool2DLayer(f"pool{block}"), DropoutLayer(f"drop{block}", 0.25)]
    layers += _conv_bn("conv4", 512, 3, "valid") + (DropoutLayer("drop4", 0.5),)
    layers += _conv_bn("conv5", 512, 1) + (DropoutLayer("drop5", 0.5),)
    layers += _conv_bn("conv6", classes, 1)
    layers += [GlobalPoolLayer("gpool"), NonlinearityLayer("softmax", "softmax")]
    return tuple(layers)


def _vgg(classes):
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
    layers += _conv_bn("conv6", classes, 1)
    layers += [GlobalPoolLayer("gpool"),
               DenseLayer("out", classes, W="glorot", nonlinearity="softmax")]
    return tuple(layers)


register_model("logreg", _logreg, "mnist", "logistic regression: one dense softmax layer")
register_model("cifarnet", _cifarnet, "cifar10", "the CNN of the AMSGrad paper")
register_model("small_vgg", _small_vgg, "cifar10", "a small VGG with batch norm")
register_model("vgg", _vgg, "cifar10", "the post's VGG with batch norm")


def layer_shapes(spec):
    """``[(layer, input shape, output shape)]`` in spec order; checks the spec's sizes."""
    shape, out = tuple(spec.input_shape), []
    for layer in spec.layers:
        out_shape = tuple(layer.output_shape(shape))
        out.append((layer, shape, out_shape))
        shape = out_shape
    return out


def output_shapes(spec):
    """``[(layer, output shape without batch axis)]`` in order; checks the spec's sizes."""
    return [(layer, out) for layer, _, out in layer_shapes(spec)]


def param_shapes(spec):
    """Ordered ``{name: shape}`` of the trainable parameters, in Lasagne's order."""
    shapes = OrderedDict()
    for layer, shape, _ in layer_shapes(spec):
        shapes.update(layer.param_shapes(shape))
    return shapes


def state_shapes(spec):
    """Ordered ``{name: shape}`` of batch-norm running statistics (``mean``, ``inv_std``)."""
    shapes = OrderedDict()
    for layer, shape, _ in layer_shapes(spec):
        shapes.update(layer.state_shapes(shape))
    return shapes


def init_params(spec, seed, he_gain=np.sqrt(2)):
    """Initial parameters for ``seed``: float32 arrays, drawn layer by layer in spec
    order from ``np.random.default_rng([seed, 0])`` (weights He with gain ``he_gain``,
    or Glorot; biases and BN beta 0, BN gamma 1). The same draws for every gain: a
    gain only scales the He weights."""
    rng = np.random.default_rng([seed, 0])
    params = OrderedDict()
    for layer, shape, _ in layer_shapes(spec):
        params.update(layer.init_params(shape, rng, he_gain))
    return params


def init_state(spec):
    """Initial batch-norm running statistics: ``mean`` 0 and ``inv_std`` 1, as Lasagne."""
    state = OrderedDict()
    for layer, shape, _ in layer_shapes(spec):
        state.update(layer.init_state(shape))
    return state


def count_params(spec):
    return int(sum(np.prod(s) for s in param_shapes(spec).values()))


def costs(spec):
    """Per-example costs of a model spec, from its layer shapes.

    Returns
    -------
    dict
        ``params`` (count), ``forward_flops`` and ``train_flops`` per example (the
        layers' :meth:`~experiments.models.layers.Layer.flops`: 2 per multiply-add of
        the convolution and dense layers; training is the forward pass, the weight
        gradients, and the input gradients of every weighted layer but the first;
        element-wise layers are not counted), ``activations`` (floats
        of all layer outputs, the input included) and ``widest_pair`` (floats of the
        largest input + output of one layer: what evaluation holds at a time).
    """
    layers = layer_shapes(spec)
    # a layer that counts FLOPs is a weighted product (experiments.models.layers.Layer.flops)
    forward = [f for f in (layer.flops(shape) for layer, shape, _ in layers) if f]
    activations = math.prod(spec.input_shape) + sum(math.prod(out) for *_, out in layers)
    widest = max([math.prod(spec.input_shape)]
                 + [math.prod(shape) + math.prod(out) for _, shape, out in layers])
    fwd = sum(forward)
    train = 2 * fwd + sum(forward[1:])
    return {"params": count_params(spec), "forward_flops": fwd, "train_flops": train,
            "activations": activations, "widest_pair": widest}


def epoch_flops(spec, n_train, n_val, batch_size=128, val_batch_size=1024):
    """``(training, validation)`` FLOPs of one epoch of one run, as the engines compute
    it (:func:`costs` per example): ``ceil(n_train / batch_size)`` full batches (the
    last filled up by draws, ``data.epoch_batches``), and the validation set in whole
    batches of ``val_batch_size`` (the JAX engines pad the last one with zeros)."""
    c = costs(spec)
    train = -(-int(n_train) // batch_size) * batch_size * c["train_flops"]
    val = -(-int(n_val) // val_batch_size) * val_batch_size * c["forward_flops"]
    return train, val
