"""Every layer class and activation minicnn exports, against Keras 3.15.1 itself (torch backend).

Each case builds one layer in both libraries with the same arguments: the defaults, then each
argument minicnn takes set to a value Keras takes. Either minicnn refuses it (a ValueError naming
the argument, listed in ``REFUSED``), or, with Keras's weights copied in (``get_weights`` /
``set_weights``: Keras's order and layouts), it gives Keras's output in inference and training
mode, Keras's output shape, Keras's weight names and shapes, and Keras's config for every key
both have. The random layers are checked where their draws are fixed (a factor range of one
value) and statistically elsewhere. The activations by every Keras name, and the initialisers'
statistics for each layer's defaults, are checked the same way.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from referee import keras_referee

import minicnn
from minicnn import activations, layers

IMG = (2, 7, 9, 4)  # batch, height, width, channels
VEC = (2, 5)

# class -> (required arguments, input shape(s), {argument: [values other than Keras's default]})
SWEEP = {
    "Conv2D": ({"filters": 4, "kernel_size": 3}, IMG, {
        "kernel_size": [(2, 3)], "strides": [2, (1, 2)], "padding": ["same"],
        "data_format": ["channels_last", "channels_first"], "dilation_rate": [2], "groups": [2],
        "activation": ["relu", "gelu", "sigmoid"], "use_bias": [False],
        "kernel_initializer": ["he_normal"], "bias_initializer": ["ones"],
        "kernel_regularizer": ["l2"], "bias_regularizer": ["l1"], "activity_regularizer": ["l2"],
        "kernel_constraint": ["non_neg"], "bias_constraint": ["non_neg"],
    }),
    "Conv2DTranspose": ({"filters": 3, "kernel_size": 3}, IMG, {
        "kernel_size": [(2, 3)], "strides": [2], "padding": ["same"], "output_padding": [0],
        "data_format": ["channels_last", "channels_first"], "dilation_rate": [2],
        "activation": ["relu", "tanh"], "use_bias": [False], "kernel_initializer": ["he_uniform"],
        "bias_initializer": ["ones"], "kernel_regularizer": ["l2"], "activity_regularizer": ["l2"],
        "kernel_constraint": ["non_neg"],
    }),
    "DepthwiseConv2D": ({"kernel_size": 3}, IMG, {
        "strides": [2], "padding": ["same"], "depth_multiplier": [2],
        "data_format": ["channels_last", "channels_first"], "dilation_rate": [2],
        "activation": ["relu", "elu"], "use_bias": [False], "depthwise_initializer": ["he_normal"],
        "bias_initializer": ["ones"], "depthwise_regularizer": ["l2"], "activity_regularizer": ["l2"],
        "depthwise_constraint": ["non_neg"],
    }),
    "SeparableConv2D": ({"filters": 5, "kernel_size": 3}, IMG, {
        "strides": [2], "padding": ["same"], "depth_multiplier": [2],
        "data_format": ["channels_last", "channels_first"], "dilation_rate": [2],
        "activation": ["relu", "softplus"], "use_bias": [False],
        "depthwise_initializer": ["he_normal"], "pointwise_initializer": ["lecun_uniform"],
        "bias_initializer": ["ones"], "pointwise_regularizer": ["l2"],
        "activity_regularizer": ["l2"], "pointwise_constraint": ["non_neg"],
    }),
    "Dense": ({"units": 3}, VEC, {
        "activation": ["relu", "softmax", "swish"], "use_bias": [False],
        "kernel_initializer": ["glorot_normal"], "bias_initializer": ["ones"],
        "kernel_regularizer": ["l1l2"], "activity_regularizer": ["l2"],
        "kernel_constraint": ["unit_norm"], "lora_rank": [2],
    }),
    "MaxPooling2D": ({}, IMG, {
        "pool_size": [3, (2, 3)], "strides": [1], "padding": ["same"],
        "data_format": ["channels_last", "channels_first"],
    }),
    "AveragePooling2D": ({"pool_size": 2}, IMG, {
        "pool_size": [3], "strides": [1], "padding": ["same"],
        "data_format": ["channels_last", "channels_first"],
    }),
    "GlobalAveragePooling2D": ({}, IMG, {
        "keepdims": [True], "data_format": ["channels_last", "channels_first"],
    }),
    "GlobalMaxPooling2D": ({}, IMG, {
        "keepdims": [True], "data_format": ["channels_last", "channels_first"],
    }),
    "Flatten": ({}, IMG, {"data_format": ["channels_last", "channels_first"]}),
    "Reshape": ({"target_shape": (9, 28)}, IMG, {"target_shape": [(-1, 4), (252,)]}),
    "Permute": ({"dims": (2, 1, 3)}, IMG, {"dims": [(3, 1, 2), (1, 2, 3)]}),
    "CenterCrop": ({"height": 4, "width": 6}, IMG, {"height": [7, 1, 8], "width": [9, 3], "data_format": ["channels_last", "channels_first"]}),
    "Identity": ({}, IMG, {}),
    "GaussianNoise": ({"stddev": 0.5}, IMG, {"stddev": [0.1, 0.0], "seed": [3]}),
    "UnitNormalization": ({}, IMG, {"axis": [1, [1, 2], (-1, -2)]}),
    "ZeroPadding2D": ({}, IMG, {
        "padding": [2, (1, 2), ((0, 1), (2, 3))],
        "data_format": ["channels_last", "channels_first"],
    }),
    "Cropping2D": ({}, IMG, {
        "cropping": [1, (1, 2), ((0, 1), (2, 3))],
        "data_format": ["channels_last", "channels_first"],
    }),
    "UpSampling2D": ({}, IMG, {
        "size": [3, (1, 2)], "interpolation": ["bilinear", "bicubic"],
        "data_format": ["channels_last", "channels_first"],
    }),
    "Activation": ({"activation": "relu"}, IMG, {
        "activation": ["linear", "tanh", "gelu", "hard_sigmoid", "leaky_relu", "mish"],
    }),
    "ReLU": ({}, IMG, {"max_value": [1.0], "negative_slope": [0.1], "threshold": [0.5]}),
    "Softmax": ({}, IMG, {"axis": [-1, 1]}),
    "LeakyReLU": ({}, IMG, {"negative_slope": [0.1]}),
    "ELU": ({}, IMG, {"alpha": [0.5]}),
    "PReLU": ({}, IMG, {
        "alpha_initializer": ["ones"], "alpha_regularizer": ["l2"],
        "alpha_constraint": ["non_neg"], "shared_axes": [[1, 2]],
    }),
    "Dropout": ({"rate": 0.5}, IMG, {"rate": [0.25], "noise_shape": [(2, 1, 1, 4)], "seed": [3]}),
    "SpatialDropout2D": ({"rate": 0.5}, IMG, {
        "rate": [0.25], "data_format": ["channels_last", "channels_first"], "seed": [3],
    }),
    "BatchNormalization": ({}, IMG, {
        "axis": [-1, 1], "momentum": [0.9], "epsilon": [0.1], "center": [False], "scale": [False],
        "beta_initializer": ["ones"], "gamma_initializer": ["zeros"],
        "moving_mean_initializer": ["ones"], "moving_variance_initializer": ["zeros"],
        "beta_regularizer": ["l2"], "gamma_regularizer": ["l1"], "beta_constraint": ["non_neg"],
        "gamma_constraint": ["non_neg"], "renorm": [True], "renorm_clipping": [{"rmax": 2.0}],
        "renorm_momentum": [0.9], "synchronized": [True],
    }),
    "LayerNormalization": ({}, IMG, {
        "axis": [(1, 2, 3), [2, 3]], "epsilon": [0.1], "center": [False], "scale": [False],
        "beta_initializer": ["ones"], "gamma_initializer": ["zeros"],
        "beta_regularizer": ["l2"], "gamma_constraint": ["non_neg"],
    }),
    "Rescaling": ({"scale": 0.5}, IMG, {"scale": [2], "offset": [1.5]}),
    "RandomRotation": ({"factor": (0.25, 0.25)}, IMG, {
        "factor": [(-0.1, -0.1), (0.125, 0.125)], "fill_mode": ["constant", "wrap", "nearest"],
        "interpolation": ["nearest"], "seed": [3], "fill_value": [1.0],
        "data_format": ["channels_last", "channels_first"],
    }),
    "RandomTranslation": ({"height_factor": (0.3, 0.3), "width_factor": (-0.2, -0.2)}, IMG, {
        "height_factor": [(-0.15, -0.15)], "width_factor": [(0.4, 0.4)],
        "fill_mode": ["constant", "wrap", "nearest"], "interpolation": ["nearest"],
        "seed": [3], "fill_value": [1.0], "data_format": ["channels_last", "channels_first"],
    }),
    "RandomZoom": ({"height_factor": (0.5, 0.5)}, IMG, {
        "height_factor": [(-0.3, -0.3)], "width_factor": [(0.2, 0.2), (-0.4, -0.4)],
        "fill_mode": ["constant", "wrap", "nearest"], "interpolation": ["nearest"],
        "seed": [3], "fill_value": [1.0], "data_format": ["channels_last", "channels_first"],
    }),
    "RandomFlip": ({}, IMG, {"mode": ["horizontal", "vertical"], "seed": [3], "data_format": ["channels_last", "channels_first"]}),
    "RandomContrast": ({"factor": (-0.2, 0.2)}, IMG, {"factor": [(-0.5, 0.5)], "value_range": [(0, 1), (-1, 2)], "seed": [3], "data_format": ["channels_last", "channels_first"]}),
    "RandomBrightness": ({"factor": (0.1, 0.1)}, IMG, {"factor": [(-0.3, -0.3)], "value_range": [(0, 1), (-1, 1)], "seed": [3], "data_format": ["channels_last", "channels_first"]}),
    "RandomElasticTransform": ({}, IMG, {
        "factor": [0.5, (0.2, 0.6)], "scale": [0.3, (0.1, 0.4)], "fill_mode": ["constant", "nearest", "mirror"],
        "interpolation": ["nearest"], "fill_value": [1.0], "value_range": [(0, 1)], "seed": [3],
        "data_format": ["channels_last", "channels_first"],
    }),
    "Add": ({}, [IMG, IMG], {}),
    "Subtract": ({}, [IMG, IMG], {}),
    "Multiply": ({}, [IMG, IMG, IMG], {}),
    "Average": ({}, [IMG, IMG], {}),
    "Maximum": ({}, [IMG, IMG], {}),
    "Minimum": ({}, [IMG, IMG], {}),
    "Concatenate": ({}, [IMG, IMG], {"axis": [1, 2, -2]}),
}  # fmt: skip

# Randomness that differs between the two libraries' generators: Dropout's is checked
# statistically; the augmentations are swept with factor ranges of one value, which leave
# nothing to draw, so training is compared exactly, and their draws statistically.
RANDOM = {
    "Dropout",
    "SpatialDropout2D",
    "RandomElasticTransform",
    "GaussianNoise",
    "RandomFlip",
}  # elastic: its noise field
DRAWN = {  # the augmentations' default-style factors, for the statistical check
    "RandomRotation": {"factor": 0.2},
    "RandomTranslation": {"height_factor": 0.2, "width_factor": 0.2},
    "RandomZoom": {"height_factor": 0.2},
    "RandomElasticTransform": {},
    "RandomContrast": {"factor": 0.5},
    "RandomBrightness": {"factor": 0.2},
}

# What minicnn refuses, each with the argument its message names. "at build": refused when the
# input shape is known (the axis a layer means depends on the input's rank).
CHANNELS_FIRST = ["Conv2D", "Conv2DTranspose", "DepthwiseConv2D", "SeparableConv2D",
                  "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D",
                  "GlobalMaxPooling2D", "Flatten", "ZeroPadding2D", "Cropping2D", "UpSampling2D",
                  "SpatialDropout2D", "RandomRotation", "RandomTranslation", "RandomZoom",
                  "RandomElasticTransform", "RandomFlip", "RandomContrast", "RandomBrightness", "CenterCrop"]  # fmt: skip
REFUSED = {
    **{f"{c}-data_format='channels_first'": "data_format" for c in CHANNELS_FIRST},
    **{f"{c}-dilation_rate=2": "dilation_rate" for c in CHANNELS_FIRST[:4]},
    **{f"{c}-seed=3": "seed" for c in [*RANDOM, *DRAWN]},
    "Conv2D-groups=2": "groups",
    "CenterCrop-height=8": "at build: height=8 is larger than the input's 7",
    "Dense-lora_rank=2": "lora_rank",
    "UpSampling2D-interpolation='bicubic'": "interpolation",
    "BatchNormalization-axis=1": "at build: axis",
    "BatchNormalization-renorm=True": "renorm",
    "BatchNormalization-renorm_clipping={'rmax':2.0}": "renorm_clipping",
    "BatchNormalization-renorm_momentum=0.9": "renorm_momentum",
    "BatchNormalization-synchronized=True": "synchronized",
}

# Keys of Keras's config that minicnn's does not write (yet): the regularizers and constraints
# left unset, and arguments minicnn has at one value only. "dtype" is Keras's policy object;
# minicnn computes in floatx. (The initialisers are written, as Keras writes them.)
_REG = ["kernel_regularizer", "bias_regularizer", "kernel_constraint", "bias_constraint"]
_CONV = ["data_format", "dilation_rate", "activity_regularizer", *_REG]
_DW = ["depthwise_regularizer", "depthwise_constraint"]
_DW_CONV = ["data_format", "dilation_rate", "activity_regularizer", "bias_regularizer", "bias_constraint"]  # fmt: skip
_NORM = ["beta_regularizer", "gamma_regularizer", "beta_constraint", "gamma_constraint"]
CONFIG_GAPS = {
    "Conv2D": [*_CONV, "groups"],
    "Conv2DTranspose": _CONV,
    "DepthwiseConv2D": [*_DW_CONV, *_DW],
    "SeparableConv2D": [*_DW_CONV, *_DW, "pointwise_regularizer", "pointwise_constraint"],
    "Dense": [*_REG, "quantization_config"],
    "PReLU": ["alpha_regularizer", "alpha_constraint"],
    "Dropout": ["seed"],
    "SpatialDropout2D": ["data_format", "seed"],
    "BatchNormalization": [
        *_NORM,
        "renorm",
        "renorm_clipping",
        "renorm_momentum",
        "synchronized",
    ],  # fmt: skip
    "LayerNormalization": [*_NORM, "rms_scaling"],
    **{c: ["data_format"] for c in CHANNELS_FIRST[4:] if c != "SpatialDropout2D"},
}


def _cases():
    out = []
    for cls, (_, _, args) in SWEEP.items():
        out.append(pytest.param(cls, {}, id=f"{cls}-defaults"))
        for arg, values in args.items():
            for v in values:
                out.append(pytest.param(cls, {arg: v}, id=f"{cls}-{arg}={v!r}".replace(" ", "")))
    return out


CASES = _cases()


def _plain(v):
    """Configs compared as JSON would hold them: tuples as lists."""
    if isinstance(v, (list, tuple)):
        return [_plain(e) for e in v]
    if isinstance(v, dict):
        return {k: _plain(e) for k, e in v.items()}
    return v


def _same(a, b) -> bool:
    """Equal, floats to float32's precision (Keras keeps a regularizer's factor in float32)."""
    if isinstance(a, float) and isinstance(b, (int, float)):
        return abs(a - b) <= 1e-7 * max(1.0, abs(a))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def _inputs(shapes, seed=0):
    rng = np.random.default_rng(seed)
    many = isinstance(shapes, list)
    xs = [(rng.standard_normal(s) * 2).astype(np.float32) for s in (shapes if many else [shapes])]
    return xs if many else xs[0]


def _batchless(shapes):
    return [(None, *s[1:]) for s in shapes] if isinstance(shapes, list) else (None, *shapes[1:])


def _numpy(keras, y):
    return [keras.ops.convert_to_numpy(t) for t in y] if isinstance(y, list) else keras.ops.convert_to_numpy(y)  # fmt: skip


def build_both(keras, cls, extra):
    """(Keras's layer, minicnn's, the input), both built on it and holding Keras's weights."""
    required, shapes, _ = SWEEP[cls]
    kwargs = {**required, **extra}
    x = _inputs(shapes)
    theirs = getattr(keras.layers, cls)(**kwargs)
    theirs(x)
    ours = getattr(layers, cls)(**kwargs)
    ours(x)
    ours.set_weights(theirs.get_weights())
    return theirs, ours, x


