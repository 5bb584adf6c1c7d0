"""Choosing the backend, and the one-sentence errors where CuPy or a GPU is missing."""

import os
import subprocess
import sys
import types

import pytest

import minicnn
from minicnn import Sequential, backend
from minicnn.layers import Dense


@pytest.fixture
def no_cached_cupy(monkeypatch):
    monkeypatch.setattr(backend, "_cache", {k: v for k, v in backend._cache.items() if k != "cupy"})


def test_missing_cupy_is_one_clear_sentence(monkeypatch, no_cached_cupy):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy now raises ImportError
    with pytest.raises(
        RuntimeError, match=r"^CuPy is not installed: pip install 'minicnn\[gpu\]'$"
    ):
        Sequential(backend="cupy")


def test_missing_gpu_is_one_clear_sentence(monkeypatch, no_cached_cupy):
    def no_device():
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    fake = types.SimpleNamespace(
        cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_device))
    )
    monkeypatch.setitem(sys.modules, "cupy", fake)
    with pytest.raises(RuntimeError, match=r"^CuPy is installed but no CUDA device is visible$"):
        minicnn.set_backend("cupy")


def test_backend_from_environment_and_set_backend(monkeypatch):
    monkeypatch.setenv("MINICNN_BACKEND", "numpy")
    assert Sequential().backend.name == "numpy"
    monkeypatch.setenv("MINICNN_BACKEND", "tpu")
    with pytest.raises(ValueError, match="Received: backend='tpu'"):
        Sequential()
    minicnn.set_backend("numpy")  # an explicit choice wins over the variable
    assert Sequential([Dense(2, input_shape=(3,))]).backend.name == "numpy"


def test_floatx_round_trip():
    assert minicnn.floatx() == "float32"
    minicnn.set_floatx("float64")
    assert minicnn.floatx() == "float64"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
@pytest.mark.parametrize("setting, expected", [(None, "True"), ("system", "False")])
def test_allocator_tuning_and_its_opt_out(setting, expected):
    env = {k: v for k, v in os.environ.items() if k != "MINICNN_MALLOC"}
    if setting:
        env["MINICNN_MALLOC"] = setting
    out = subprocess.run(
        [sys.executable, "-c", "import minicnn._malloc as m; print(m.TUNED)"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.strip()
    assert out == expected
