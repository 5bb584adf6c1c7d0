"""Each built-in layer's config keys as Keras 3 writes them, in Keras's order (``layers``
reads and writes configs by this table). A plain key is one minicnn's layer takes too; a
``(key, value)`` pair is one minicnn's ``get_config`` may leave out (or has no argument for),
with Keras's default. ``tests/test_keras_files.py`` checks every row against Keras."""

from __future__ import annotations

_CL = ("data_format", "channels_last")
_NO_REG = tuple((k, None) for k in ("kernel_regularizer", "bias_regularizer"))
_NO_CON = tuple((k, None) for k in ("kernel_constraint", "bias_constraint"))
_AUG = (_CL,)
_MERGE: tuple = ()


class Spec:
    """One Keras layer class: its keys, whether Keras writes a build_config for it, and the
    call arguments Keras records on its nodes by default."""

    def __init__(self, keys, builds=False, call=None, optional=(), bare=False):
        self.keys = tuple(keys)
        self.bare = bare  # Keras's get_config is the layer's own: no trainable, dtype by name
        self.neutral = dict(k for k in self.keys if isinstance(k, tuple))
        self.neutral.update(optional)  # keys Keras writes only sometimes (LoRA, say)
        self.builds, self.call = builds, dict(call or {})


_INIT = ("kernel_initializer", "bias_initializer")
KERAS_LAYERS = {
    "Conv2D": Spec(
        [
            "filters",
            "kernel_size",
            "strides",
            "padding",
            _CL,
            ("dilation_rate", [1, 1]),
            ("groups", 1),
            "activation",
            "use_bias",
            *_INIT,
            *_NO_REG,
            ("activity_regularizer", None),
            *_NO_CON,
        ],
        builds=True,
    ),  # fmt: skip
    "Dense": Spec(
        [
            "units",
            "activation",
            "use_bias",
            *_INIT,
            *_NO_REG,
            *_NO_CON,
            ("quantization_config", None),
        ],
        builds=True,
        optional={"lora_rank": None, "lora_alpha": None, "activity_regularizer": None},
    ),  # fmt: skip
    "Flatten": Spec([_CL], builds=True),
    "Reshape": Spec(["target_shape"]),
    "CenterCrop": Spec([_CL, "height", "width"], builds=True, call={"training": True}),
    "Permute": Spec(["dims"], builds=True),
    "Identity": Spec([]),
    "GaussianNoise": Spec(["stddev", "seed"], call={"training": False}),
    "UnitNormalization": Spec(["axis"]),
    "Activation": Spec(["activation"]),
    "ReLU": Spec(["max_value", "negative_slope", "threshold"]),
    "Softmax": Spec([("axis", -1)], call={"mask": None}),
    "Dropout": Spec(["rate", ("seed", None), ("noise_shape", None)], call={"training": False}),
    "BatchNormalization": Spec(
        [
            "axis",
            "momentum",
            "epsilon",
            "center",
            "scale",
            "beta_initializer",
            "gamma_initializer",
            "moving_mean_initializer",
            "moving_variance_initializer",
            ("beta_regularizer", None),
            ("gamma_regularizer", None),
            ("beta_constraint", None),
            ("gamma_constraint", None),
            ("synchronized", False),
            ("renorm", False),
            ("renorm_clipping", None),
            ("renorm_momentum", 0.99),
        ],  # fmt: skip
        builds=True,
        call={"mask": None},
    ),
    "MaxPooling2D": Spec(["pool_size", "padding", "strides", _CL]),
    "AveragePooling2D": Spec(["pool_size", "padding", "strides", _CL]),
    "GlobalAveragePooling2D": Spec([_CL, "keepdims"]),
    "GlobalMaxPooling2D": Spec([_CL, "keepdims"]),
    "Rescaling": Spec(["scale", "offset"], builds=True),
    "RandomContrast": Spec(
        [*_AUG, "factor", "value_range", "seed"], builds=True, call={"training": True}
    ),
    "RandomBrightness": Spec(
        [*_AUG, "factor", "value_range", "seed"], builds=True, call={"training": True}
    ),
    "RandomFlip": Spec([*_AUG, "seed", "mode"], builds=True, call={"training": True}),
    "RandomRotation": Spec(
        [*_AUG, "factor", "fill_mode", "fill_value", "interpolation", "seed"],
        builds=True,
        call={"training": True},
    ),  # fmt: skip
    "RandomTranslation": Spec(
        [
            *_AUG,
            "height_factor",
            "width_factor",
            "fill_mode",
            "interpolation",
            "seed",
            "fill_value",
        ],
        builds=True,
        call={"training": True},
    ),  # fmt: skip
    "RandomZoom": Spec(
        [
            *_AUG,
            "height_factor",
            "width_factor",
            "fill_mode",
            "interpolation",
            "seed",
            "fill_value",
        ],
        builds=True,
        call={"training": True},
    ),  # fmt: skip
    "RandomElasticTransform": Spec(
        [
            *_AUG,
            "factor",
            "scale",
            "interpolation",
            "fill_mode",
            "fill_value",
            "value_range",
            "seed",
        ],
        builds=True,
        call={"training": True},
    ),  # fmt: skip
    **{
        k: Spec(_MERGE, builds=True)
        for k in ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")
    },  # fmt: skip
    "Concatenate": Spec(["axis"], builds=True),
    "Conv2DTranspose": Spec(
        [
            "filters",
            "kernel_size",
            "strides",
            "padding",
            "output_padding",
            _CL,
            ("dilation_rate", [1, 1]),
            "activation",
            "use_bias",
            *_INIT,
            *_NO_REG,
            ("activity_regularizer", None),
            *_NO_CON,
        ],
        builds=True,
    ),  # fmt: skip
    "DepthwiseConv2D": Spec(
        [
            "depth_multiplier",
            "kernel_size",
            "strides",
            "padding",
            _CL,
            ("dilation_rate", [1, 1]),
            "activation",
            "use_bias",
            "depthwise_initializer",
            "bias_initializer",
            ("depthwise_regularizer", None),
            ("bias_regularizer", None),
            ("activity_regularizer", None),
            ("depthwise_constraint", None),
            ("bias_constraint", None),
        ],
        builds=True,
    ),  # fmt: skip
    "SeparableConv2D": Spec(
        [
            "depth_multiplier",
            "filters",
            "kernel_size",
            "strides",
            "padding",
            _CL,
            ("dilation_rate", [1, 1]),
            "activation",
            "use_bias",
            "depthwise_initializer",
            "pointwise_initializer",
            "bias_initializer",
            ("depthwise_regularizer", None),
            ("pointwise_regularizer", None),
            ("bias_regularizer", None),
            ("activity_regularizer", None),
            ("depthwise_constraint", None),
            ("pointwise_constraint", None),
            ("bias_constraint", None),
        ],
        builds=True,
    ),  # fmt: skip
    "LayerNormalization": Spec(
        [
            "axis",
            "epsilon",
            "center",
            "scale",
            ("rms_scaling", False),
            "beta_initializer",
            "gamma_initializer",
            ("beta_regularizer", None),
            ("gamma_regularizer", None),
            ("beta_constraint", None),
            ("gamma_constraint", None),
        ],
        builds=True,
    ),  # fmt: skip
    "PReLU": Spec(
        [
            "alpha_initializer",
            ("alpha_regularizer", None),
            ("alpha_constraint", None),
            "shared_axes",
        ],
        builds=True,
    ),  # fmt: skip
    "ELU": Spec(["alpha"]),
    "LeakyReLU": Spec(["negative_slope"]),
    "SpatialDropout2D": Spec(["rate", ("seed", None), _CL], call={"training": False}, bare=True),
    "UpSampling2D": Spec(["size", _CL, "interpolation"], builds=True),
    "ZeroPadding2D": Spec(["padding", _CL], builds=True),
    "Cropping2D": Spec(["cropping", _CL], builds=True),
}