def divergences(keras, cls, extra) -> list[str]:
    """What minicnn's layer does differently from Keras's, in words (empty: nothing)."""
    theirs, ours, x = build_both(keras, cls, extra)
    found = []
    shapes = SWEEP[cls][1]
    want = _plain(theirs.compute_output_shape(_batchless(shapes)))
    got = _plain(ours.compute_output_shape(_batchless(shapes)))
    if got != want:
        found.append(f"compute_output_shape {got} != Keras's {want}")
    kw = [(w.name, tuple(w.shape)) for w in theirs.weights]
    ow = [(w.name, tuple(w.shape)) for w in ours.weights]
    if kw != ow:
        found.append(f"weights {ow} != Keras's {kw}")
    ck, co = _plain(theirs.get_config()), _plain(ours.get_config())
    for key in sorted(set(ck) & set(co) - {"name"}):
        if not _same(ck[key], co[key]):
            found.append(f"config[{key!r}] {co[key]!r} != Keras's {ck[key]!r}")
    modes = [False] if cls in RANDOM else [False, True]
    for training in modes:
        want = _numpy(keras, theirs(x, training=training))
        got = ours(x, training=training)
        for w, g in zip(*((want, got) if isinstance(want, list) else ([want], [got]))):
            g = np.asarray(g)
            if g.shape != w.shape:
                found.append(f"training={training}: output shape {g.shape} != Keras's {w.shape}")
            elif not np.allclose(g, w, rtol=1e-5, atol=1e-5):
                err = np.abs(g - w).max()
                found.append(f"training={training}: output differs from Keras's by up to {err:.3g}")
        for (name, _), kv, ov in zip(kw, theirs.get_weights(), ours.get_weights()):
            if kv.shape == ov.shape and not np.allclose(kv, ov, rtol=1e-5, atol=1e-6):
                found.append(
                    f"training={training}: weight {name} after the call differs from Keras's"
                )
    return found


