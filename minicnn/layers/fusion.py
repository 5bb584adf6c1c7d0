"""Which layers a Sequential runs as one step: the fusions that save whole passes over the
activations, decided from the layer list alone. The layers' own forward and backward do the
work (``relu=`` on BatchNormalization, ``affine=`` and ``relu=`` on Conv2D)."""

from __future__ import annotations

from minicnn import activations
from minicnn.layers.base import Layer
from minicnn.layers.convolutional import Conv2D
from minicnn.layers.core import Activation, ReLU
from minicnn.layers.normalization import BatchNormalization


def fused_steps(layers, training: bool = True) -> list[tuple[Layer, dict]]:
    """The layers as the passes run them, (layer, what it takes over from the next ones):

    - a BatchNormalization that a plain ReLU layer follows applies the ReLU in its own
      output pass and masks its gradient by it ({"relu": True}); the ReLU layer is skipped;
    - at inference, a Conv2D without activation that a BatchNormalization follows takes
      the normalisation's scale and shift into its kernel and bias, and the ReLU after
      them into its output pass ({"affine": (scale, shift), "relu": ...}); both skipped.

    One pass over the activations instead of three; the values are those of the layers
    run one by one (to rounding, where folded)."""
    steps: list[tuple[Layer, dict]] = []
    for layer in layers:
        prev, extra = steps[-1] if steps else (None, {})
        relu = type(layer) in (Activation, ReLU) and isinstance(layer.activation, activations.ReLU)
        if relu and isinstance(prev, BatchNormalization) and not extra:
            steps[-1] = (prev, {"relu": True})
        elif relu and isinstance(prev, Conv2D) and "affine" in extra and not extra["relu"]:
            extra["relu"] = True
        elif (
            not training
            and isinstance(layer, BatchNormalization)
            and isinstance(prev, Conv2D)
            and not extra
            and prev.activation.name == "linear"
        ):
            steps[-1] = (prev, {"affine": layer.inference_affine(), "relu": False})
        else:
            steps.append((layer, {}))
            continue
        if relu:
            layer.y = None  # skipped: it holds nothing from an earlier pass
    return steps
