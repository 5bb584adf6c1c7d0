"""The settings weighted layers share with Keras: each weight's regularizer and constraint
(``kernel_regularizer=``, ``bias_constraint=``, ...), and the arguments minicnn takes only at
their one supported value (``data_format="channels_last"``, ``dilation_rate=1``, ``groups=1``),
refused with a message naming them otherwise; and ``activity_regularizer``, a penalty on the
layer's output."""

from __future__ import annotations

import inspect

from minicnn import constraints, initializers, maths, regularizers
from minicnn.layers.base import Layer


class WeightOptions:
    """For a layer whose weights ``WEIGHTS`` (Keras's argument prefixes: "kernel", "bias",
    "depthwise", ...) take ``<prefix>_regularizer`` and ``<prefix>_constraint``."""

    WEIGHTS: tuple = ("kernel", "bias")

    def _init_weight_options(self, owner: str, settings: dict) -> None:
        """Read the ``<prefix>_regularizer`` / ``<prefix>_constraint`` entries of ``settings``
        (the __init__ arguments), and ``activity_regularizer`` (``ActivityPenalty``)."""
        self.activity_regularizer = regularizers.get(settings.get("activity_regularizer"), owner)
        for w in self.WEIGHTS:
            reg = regularizers.get(settings.get(f"{w}_regularizer"), owner)
            setattr(self, f"{w}_regularizer", reg)
            setattr(
                self, f"{w}_constraint", constraints.get(settings.get(f"{w}_constraint"), owner)
            )

    def weight_options(self, prefix: str) -> dict:
        """add_weight's ``regularizer=`` and ``constraint=`` for the weight of ``prefix``."""
        return {
            "regularizer": getattr(self, f"{prefix}_regularizer"),
            "constraint": getattr(self, f"{prefix}_constraint"),
        }

    def weight_options_config(self) -> dict:
        """The regularizers and constraints set, in Keras's serialized form (None ones left out:
        they are the defaults)."""
        config = {}
        for w in self.WEIGHTS:
            for kind, module in (("regularizer", regularizers), ("constraint", constraints)):
                value = getattr(self, f"{w}_{kind}")
                if value is not None:
                    config[f"{w}_{kind}"] = module.serialize(value)
        if self.activity_regularizer is not None:
            config["activity_regularizer"] = regularizers.serialize(self.activity_regularizer)
        return {**initializer_config(self), **config}


def initializer_config(layer) -> dict:
    """The layer's ``<weight>_initializer`` arguments, as Keras's config holds them
    (``initializers.serialize``); a function of the user's is left out: the weights it drew
    travel in the file, not its code."""
    config = {}
    for name in inspect.signature(type(layer).__init__).parameters:
        if not name.endswith("_initializer"):
            continue
        own, stem = getattr(layer, "initializers", {}), name.removesuffix("_initializer")
        init = getattr(layer, name, None) or own.get(stem) or own.get(f"{stem}_kernel")
        if init is None:
            continue
        value = initializers.serialize(init)
        if value is not None:
            config[name] = value
    return config


class ActivityPenalty(Layer):
    """Keras's activity regularization: what ``Layer.__call__`` adds with ``add_loss`` for a
    layer given ``activity_regularizer``, the regularizer of its output over the batch size
    (0 for an empty batch, Keras's divide_no_nan). The plan runs it as a node reading the
    layer's output, whose value joins the loss as add_loss terms do."""

    def __init__(self, owner):
        super().__init__(name=f"{owner.name}_activity_regularizer")
        self.owner, self.built = owner, True

    def forward(self, y, training=False):
        n = y.dtype.type(max(y.shape[0], 1))
        value = self.owner.activity_regularizer(y) / n
        return value.astype(y.dtype, copy=False), ((y, n) if training else None)

    def backward(self, g, ctx, need_gx=True):
        y, n = ctx
        return self.owner.activity_regularizer.gradient(y) * (g / n), {}

    def compute_output_shape(self, input_shape):
        return ()


def activity_penalty(layer):
    """The layer's ActivityPenalty (one per layer, made once), or None without a regularizer."""
    if getattr(layer, "activity_regularizer", None) is None:
        return None
    penalty = layer.__dict__.get("_activity_penalty")
    if penalty is None or penalty.owner is not layer:
        penalty = layer._activity_penalty = ActivityPenalty(layer)
    return penalty


def channels_last(data_format, owner: str) -> str:
    """Keras's data_format, which minicnn takes as None or "channels_last" only."""
    if data_format not in (None, "channels_last"):
        raise ValueError(
            f"{owner}: minicnn computes channels-last (N, H, W, C) only. Received: "
            f"data_format={data_format!r}"
        )
    return "channels_last"


def no_seed(seed, owner: str) -> None:
    """Keras's per-layer ``seed``, refused: minicnn draws every random layer's values from its
    one generator, so that a resumed run draws what the unbroken one would."""
    if seed is not None:
        raise ValueError(
            f"{owner}: a per-layer seed is not supported; minicnn draws from its one "
            f"generator (minicnn.utils.set_random_seed). Received: seed={seed!r}"
        )


def only_one(value, name: str, owner: str) -> None:
    """``dilation_rate`` (an int or a pair) and ``groups``: 1 is all minicnn computes."""
    ones = (1, (1, 1), [1, 1])
    if value not in ones:
        raise ValueError(f"{owner}: {name} other than 1 is not supported by minicnn. Received: {name}={value!r}")  # fmt: skip


def only_default(owner: str, **settings) -> None:
    """Keras arguments minicnn takes only at Keras's default: each ``name=(value, default)``
    other than its default is refused, naming it."""
    for name, (value, default) in settings.items():
        if value is not default and value != default:
            raise ValueError(f"{owner}: {name}={value!r} is not supported by minicnn. Received: {name}={value!r}")  # fmt: skip


def window_output(layer, input_shape, kernel_size, strides, padding) -> tuple:
    """(N, oH, oW) of a window of ``kernel_size`` slid by ``strides`` over an (N, H, W, C)
    input; a "valid" window larger than the image is refused, naming ``layer``."""
    n, h, w, _ = input_shape
    (kh, kw), (sy, sx) = kernel_size, strides
    if padding == "valid" and (h < kh or w < kw):
        raise ValueError(
            f'Layer "{layer.name}" ({type(layer).__name__}): a {tuple(kernel_size)} kernel with '
            f'padding="valid" needs an image at least that large. Received: input shape {input_shape}'
        )
    return (
        n,
        maths.conv_output_length(h, kh, sy, padding),
        maths.conv_output_length(w, kw, sx, padding),
    )