def _construct_and_build(cls, extra):
    required, shapes, _ = SWEEP[cls]
    layer = getattr(layers, cls)(**{**required, **extra})
    layer(_inputs(shapes))


@pytest.mark.parametrize("cls, extra", CASES)
def test_layer_matches_keras(request, cls, extra):
    keras = keras_referee()
    case = request.node.callspec.id
    if case in REFUSED:
        what = REFUSED[case].removeprefix("at build: ")
        if REFUSED[case].startswith("at build: "):
            getattr(layers, cls)(**{**SWEEP[cls][0], **extra})  # taken; refused once built
        with pytest.raises(ValueError, match=what.replace("(", r"\(")):
            _construct_and_build(cls, extra)
        if case != "BatchNormalization-synchronized=True":  # Keras takes it on TensorFlow only
            _construct_and_build_keras(keras, cls, extra)  # Keras takes what minicnn refuses
        return
    assert divergences(keras, cls, extra) == []


def _construct_and_build_keras(keras, cls, extra):
    required, shapes, _ = SWEEP[cls]
    layer = getattr(keras.layers, cls)(**{**required, **extra})
    if extra.get("data_format") == "channels_first" and cls.startswith(("Conv", "Depthwise", "Separable")):  # fmt: skip
        return  # torch's CPU convolutions in channels-first need no run to show Keras takes it
    layer(_inputs(shapes))


