import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))  # for the gradcheck helper

import minicnn  # noqa: E402
from minicnn import backend  # noqa: E402
from minicnn.utils import set_random_seed  # noqa: E402


def _backends():
    names = ["numpy"]
    try:
        backend.get_backend("cupy")
        names.append("cupy")
    except RuntimeError as e:
        names.append(pytest.param("cupy", marks=pytest.mark.skip(reason=str(e))))
    return names


BACKENDS = _backends()


@pytest.fixture(params=BACKENDS)
def backend_name(request):
    """Each test that takes this runs once per backend; CuPy cases skip without a GPU."""
    return request.param


@pytest.fixture
def xp(backend_name):
    return backend.get_backend(backend_name).xp


@pytest.fixture(autouse=True)
def _fresh_state():
    """Every test starts with float32, a fixed seed and the default backend."""
    set_random_seed(1234)
    yield
    minicnn.set_floatx("float32")
    backend._default_backend = None


@pytest.fixture(
    params=[
        "im2col",
        "shifted",
        "shifted-chunked",
        "winograd",
        "winograd-chunked",
        "direct",
        "space_to_depth",
        "taps",
    ]
)
def conv_algorithm(request, monkeypatch):
    """Runs a convolution test once per algorithm (shifted: stride 1; winograd: 3x3 stride 1;
    direct: any; space_to_depth: stride 2; taps: stride 1, pads under the kernel size; other geometries fall back to im2col); "-chunked" makes every image its own chunk, as large
    batches are cut."""
    from minicnn.maths import geometry

    monkeypatch.setenv("MINICNN_CONV", request.param.split("-")[0])
    if request.param.endswith("chunked"):
        monkeypatch.setattr(geometry, "CHUNK_BYTES", 1)
    return request.param


@pytest.fixture
def float64():
    minicnn.set_floatx("float64")
    yield
    minicnn.set_floatx("float32")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def pytest_terminal_summary(terminalreporter):
    from gradcheck import WORST

    if WORST:
        err, what = max(WORST)
        terminalreporter.write_line(
            f"gradient checks: {len(WORST)}, worst relative error {err:.2e} ({what})"
        )


@pytest.fixture(scope="session")
def seed_model_file(tmp_path_factory):
    """The seed model, compiled and saved once for every test that needs a model file."""
    from minicnn.cli import build_seed_model

    path = tmp_path_factory.mktemp("model") / "model.minicnn"
    model = build_seed_model()
    model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    model.save(path)
    return path
