"""Datasets with Keras's interface: ``mnist.load_data()``."""

from minicnn.datasets import mnist

__all__ = ["mnist"]
