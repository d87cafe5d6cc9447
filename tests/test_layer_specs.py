"""Layer specs own their shapes, parameters, state, FLOPs and initial values; each
engine maps a layer type to its function in one table. Expected values are worked out
by hand from the layer definitions, not from the code under test."""
import math
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
import pytest

from experiments import models
from experiments.engines import jax_layers as L
from experiments.training import grouping
from experiments.models import (BatchNormLayer, Conv2DLayer, DenseLayer, DropoutLayer,
                                GlobalPoolLayer, LocalResponseNormalization2DLayer,
                                MaxPool2DLayer, ModelSpec, NonlinearityLayer)


@pytest.mark.parametrize("layer, in_shape, out_shape, params, flops", [
    # 'same' 3x3: 4 filters x 3 channels x 9 taps, over 8x8 outputs, 2 per multiply-add
    (Conv2DLayer("c", 4, 3, "same"), (3, 8, 8), (4, 8, 8),
     {"c.W": (4, 3, 3, 3), "c.b": (4,)}, 2 * 4 * 3 * 9 * 64),  # 13824
    # 'valid' 2x2 on 5x6, no bias: 4x5 outputs
    (Conv2DLayer("c", 2, 2, "valid", b=False), (3, 5, 6), (2, 4, 5),
     {"c.W": (2, 3, 2, 2)}, 2 * 2 * 3 * 4 * 20),  # 960
    # cifarnet's conv1: 6x6 valid on 32x32 -> 27x27
    (Conv2DLayer("conv1", 64, 6), (3, 32, 32), (64, 27, 27),
     {"conv1.W": (64, 3, 6, 6), "conv1.b": (64,)}, 10_077_696),
    # flattens 64x4x4 = 1024 inputs
    (DenseLayer("fc", 384), (64, 4, 4), (384,),
     {"fc.W": (1024, 384), "fc.b": (384,)}, 2 * 1024 * 384),
    (BatchNormLayer("bn"), (32, 16, 16), (32, 16, 16),
     {"bn.beta": (32,), "bn.gamma": (32,)}, 0),
    (MaxPool2DLayer("p"), (3, 5, 7), (3, 2, 3), {}, 0),  # floor sizes
    (MaxPool2DLayer("p", 3), (2, 9, 10), (2, 3, 3), {}, 0),
    (GlobalPoolLayer("g"), (10, 6, 6), (10,), {}, 0),
    (LocalResponseNormalization2DLayer("lrn"), (64, 27, 27), (64, 27, 27), {}, 0),
    (DropoutLayer("d"), (7,), (7,), {}, 0),
    (NonlinearityLayer("nl", "softmax"), (10,), (10,), {}, 0),
])
def test_each_layer_type_by_hand(layer, in_shape, out_shape, params, flops):
    assert layer.output_shape(in_shape) == out_shape
    assert dict(layer.param_shapes(in_shape)) == params
    assert list(layer.param_shapes(in_shape)) == list(params)  # Lasagne's order: W, b
    assert layer.flops(in_shape) == flops
    state = {"bn.mean": (32,), "bn.inv_std": (32,)} if isinstance(layer, BatchNormLayer) else {}
    assert dict(layer.state_shapes(in_shape)) == state
    initial = layer.init_params(in_shape, np.random.default_rng(0))
    assert {k: v.shape for k, v in initial.items()} == params
    assert all(v.dtype == np.float32 for v in initial.values())


def test_same_padding_needs_an_odd_filter_and_says_which_layer():
    spec = ModelSpec("bad", "cifar10", (3, 8, 8), (Conv2DLayer("conv9", 4, 2, "same"),))
    with pytest.raises(ValueError, match="conv9: 'same' padding needs an odd filter size"):
        models.param_shapes(spec)


# The models' shapes, layer by layer, from the architecture text.
SMALL_VGG_SIZES = [32, 32, 16, 16, 16, 8, 8, 8, 4, 2, 2, 2]  # convs and pools in order
VGG_SIZES = [32, 32, 16, 16, 16, 8, 8, 8, 8, 8, 4, 2, 2, 2]


@pytest.mark.parametrize("name, sizes", [("cifarnet", [27, 13, 8, 4]),
                                         ("small_vgg", SMALL_VGG_SIZES), ("vgg", VGG_SIZES)])
def test_spatial_sizes_of_each_model(name, sizes):
    spec = models.get_model(name)
    shapes = models.layer_shapes(spec)
    assert [out[1] for layer, _, out in shapes
            if isinstance(layer, (Conv2DLayer, MaxPool2DLayer))] == sizes
    # each layer's input is the previous layer's output
    assert [s for _, s, _ in shapes] == [spec.input_shape] + [o for *_, o in shapes[:-1]]
    assert shapes[-1][2] == (10,)


def test_cifarnet_parameters_by_hand():
    assert dict(models.param_shapes(models.get_model("cifarnet"))) == {
        "conv1.W": (64, 3, 6, 6), "conv1.b": (64,),
        "conv2.W": (64, 64, 6, 6), "conv2.b": (64,),
        "fc1.W": (64 * 4 * 4, 384), "fc1.b": (384,),
        "fc2.W": (384, 192), "fc2.b": (192,),
        "out.W": (192, 10), "out.b": (10,)}
    assert models.state_shapes(models.get_model("cifarnet")) == {}


