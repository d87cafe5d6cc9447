"""The four model specs: sizes, parameter counts by hand, layer sequences, initialisation."""
import numpy as np
import pytest

from experiments import models
from experiments.models import (BatchNormLayer, Conv2DLayer, DenseLayer, DropoutLayer,
                                GlobalPoolLayer, LocalResponseNormalization2DLayer,
                                MaxPool2DLayer, NonlinearityLayer)


def conv_params(c_in, c_out, k, bn):
    """A conv+BN has W only plus BN beta and gamma; a plain conv has W and b."""
    return c_out * c_in * k * k + (2 * c_out if bn else c_out)


# Hand-written from the spec's architecture text (not from models.param_shapes).
SMALL_VGG = (conv_params(3, 32, 3, True) + conv_params(32, 32, 3, True)
             + conv_params(32, 64, 3, True) + conv_params(64, 64, 3, True)
             + conv_params(64, 128, 3, True) + conv_params(128, 128, 3, True)
             + conv_params(128, 512, 3, True) + conv_params(512, 512, 1, True)
             + conv_params(512, 10, 1, True))
VGG = (conv_params(3, 64, 3, True) + conv_params(64, 64, 3, True)
       + conv_params(64, 128, 3, False) + conv_params(128, 128, 3, True)
       + conv_params(128, 256, 3, True) + 3 * conv_params(256, 256, 3, True)
       + conv_params(256, 1024, 3, True) + conv_params(1024, 1024, 1, True)
       + conv_params(1024, 10, 1, True) + 10 * 10 + 10)


@pytest.mark.parametrize("name, count", [
    ("logreg", 28 * 28 * 10 + 10),  # 7850
    # conv1 64*3*36+64, conv2 64*64*36+64, fc1 (64*4*4)*384+384, fc2 384*192+192, out 1930
    ("cifarnet", 6976 + 147520 + 393600 + 73920 + 1930),
    ("small_vgg", SMALL_VGG),
    ("vgg", VGG),
])
def test_parameter_counts(name, count):
    assert models.count_params(models.get_model(name)) == count


def test_hand_counts():
    # Summed on paper layer by layer from the tables above.
    assert (SMALL_VGG, VGG) == (1146612, 5749186)
    assert models.count_params(models.get_model("cifarnet")) == 623946


@pytest.mark.parametrize("name", models.model_names())
def test_output_is_ten_probabilities(name):
    spec = models.get_model(name)
    assert models.output_shapes(spec)[-1][1] == (10,)
    last = spec.layers[-1]
    assert getattr(last, "nonlinearity", None) == "softmax"


def test_cifarnet_sizes_and_layers():
    spec = models.get_model("cifarnet")
    sizes = [shape for layer, shape in models.output_shapes(spec)
             if isinstance(layer, (Conv2DLayer, MaxPool2DLayer))]
    assert [s[1] for s in sizes] == [27, 13, 8, 4]
    kinds = [type(layer) for layer in spec.layers]
    assert BatchNormLayer not in kinds
    assert kinds.count(LocalResponseNormalization2DLayer) == 2
    lrn = [layer for layer in spec.layers if isinstance(layer, LocalResponseNormalization2DLayer)]
    assert all((l.alpha, l.k, l.beta, l.n) == (1e-4, 2.0, 0.75, 5) for l in lrn)
    dense = [layer for layer in spec.layers if isinstance(layer, DenseLayer)]
    assert [(d.num_units, d.W) for d in dense] == [(384, "he"), (192, "he"), (10, "he")]
    assert [l.p for l in spec.layers if isinstance(l, DropoutLayer)] == [0.5]


def convs_with_bn(spec):
    """``[(conv, followed by batch norm)]`` in order."""
    layers = spec.layers
    return [(l, i + 1 < len(layers) and isinstance(layers[i + 1], BatchNormLayer))
            for i, l in enumerate(layers) if isinstance(l, Conv2DLayer)]


def test_small_vgg_every_conv_has_bn():
    convs = convs_with_bn(models.get_model("small_vgg"))
    assert len(convs) == 9
    assert all(bn and not c.b and c.nonlinearity == "linear" and c.W == "he" for c, bn in convs)
    assert [c.num_filters for c, _ in convs] == [32, 32, 64, 64, 128, 128, 512, 512, 10]


def test_vgg_conv2_1_has_bias_and_no_bn():
    spec = models.get_model("vgg")
    convs = convs_with_bn(spec)
    assert [c.name for c, _ in convs][2] == "conv2_1"
    for conv, bn in convs:
        if conv.name == "conv2_1":
            assert conv.b and not bn and conv.nonlinearity == "relu"
        else:
            assert bn and not conv.b and conv.nonlinearity == "linear"
    assert isinstance(spec.layers[-1], DenseLayer) and spec.layers[-1].W == "glorot"
    assert isinstance(spec.layers[-2], GlobalPoolLayer)


def test_batch_norm_moves_the_nonlinearity_after_it():
    spec = models.get_model("small_vgg")
    layers = spec.layers
    for i, layer in enumerate(layers):
        if isinstance(layer, BatchNormLayer):
            assert (layer.epsilon, layer.alpha) == (1e-4, 0.1)
            nl = layers[i + 1]
            assert isinstance(nl, NonlinearityLayer) and nl.nonlinearity == "relu"


@pytest.mark.parametrize("model, name, fan_in", [("cifarnet", "conv2.W", 64 * 6 * 6),
                                                 ("cifarnet", "fc1.W", 1024),
                                                 ("small_vgg", "conv3_2.W", 128 * 9)])
def test_he_normal_std(model, name, fan_in):
    w = models.init_params(models.get_model(model), seed=7)[name]
    # >= 73k samples: the std of the sample std is below 0.3%.
    assert w.size > 70000
    assert abs(w.std() / np.sqrt(2.0 / fan_in) - 1) < 0.01
    assert abs(w.mean()) < 0.01 * w.std()


@pytest.mark.parametrize("model, name, fans", [("logreg", "out.W", (784, 10)),
                                               ("vgg", "out.W", (10, 10))])
def test_glorot_uniform_bound(model, name, fans):
    w = models.init_params(models.get_model(model), seed=3)[name]
    bound = np.sqrt(6.0 / sum(fans))
    assert np.abs(w).max() <= bound
    assert np.abs(w).max() > 0.9 * bound
    if w.size > 1000:  # uniform: variance bound**2 / 3
        assert abs(w.var() / (bound ** 2 / 3) - 1) < 0.05


def test_biases_zero_gamma_one_state():
    spec = models.get_model("vgg")
    params, state = models.init_params(spec, 0), models.init_state(spec)
    assert all(v.dtype == np.float32 for v in params.values())
    assert not params["conv2_1.b"].any() and not params["out.b"].any()
    assert not params["conv1_1_bn.beta"].any() and (params["conv1_1_bn.gamma"] == 1).all()
    assert (state["conv4_bn.inv_std"] == 1).all() and not state["conv4_bn.mean"].any()
    assert len(state) == 2 * 10  # every conv but conv2_1 has a batch norm


def test_init_is_deterministic_per_seed():
    spec = models.get_model("cifarnet")
    a, b, c = (models.init_params(spec, s) for s in (5, 5, 6))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["conv1.W"], c["conv1.W"])


def test_unknown_model():
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        models.get_model("resnet")
