"""ONNX export of the newer layers and of every activation, checked by ONNX Runtime: the same
outputs as ``model.predict`` to 1e-5 (float32) at batch 1, 7 and 64 (tests/test_export.py's
round trip)."""

import numpy as np
import pytest
from test_export import roundtrip

import minicnn
from minicnn import Sequential
from minicnn.export import ExportError
from minicnn.layers import (
    ELU,
    Activation,
    Conv2D,
    Conv2DTranspose,
    Cropping2D,
    Dense,
    DepthwiseConv2D,
    Flatten,
    LayerNormalization,
    LeakyReLU,
    PReLU,
    SeparableConv2D,
    SpatialDropout2D,
    UpSampling2D,
    ZeroPadding2D,
)
from minicnn.utils import set_random_seed

ACTIVATIONS = ["elu", "selu", "gelu", "silu", "softplus", "softsign", "hard_sigmoid",
               "exponential", "leaky_relu", "relu6", "linear", "sigmoid", "tanh"]  # fmt: skip

CASES = {
    "leaky-elu": lambda: [Conv2D(4, 3), LeakyReLU(0.1), ELU(0.7)],
    "prelu-per-channel": lambda: [Conv2D(4, 3), PReLU(shared_axes=[1, 2])],
    "prelu-full": lambda: [Conv2D(3, 3), PReLU()],
    "zero-padding": lambda: [Conv2D(3, 3), ZeroPadding2D(((1, 2), (0, 3)))],
    "cropping": lambda: [Conv2D(3, 3), Cropping2D(((2, 1), (1, 0)))],
    "upsampling-nearest": lambda: [Conv2D(3, 3), UpSampling2D((2, 3))],
    "upsampling-bilinear": lambda: [Conv2D(3, 3), UpSampling2D((3, 2), interpolation="bilinear")],
    "layer-norm-channels": lambda: [Conv2D(4, 3), LayerNormalization()],
    "layer-norm-image": lambda: [Conv2D(4, 3), LayerNormalization(axis=[1, 2, 3], center=False)],
    "layer-norm-features": lambda: [Flatten(), Dense(6), LayerNormalization(scale=False)],
    "depthwise": lambda: [
        DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, activation="relu")
    ],  # fmt: skip
    "separable": lambda: [
        SeparableConv2D(5, (3, 2), padding="same", activation="gelu"),
        SpatialDropout2D(0.3),
    ],  # fmt: skip
    "transpose-same": lambda: [
        Conv2D(3, 3),
        Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu"),
    ],  # fmt: skip
    "transpose-valid": lambda: [Conv2DTranspose(4, 2, strides=3)],
    "transpose-even-same": lambda: [Conv2DTranspose(2, 4, strides=2, padding="same")],
    "transpose-output-padding": lambda: [
        Conv2DTranspose(3, 5, strides=2, padding="same", output_padding=1)
    ],  # fmt: skip
    "transpose-valid-output-padding": lambda: [
        Conv2DTranspose(3, 3, strides=(2, 1), output_padding=(1, 0))
    ],  # fmt: skip
}


def _model(layers):
    set_random_seed(0)
    model = Sequential([minicnn.Input(shape=(9, 8, 3)), *layers])
    if len(model.output_shape) != 2:
        model.add(Flatten())
    model.add(Dense(7, activation="softmax"))
    rng = np.random.default_rng(1)
    for layer in model.layers:  # weights away from their initial zeros and ones
        for k, v in layer.params.items():
            if k in ("bias", "alpha", "beta", "gamma"):
                v[...] = rng.uniform(0.2, 1.2, v.shape)
    return model


@pytest.mark.parametrize("case", CASES)
def test_each_new_layer_matches_onnx_runtime(tmp_path, rng, case):
    roundtrip(_model(CASES[case]()), tmp_path, rng)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_each_activation_matches_onnx_runtime(tmp_path, rng, name):
    roundtrip(_model([Conv2D(4, 3, activation=name), Activation(name)]), tmp_path, rng)


def test_gelu_approximate_and_refusals(tmp_path, rng):
    from minicnn import activations

    roundtrip(_model([Conv2D(4, 3, activation=activations.GELU(approximate=True))]), tmp_path, rng)
    model = _model([Conv2D(4, 3), LayerNormalization(axis=[1, 3])])
    with pytest.raises(ExportError, match=r"normalises axes \[1, 3\].*trailing axes only"):
        model.export(tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
