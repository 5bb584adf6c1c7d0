"""Keras's names for classes in files: ``naming.to_snake_case``."""

from __future__ import annotations

import re


def snake_case(name: str) -> str:
    """Keras's ``naming.to_snake_case``: "Conv2D" -> "conv2d", "ReLU" -> "re_lu"."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
