"""Layers, with Keras's names and arguments."""

from minicnn.layers.base import Layer
from minicnn.layers.convolutional import Conv2D, MaxPooling2D
from minicnn.layers.core import (
    Activation,
    Dense,
    Dropout,
    Flatten,
    Input,
    InputLayer,
    ReLU,
    Softmax,
)

Convolution2D = Conv2D
MaxPool2D = MaxPooling2D

__all__ = [
    "Layer",
    "Input",
    "InputLayer",
    "Conv2D",
    "Convolution2D",
    "MaxPooling2D",
    "MaxPool2D",
    "Dense",
    "Flatten",
    "Activation",
    "ReLU",
    "Softmax",
    "Dropout",
]

_REGISTRY = {
    cls.__name__: cls
    for cls in (
        InputLayer,
        Conv2D,
        MaxPooling2D,
        Dense,
        Flatten,
        Activation,
        ReLU,
        Softmax,
        Dropout,
    )
}


def deserialize(entry: dict) -> Layer:
    """A layer from ``{"class_name": ..., "config": {...}}`` (what saved models hold)."""
    name = entry.get("class_name")
    if name not in _REGISTRY:
        raise ValueError(f"Unknown layer type {name!r}: expected one of {sorted(_REGISTRY)}")
    return _REGISTRY[name].from_config(dict(entry.get("config", {})))