def test_every_layer_class_is_swept():
    """Every class minicnn.layers exports is in the sweep (or is an alias of one, or is not a
    layer Keras builds from arguments), and its aliases are Keras's."""
    keras = keras_referee()
    names = sorted(n for n in dir(layers) if n[0].isupper())
    not_swept = {"Input", "InputLayer", "KerasTensor", "Lambda", "Layer", "Node"}
    for n in names:
        if n in not_swept:
            continue
        ours = getattr(layers, n)
        assert ours.__name__ in SWEEP, n
        assert getattr(keras.layers, n).__name__ == ours.__name__  # an alias of the same class


@pytest.mark.parametrize("cls", sorted(SWEEP))
def test_config_keys_are_kerass(cls):
    """minicnn's config writes Keras's keys, but for the gaps listed in CONFIG_GAPS."""
    keras = keras_referee()
    theirs, ours, _ = build_both(keras, cls, {})
    missing = set(theirs.get_config()) - set(ours.get_config()) - {"dtype"}
    assert sorted(missing) == sorted(CONFIG_GAPS.get(cls, []))
    extra = set(ours.get_config()) - set(theirs.get_config())
    assert extra <= {"trainable"}  # Keras's SpatialDropout2D leaves it out


@pytest.mark.parametrize("rate", [0.25, 0.5])
@pytest.mark.parametrize("cls", ["Dropout", "SpatialDropout2D"])
def test_dropout_statistics_are_kerass(cls, rate):
    """Training: each value (Dropout) or each image's channel (SpatialDropout2D) zeroed with
    probability rate, the rest scaled by 1 / (1 - rate), in both; inference: the identity."""
    keras = keras_referee()
    x = np.abs(_inputs((8, 6, 6, 16))) + 0.5
    for layer, to_numpy in ((getattr(layers, cls)(rate), np.asarray), (getattr(keras.layers, cls)(rate), keras.ops.convert_to_numpy)):  # fmt: skip
        np.testing.assert_array_equal(to_numpy(layer(x, training=False)), x)
        y = to_numpy(layer(x, training=True))
        kept = y != 0
        np.testing.assert_allclose(y[kept], x[kept] / (1 - rate), rtol=1e-6)
        if cls == "SpatialDropout2D":
            assert (kept == kept[:, :1, :1, :]).all()  # whole channels
            kept = kept[:, 0, 0, :]
        assert abs((1 - kept.mean()) - rate) < 4 * np.sqrt(rate * (1 - rate) / kept.size)


