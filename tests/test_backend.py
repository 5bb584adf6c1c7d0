"""Choosing the backend, and the one-sentence errors where CuPy or a GPU is missing."""

import ctypes
import json
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
    code = "import minicnn; assert minicnn.tuning.applied() is None; print(minicnn.tuning.apply()['malloc'])"  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.strip()
    assert out == expected


_THREAD_VARS = (
    "OPENBLAS_THREAD_TIMEOUT",
    "GOMP_SPINCOUNT",
    "MINICNN_THREADS",
    "NUMBA_THREADING_LAYER",
)


def _thread_settings(code: str, **env_vars) -> dict:
    """What a fresh interpreter running ``code`` ends with: the two variables, and the threading
    layer numba started after one parallel kernel ran."""
    env = {k: v for k, v in os.environ.items() if k not in _THREAD_VARS}
    env.update(env_vars)
    probe = (
        f"{code}\n"
        "import json, os, numpy as np, numba\n"
        "from minicnn import maths\n"
        "maths.bias_relu(np.ones((4, 3), np.float32), None, True)\n"
        "print(json.dumps({k: os.environ.get(k) for k in "
        "('OPENBLAS_THREAD_TIMEOUT', 'GOMP_SPINCOUNT')} | {'layer': numba.threading_layer()}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(out.stdout)


def test_thread_pools_are_told_to_sleep_soon_unless_the_user_decided():
    """At its first kernel (here bias_relu), minicnn sets both spin limits and numba runs on
    OpenMP (or its own pool where libgomp is missing), whatever the import order (OpenBLAS is
    made to read it again: see test_openblas_takes_the_timeout_whatever_the_import_order); a
    user's value and MINICNN_THREADS=system are respected."""
    pytest.importorskip("numba")
    first = _thread_settings("import minicnn")
    assert first["OPENBLAS_THREAD_TIMEOUT"] == "4" and first["GOMP_SPINCOUNT"] == "10000"
    assert first["layer"] in ("omp", "workqueue")
    late = _thread_settings("import numpy, minicnn")
    assert late["OPENBLAS_THREAD_TIMEOUT"] == "4" and late["GOMP_SPINCOUNT"] == "10000"
    mine = _thread_settings("import minicnn", GOMP_SPINCOUNT="5", OPENBLAS_THREAD_TIMEOUT="9")
    assert mine["OPENBLAS_THREAD_TIMEOUT"] == "9" and mine["GOMP_SPINCOUNT"] == "5"
    off = _thread_settings("import minicnn", MINICNN_THREADS="system")
    assert off == {"OPENBLAS_THREAD_TIMEOUT": None, "GOMP_SPINCOUNT": None, "layer": "workqueue"}
    gomp = "import ctypes; ctypes.CDLL('libgomp.so.1'); import minicnn"  # loaded with its own spin
    try:
        early = _thread_settings(gomp)
    except subprocess.CalledProcessError:
        pytest.skip("no libgomp.so.1 here")
    assert early["layer"] == "workqueue"


def test_the_threading_layer_does_not_depend_on_what_touches_the_kernels_first():
    """numba's layer is decided when the kernels' module loads, from the spin limit minicnn
    sets: a process whose first brush with the kernels is a plan's algorithm choice, or a
    kernel lookup, gets the same layer as one that launches a kernel first. It got numba's own
    pool there (launches of 110-420 us against 3-5 us)."""
    pytest.importorskip("numba")
    try:
        ctypes.CDLL("libgomp.so.1")
    except OSError:
        pytest.skip("no libgomp.so.1 here")
    lookup = "import numpy as np\nfrom minicnn.maths import dispatch\ndispatch.lookup('conv_direct', np, np.dtype('float32'))"
    choice = "from minicnn import maths\nmaths.choose_algorithm((1, 9, 9, 8), (3, 3, 8, 8), (1, 1), (0,) * 4)"
    assert _thread_settings("import minicnn")["layer"] == "omp"
    assert _thread_settings(lookup)["layer"] == "omp"
    assert _thread_settings(choice)["layer"] == "omp"


_CONCURRENT = """
import threading, numpy as np, numba, minicnn as keras
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input(shape=(12, 12, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
    keras.layers.MaxPooling2D(2), keras.layers.Conv2D(16, 3, activation="relu"),
    keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])
x = np.random.default_rng(0).random((64, 12, 12, 1), dtype=np.float32)
model.compile("adam", "categorical_crossentropy")
y = np.eye(3, dtype=np.float32)[np.arange(64) % 3]
ref = model.predict(x, batch_size=16, verbose=0)
out, errors = [], []
def work(k):
    try:
        for _ in range(6):
            out.append(model.predict(x, batch_size=16, verbose=0))
            model.test_on_batch(x, y)
    except BaseException as e:
        errors.append(repr(e))
threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
[t.start() for t in threads]
[t.join() for t in threads]
assert not errors, errors
assert len(out) == 18 and all(np.array_equal(o, ref) for o in out)
print(numba.threading_layer())
"""


@pytest.mark.parametrize("layer", ["workqueue", "default"])
def test_kernels_from_several_threads_at_once(layer):
    """Three Python threads predicting and evaluating at once (a web server's, a user's pool)
    get the single-threaded answer, on every threading layer. numba's own "workqueue" pool,
    minicnn's where libgomp cannot be had, aborted the process on the second concurrent
    launch (SIGABRT) before the parallel kernels took a lock there."""
    pytest.importorskip("numba")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    if layer == "workqueue":
        env["NUMBA_THREADING_LAYER"] = "workqueue"
    run = subprocess.run([sys.executable, "-c", _CONCURRENT], capture_output=True, text=True, env=env)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert layer == "default" or run.stdout.split()[-1] == "workqueue"


def _openblas_timeout(code: str, **env) -> int | None:
    """OpenBLAS's own timeout setting after ``code``, as it reports it (None: no OpenBLAS)."""
    probe = (
        code + "\nimport ctypes, numpy\n"
        "paths = [l.split()[-1] for l in open('/proc/self/maps') if 'openblas' in l and '.so' in l]\n"
        "print(ctypes.CDLL(paths[0]).openblas_thread_timeout() if paths else -1)"
    )
    full = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_THREAD_TIMEOUT", "MINICNN_THREADS")}  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env={**full, **env},
        check=True,
    ).stdout.split()[-1]
    return None if out == "-1" else int(out)