def test_vgg_parameters_and_state_by_hand():
    spec = models.get_model("vgg")
    shapes = models.param_shapes(spec)
    assert sum(math.prod(s) for s in shapes.values()) == 5_749_186
    assert list(shapes)[:6] == ["conv1_1.W", "conv1_1_bn.beta", "conv1_1_bn.gamma",
                                "conv1_2.W", "conv1_2_bn.beta", "conv1_2_bn.gamma"]
    assert shapes["conv2_1.W"] == (128, 64, 3, 3) and shapes["conv2_1.b"] == (128,)
    assert shapes["conv4.W"] == (1024, 256, 3, 3) and shapes["conv6_bn.gamma"] == (10,)
    assert shapes["out.W"] == (10, 10)  # after the global pool over 10 channels
    state = models.state_shapes(spec)
    assert len(state) == 20 and state["conv5_bn.inv_std"] == (1024,)
    assert list(state)[:2] == ["conv1_1_bn.mean", "conv1_1_bn.inv_std"]


def test_init_draws_layer_by_layer_in_spec_order():
    """cifarnet's weights are consecutive draws of one generator, He-normal with std
    gain / sqrt(fan in), in spec order; biases take no draws."""
    gain, seed = 1.5, 11
    rng = np.random.default_rng([seed, 0])
    expected = {}
    for name, shape, fan_in in [("conv1.W", (64, 3, 6, 6), 3 * 36),
                                ("conv2.W", (64, 64, 6, 6), 64 * 36),
                                ("fc1.W", (1024, 384), 1024), ("fc2.W", (384, 192), 384),
                                ("out.W", (192, 10), 192)]:
        expected[name] = rng.normal(0.0, gain / np.sqrt(fan_in), shape).astype(np.float32)
    params = models.init_params(models.get_model("cifarnet"), seed, he_gain=gain)
    for name, value in expected.items():
        np.testing.assert_array_equal(params[name], value)
    assert not any(params[f"{n}.b"].any() for n in ("conv1", "conv2", "fc1", "fc2", "out"))


def test_glorot_draws_for_logreg():
    bound = np.sqrt(6.0 / (784 + 10))
    expected = np.random.default_rng([4, 0]).uniform(-bound, bound, (784, 10))
    np.testing.assert_array_equal(models.init_params(models.get_model("logreg"), 4)["out.W"],
                                  expected.astype(np.float32))


def test_costs_read_the_layers_flops():
    # conv 'same' 3x3 (3 -> 4 channels, 8x8), pool to 4x4, dense 64 -> 10
    spec = ModelSpec("tiny", "cifar10", (3, 8, 8),
                     (Conv2DLayer("c", 4, 3, "same"), MaxPool2DLayer("p"),
                      DenseLayer("out", 10, nonlinearity="softmax")))
    conv, dense = 2 * 3 * 9 * 4 * 64, 2 * 64 * 10
    costs = models.costs(spec)
    assert costs["forward_flops"] == conv + dense == 15_104
    assert costs["train_flops"] == 2 * (conv + dense) + dense  # no input gradient for c
    assert costs["params"] == 4 * 27 + 4 + 64 * 10 + 10
    assert costs["activations"] == 192 + 256 + 64 + 10
    assert costs["widest_pair"] == 192 + 256


# ---- a layer type the engines do not know ------------------------------------------------

@dataclass(frozen=True)
class ScaleLayer(models.Layer):
    """Multiplies by ``factor``: shape, parameters and FLOPs come from models.Layer."""
    factor: float = 2.0


SCALED = ModelSpec("scaled", "mnist", (1, 2, 2),
                   (DenseLayer("out", 3, nonlinearity="linear"), ScaleLayer("double")))


def test_a_new_layer_type_needs_no_change_outside_its_spec_for_shapes_and_costs():
    assert models.output_shapes(SCALED)[-1] == (SCALED.layers[-1], (3,))
    assert list(models.param_shapes(SCALED)) == ["out.W", "out.b"]
    assert models.costs(SCALED)["forward_flops"] == 2 * 4 * 3


def test_a_layer_missing_from_the_jax_table_is_named(monkeypatch):
    params = {k: jnp.asarray(v) for k, v in models.init_params(SCALED, 0).items()}
    x = jnp.ones((2, 1, 2, 2))
    with pytest.raises(TypeError, match="layer 'double': the JAX engine has no "
                                        "implementation of ScaleLayer"):
        L.apply(SCALED, params, {}, x)
    # the table is the one place to add it
    monkeypatch.setitem(L.LAYERS, ScaleLayer, lambda layer, x, *_: (x * layer.factor, {}))
    out, _ = L.apply(SCALED, params, {}, x)
    expected = np.ones((2, 4)) @ np.asarray(params["out.W"]) + np.asarray(params["out.b"])
    np.testing.assert_allclose(out, 2 * expected, rtol=1e-6)


def test_every_model_layer_type_has_a_jax_function():
    used = {type(layer) for name in models.model_names() for layer in models.get_model(name).layers}
    assert used <= set(L.LAYERS)