@pytest.mark.parametrize("cls", sorted(DRAWN))
def test_augmentations_draw_as_keras_does(cls):
    """With the default factors: training moves the image (both), inference leaves it; the
    spread of the change is Keras's to within a factor of 2 over a batch of 256 (over 16, the
    brightness's mean change, set by how many of 16 draws were positive, fell outside it)."""
    keras = keras_referee()
    required = DRAWN[cls]
    x = _inputs((256, 12, 12, 3))
    change = []
    for layer, to_numpy in ((getattr(layers, cls)(**required), np.asarray), (getattr(keras.layers, cls)(**required), keras.ops.convert_to_numpy)):  # fmt: skip
        np.testing.assert_array_equal(to_numpy(layer(x, training=False)), x)
        y = to_numpy(layer(x, training=True))
        assert y.shape == x.shape
        change.append(np.abs(y - x).mean())
    assert change[1] > 0 and 0.5 < change[0] / change[1] < 2, change


# -- activations, by every name Keras knows -----------------------------------------------------

X = np.array([[-1e4, -100, -20, -5, -1.5, -1, -0.5, -1e-3, 0, 1e-3, 0.5, 1, 1.5, 3, 5, 6, 20, 80]], np.float32)  # fmt: skip


def _keras_activation_names():
    os.environ["KERAS_BACKEND"] = "torch"
    try:
        from keras.src.activations import ALL_OBJECTS_DICT
    except ImportError:  # no referee: the test itself fails in keras_referee
        return ["relu"]
    return sorted(ALL_OBJECTS_DICT)


