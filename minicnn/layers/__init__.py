"""Layers, with Keras's names and arguments."""

from minicnn._missing import not_implemented
from minicnn.layers.activations import ELU, LeakyReLU, PReLU
from minicnn.layers.base import Layer
from minicnn.layers.color import RandomBrightness, RandomContrast
from minicnn.layers.convolutional import Conv2D
from minicnn.layers.core import (
    Activation,
    Dense,
    Dropout,
    Flatten,
    GaussianNoise,
    Identity,
    Input,
    InputLayer,
    Lambda,
    ReLU,
    Softmax,
    SpatialDropout2D,
)
from minicnn.layers.depthwise import DepthwiseConv2D, SeparableConv2D
from minicnn.layers.merging import (
    Add,
    Average,
    Concatenate,
    Maximum,
    Minimum,
    Multiply,
    Subtract,
    add,
    average,
    concatenate,
    maximum,
    minimum,
    multiply,
    subtract,
)
from minicnn.layers.node import KerasTensor, Node
from minicnn.layers.normalization import BatchNormalization, LayerNormalization, UnitNormalization
from minicnn.layers.pooling import (
    AveragePooling2D,
    GlobalAveragePooling2D,
    GlobalMaxPooling2D,
    MaxPooling2D,
)
from minicnn.layers.preprocessing import (
    RandomElasticTransform,
    RandomFlip,
    RandomRotation,
    RandomTranslation,
    RandomZoom,
    Rescaling,
)
from minicnn.layers.reshaping import (
    CenterCrop,
    Cropping2D,
    Permute,
    Reshape,
    UpSampling2D,
    ZeroPadding2D,
)
from minicnn.layers.transpose import Conv2DTranspose

Convolution2D = Conv2D
SeparableConvolution2D = SeparableConv2D
Convolution2DTranspose = Conv2DTranspose
MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D
GlobalAvgPool2D = GlobalAveragePooling2D
GlobalMaxPool2D = GlobalMaxPooling2D

_CLASSES = (
    InputLayer,
    Conv2D,
    Conv2DTranspose,
    DepthwiseConv2D,
    SeparableConv2D,
    MaxPooling2D,
    AveragePooling2D,
    GlobalAveragePooling2D,
    GlobalMaxPooling2D,
    Dense,
    Flatten,
    Reshape,
    ZeroPadding2D,
    Cropping2D,
    CenterCrop,
    UpSampling2D,
    Activation,
    ReLU,
    Softmax,
    LeakyReLU,
    ELU,
    PReLU,
    Dropout,
    SpatialDropout2D,
    BatchNormalization,
    LayerNormalization,
    UnitNormalization,
    Identity,
    GaussianNoise,
    Permute,
    Rescaling,
    RandomFlip,
    RandomContrast,
    RandomBrightness,
    RandomRotation,
    RandomTranslation,
    RandomZoom,
    RandomElasticTransform,
    Add,
    Subtract,
    Multiply,
    Average,
    Maximum,
    Minimum,
    Concatenate,
)
_REGISTRY = {cls.__name__: cls for cls in _CLASSES}

__all__ = [
    "Layer",
    "Input",
    "Lambda",
    "KerasTensor",
    "Node",
    "add",
    "subtract",
    "multiply",
    "average",
    "maximum",
    "minimum",
    "concatenate",
    "Convolution2D",
    "SeparableConvolution2D",
    "Convolution2DTranspose",
    "MaxPool2D",
    "AvgPool2D",
    "GlobalAvgPool2D",
    "GlobalMaxPool2D",
    *_REGISTRY,
]


def deserialize(entry: dict) -> Layer:
    """A layer from ``{"class_name": ..., "config": {...}}`` (what saved models hold)."""
    name = entry.get("class_name")
    if name not in _REGISTRY:
        raise ValueError(f"Unknown layer type {name!r}: expected one of {sorted(_REGISTRY)}")
    return _REGISTRY[name].from_config(dict(entry.get("config", {})))


__getattr__ = not_implemented("minicnn.layers", f"Layers available: {', '.join(sorted(_REGISTRY))}")