_FIRST_USE = "minicnn.Sequential([minicnn.layers.Dense(2, input_shape=(3,))]).predict(numpy.ones((1, 3)), verbose=0)"  # fmt: skip


def test_openblas_takes_the_timeout_whatever_the_import_order():
    """What user scripts do (numpy first) gets the same OpenBLAS setting as minicnn first, from
    minicnn's first predict: OpenBLAS re-reads its environment; a user's own value and
    MINICNN_THREADS=system stay as they are."""
    first = _openblas_timeout(f"import minicnn, numpy\n{_FIRST_USE}")
    if first is None:
        pytest.skip("numpy's BLAS here is not OpenBLAS")
    assert first == 4
    assert _openblas_timeout(f"import numpy\nimport minicnn\n{_FIRST_USE}") == 4
    assert _openblas_timeout("import numpy") == 0  # untouched: OpenBLAS's default
    assert _openblas_timeout(f"import numpy\nimport minicnn\n{_FIRST_USE}", OPENBLAS_THREAD_TIMEOUT="9") == 9  # fmt: skip


def test_importing_minicnn_changes_nothing_in_the_process():
    """No side effect on import: no variable set, OpenBLAS left at its default, numba's
    threading layer not chosen, no settings applied; they come with the first use."""
    probe = (
        "import os, numpy, ctypes\nbefore = dict(os.environ)\nimport minicnn, numba\n"
        "paths = [l.split()[-1] for l in open('/proc/self/maps') if 'openblas' in l and '.so' in l]\n"
        "timeout = ctypes.CDLL(paths[0]).openblas_thread_timeout() if paths else 0\n"
        "print(dict(os.environ) == before, timeout, minicnn.tuning.applied(), numba.config.THREADING_LAYER)"
    )
    env = {k: v for k, v in os.environ.items() if k not in _THREAD_VARS}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)  # fmt: skip
    assert out.stdout.split() == ["True", "0", "None", "default"]
    assert _openblas_timeout("import numpy\nimport minicnn", MINICNN_THREADS="system") == 0