@pytest.mark.parametrize("name", _keras_activation_names())
def test_activation_matches_keras(name):
    """activations.get(name) gives Keras's values on negative, zero and large inputs, or is
    refused naming it."""
    keras = keras_referee()
    theirs = keras.activations.get(name)
    try:
        ours = activations.get(name)
    except ValueError as e:
        assert repr(name) in str(e)
        return
    x = np.concatenate([X, X[:, ::-1] * 0.37], axis=0)  # softmax: rows of different spread
    want = keras.ops.convert_to_numpy(theirs(x))
    got = np.asarray(ours(x))
    # squareplus's x + sqrt(x^2 + b) cancels for x << 0: the same formula, rounded by torch
    # and by NumPy, differs there by a few float32 ulps of x
    atol = 5e-6 if name == "squareplus" else 1e-6
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=atol)


# -- the initialisers each layer uses by default ----------------------------------------------

BIG = {  # class -> (required arguments, input shape): weights large enough for statistics
    "Conv2D": ({"filters": 64, "kernel_size": 3}, (1, 8, 8, 48)),
    "Conv2DTranspose": ({"filters": 48, "kernel_size": 3}, (1, 8, 8, 64)),
    "DepthwiseConv2D": ({"kernel_size": 5, "depth_multiplier": 8}, (1, 8, 8, 128)),
    "SeparableConv2D": (
        {"filters": 96, "kernel_size": 5, "depth_multiplier": 4},
        (1, 8, 8, 96),
    ),  # fmt: skip
    "Dense": ({"units": 200}, (1, 300)),
    "PReLU": ({}, (1, 30, 30, 8)),
    "BatchNormalization": ({}, (1, 2, 2, 300)),
    "LayerNormalization": ({}, (1, 2, 2, 300)),
}


@pytest.mark.parametrize("cls", sorted(BIG))
def test_default_initialisers_are_kerass(cls):
    """Each weight's default draw has Keras's mean and standard deviation (and range)."""
    keras = keras_referee()
    required, shape = BIG[cls]
    x = np.zeros(shape, np.float32)
    theirs = getattr(keras.layers, cls)(**required)
    theirs(x)
    minicnn.utils.set_random_seed(7)
    ours = getattr(layers, cls)(**required)
    ours(x)
    for w, k, o in zip(theirs.weights, theirs.get_weights(), ours.get_weights()):
        assert k.shape == o.shape, w.name
        n = k.size
        assert abs(o.mean() - k.mean()) < 6 * max(k.std(), 1e-12) / np.sqrt(n), w.name
        assert abs(o.std() - k.std()) <= 0.06 * k.std() + 1e-12, w.name
        assert o.min() >= k.min() - 0.05 * k.std() - 1e-12 and o.max() <= k.max() + 0.05 * k.std() + 1e-12, w.name  # fmt: skip
