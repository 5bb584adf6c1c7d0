"""CuPy and NumPy give the same model: same seeded start, same forward and backward results,
files that move between devices. Skipped where there is no GPU."""

import numpy as np
import pytest

import minicnn
from minicnn import Sequential, backend
from minicnn.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from minicnn.utils import set_random_seed, to_categorical

try:
    backend.get_backend("cupy")
    GPU = None
except RuntimeError as e:
    GPU = str(e)

pytestmark = pytest.mark.skipif(GPU is not None, reason=f"no GPU: {GPU}")


def model_on(name, seed=3):
    set_random_seed(seed)
    return Sequential(
        [
            Conv2D(16, 3, activation="relu", padding="same", input_shape=(12, 12, 1)),
            MaxPooling2D(),
            Conv2D(8, 3, strides=2, activation="relu"),
            Flatten(),
            Dropout(0.0),
            Dense(10, activation="softmax"),
        ],
        backend=name,
    )


def test_same_seed_same_start_on_both_devices():
    for a, b in zip(model_on("numpy").get_weights(), model_on("cupy").get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-10), ("float32", 1e-4)])
def test_forward_backward_agree(rng, dtype, tol):
    minicnn.set_floatx(dtype)
    x = rng.random((8, 12, 12, 1)).astype(dtype)
    y = to_categorical(rng.integers(0, 10, 8), 10, dtype=dtype)
    results = []
    for name in ("numpy", "cupy"):
        model = model_on(name)
        model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
        model.train_on_batch(x, y)  # forward, backward and one Adam step
        results.append((model.get_weights(), model.predict(x, verbose=0)))
    (w_cpu, p_cpu), (w_gpu, p_gpu) = results
    for a, b in zip(w_cpu, w_gpu):
        assert np.linalg.norm(a - b) <= tol * np.linalg.norm(a)
    assert np.linalg.norm(p_cpu - p_gpu) <= tol * np.linalg.norm(p_cpu)


def test_save_on_gpu_load_on_cpu_and_back(tmp_path, rng):
    x = rng.random((5, 12, 12, 1)).astype("float32")
    gpu = model_on("cupy")
    gpu.compile("adam", "sparse_categorical_crossentropy")
    gpu.fit(x, np.arange(5), epochs=2, verbose=0)
    gpu.save(tmp_path / "m.minicnn")
    cpu = minicnn.load_model(tmp_path / "m.minicnn", backend="numpy")
    np.testing.assert_allclose(
        cpu.predict(x, verbose=0), gpu.predict(x, verbose=0), rtol=1e-4, atol=1e-6
    )
    cpu.save(tmp_path / "c.minicnn")
    back = minicnn.load_model(tmp_path / "c.minicnn", backend="cupy")
    for a, b in zip(back.get_weights(), gpu.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_training_keeps_everything_on_the_gpu(rng):
    import cupy

    model = model_on("cupy")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(
        rng.random((64, 12, 12, 1)).astype("float32"), rng.integers(0, 10, 64), epochs=1, verbose=0
    )
    layers = model.trainable_layers()
    for array in [p for layer in layers for p in layer.params.values()] + [
        s for slot in model.optimizer.slots for s in slot.values()
    ]:
        assert isinstance(array, cupy.ndarray)
    assert isinstance(model.predict(rng.random((3, 12, 12, 1)), verbose=0), np.ndarray)
