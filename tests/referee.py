"""The real peers minicnn is checked against (PyTorch, ONNX Runtime, Keras): a test that needs
one skips where it is not installed, and fails in CI (MINICNN_REQUIRE_PEERS=1, which .ci/run
sets), where the referee must run."""

import importlib
import os

import pytest


def need(module: str):
    if os.environ.get("MINICNN_REQUIRE_PEERS") == "1":
        return importlib.import_module(module)
    return pytest.importorskip(module)


def keras_referee():
    """Keras 3 itself, on its torch backend (no TensorFlow needed), at the version the tests
    were written against."""
    os.environ["KERAS_BACKEND"] = "torch"
    keras = need("keras")
    assert keras.backend.backend() == "torch" and keras.__version__ == "3.15.1"
    return keras
