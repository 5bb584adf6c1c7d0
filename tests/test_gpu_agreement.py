"""The CUDA path computes what the NumPy one does.

- Kernel by kernel, on two devices: ``gpu`` (kernels/cuda.py on CuPy; skipped without a GPU)
  and ``host``: the same cuda.py and .cu sources with CuPy replaced by the stand-in of
  test_cuda_compile.py, whose RawModule compiles the kernels as host C++ (g++) and runs each
  launch as one thread, after checking its arguments against the kernel's C++ signature. The
  host run proves the wrappers, the index maths and the formulas; what only a GPU shows (races,
  shared memory, atomics, the compiler's contractions) needs the ``gpu`` cases. The reference
  is minicnn/maths' array code.
- Model by model (GPU only): the same seeded start, forward and backward results, files that
  move between devices.
"""

import shutil

import numpy as np
import pytest
from test_cuda_compile import cuda_on_host

import minicnn
from minicnn import Sequential, backend, kernels, maths
from minicnn.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from minicnn.maths import normalization
from minicnn.utils import set_random_seed, to_categorical

try:
    backend.get_backend("cupy")
    GPU = None
except RuntimeError as e:
    GPU = str(e)

needs_gpu = pytest.mark.skipif(GPU is not None, reason=f"no GPU: {GPU}")
TOL = {"float64": 1e-12, "float32": 1e-5}


class Device:
    def __init__(self, name, cuda, to_device, to_host):
        self.name, self.cuda, self.put, self.get = name, cuda, to_device, to_host


@pytest.fixture(scope="module", params=["host", "gpu"])
def dev(request, tmp_path_factory):
    if request.param == "gpu":
        if GPU is not None:
            pytest.skip(f"no GPU: {GPU}")
        import cupy
        from minicnn.kernels import cuda

        return Device("gpu", cuda, cupy.asarray, cupy.asnumpy)
    if shutil.which("g++") is None:
        pytest.skip("no g++ to build the CUDA kernels for the host")
    return Device("host", cuda_on_host(tmp_path_factory.mktemp("cuda-host")), np.asarray, np.asarray)  # fmt: skip


@pytest.fixture
def reference(monkeypatch):
    """minicnn.maths as plain NumPy array code (no kernel)."""
    monkeypatch.setenv("MINICNN_KERNELS", "numpy")
    return maths


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return request.param


def close(dev, got, want, dtype, factor=1.0):
    got, want = np.asarray(dev.get(got), np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    err = np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30)
    assert err <= factor * TOL[str(dtype)], f"relative error {err:.2e}"


# -- kernel by kernel -----------------------------------------------------------------------------


@pytest.mark.parametrize("k,s,padding", [((3, 3), (1, 1), "same"), ((2, 3), (2, 1), "valid")])
def test_windows(dev, reference, rng, dtype, k, s, padding):
    """im2col and col2im, max pooling forward (values and winners) and backward."""
    x = rng.standard_normal((3, 9, 8, 5)).astype(dtype)
    pads = maths.padding_amounts(9, 8, *k, *s, padding)
    col = dev.cuda.im2col(dev.put(x), *k, *s, pads)
    np.testing.assert_array_equal(dev.get(col), reference.im2col(x, *k, *s, pads))
    g = rng.standard_normal(col.shape).astype(dtype)
    close(dev, dev.cuda.col2im(dev.put(g), x.shape, *s, pads), reference.col2im(g, x.shape, *s, pads), dtype)  # fmt: skip
    y, arg = dev.cuda.maxpool_forward(dev.put(x), *k, *s, pads)
    ry, rarg = reference.maxpool_forward(x, *k, *s, pads)
    np.testing.assert_array_equal(dev.get(y), ry)
    np.testing.assert_array_equal(dev.get(arg), rarg)
    gy = rng.standard_normal(ry.shape).astype(dtype)
    gx = dev.cuda.maxpool_backward(dev.put(gy), arg, x.shape, *k, *s, pads)
    close(dev, gx, reference.maxpool_backward(gy, rarg, x.shape, *k, *s, pads), dtype)


def test_elementwise_loss_and_optimizer(dev, reference, rng, dtype):
    """bias + ReLU, ReLU's gradient, softmax cross-entropy, Adam and the moving average."""
    y0, b = rng.standard_normal((50, 7)).astype(dtype), rng.standard_normal(7).astype(dtype)
    want = reference.bias_relu(y0.copy(), b, True)
    close(dev, dev.cuda.bias_relu(dev.put(y0.copy()), dev.put(b), True), want, dtype)
    gy = rng.standard_normal(y0.shape).astype(dtype)
    np.testing.assert_array_equal(dev.get(dev.cuda.relu_backward(dev.put(gy), dev.put(want))), reference.relu_backward(gy, want))  # fmt: skip
    z = (rng.standard_normal((33, 10)) * 5).astype(dtype)
    t = np.eye(10, dtype=dtype)[rng.integers(0, 10, 33)]
    (loss, gz), (rloss, rgz) = dev.cuda.softmax_cross_entropy(dev.put(z), dev.put(t)), reference.softmax_cross_entropy(z, t)  # fmt: skip
    assert abs(float(loss) - float(rloss)) <= TOL[dtype] * abs(float(rloss))
    close(dev, gz, rgz, dtype)
    p, g, m, v = (rng.standard_normal(300).astype(dtype) for _ in range(4))
    v = np.abs(v)
    on_device = [dev.put(a.copy()) for a in (p, g, m, v)]
    dev.cuda.adam_update(*on_device, 1e-3, 0.9, 0.999, 1e-7)
    reference.adam_update(p, g, m, v, 1e-3, 0.9, 0.999, 1e-7)
    for got, want in zip(on_device, (p, g, m, v)):
        close(dev, got, want, dtype)
    ema = dev.put(m.copy())
    dev.cuda.ema_update(ema, dev.put(p), 0.99)
    reference.ema_update(m, p, 0.99)
    close(dev, ema, m, dtype)


def test_dropout_keeps_where_the_bits_say(dev, rng, dtype):
    """The same 32 bits per element give the CPU kernel's mask and output exactly, whether they
    come from the host (as maths.dropout draws them) or already lie on the device."""
    x = rng.standard_normal((6, 5, 7)).astype(dtype)
    threshold, scale = round(0.3 * 2**32), 1 / 0.7
    bits = rng.integers(0, 2**32, x.size).astype(np.uint32)
    bits[:3] = threshold - 1, threshold, threshold + 1  # dropped, kept, kept
    want_keep = (bits >= threshold).reshape(x.shape)
    want_y = np.where(want_keep, x * np.dtype(dtype).type(scale), 0)
    for given in (bits, dev.put(bits.view(np.int32))):  # CuPy's random_raw gives int32
        y, keep = dev.cuda.dropout(dev.put(x), given, threshold, scale)
        np.testing.assert_array_equal(dev.get(keep), want_keep)
        np.testing.assert_array_equal(dev.get(y), want_y)
    gy = rng.standard_normal(x.shape).astype(dtype)
    gx = dev.get(dev.cuda.dropout_backward(dev.put(gy), keep, scale))
    assert gx.dtype == dtype
    np.testing.assert_array_equal(gx, np.where(want_keep, gy * np.dtype(dtype).type(scale), 0))


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm(dev, reference, rng, dtype, relu, affine):
    """Training's forward (ReLU fused or not, gamma and beta or None) and backward through that
    ReLU's mask; inference's per-channel map; and the variance of data far from 0 against its
    spread, which one-pass moments not shifted by a sample would cancel (float64 as referee)."""
    x = (rng.standard_normal((700, 7)) * 3 + 1).astype(dtype)
    gamma = rng.uniform(0.5, 2, 7).astype(dtype) if affine else None
    beta = rng.standard_normal(7).astype(dtype) if affine else None
    put = lambda a: None if a is None else dev.put(a)  # noqa: E731
    got = dev.cuda.batchnorm_forward(dev.put(x), put(gamma), put(beta), 1e-3, relu)
    want = reference.batchnorm_forward(x, gamma, beta, 1e-3, relu)
    for a, b in zip(got, want):
        assert dev.get(a).dtype == dtype
        close(dev, a, b, dtype)
    if relu:
        assert 0.1 < (dev.get(got[0]) == 0).mean() < 0.9
    gy = rng.standard_normal(x.shape).astype(dtype)
    _, mean, _, inv_std = want
    got = dev.cuda.batchnorm_backward(dev.put(gy), dev.put(x), dev.put(mean), dev.put(inv_std), put(gamma), put(beta), relu)  # fmt: skip
    for a, b in zip(got, reference.batchnorm_backward(gy, x, mean, inv_std, gamma, beta, relu)):
        close(dev, a, b, dtype, factor=10)
    scale, shift = rng.uniform(0.5, 2, 7).astype(dtype), rng.standard_normal(7).astype(dtype)
    close(dev, dev.cuda.channel_affine(dev.put(x), dev.put(scale), dev.put(shift), relu), normalization.channel_affine(x, scale, shift, relu), dtype)  # fmt: skip
    far = (rng.standard_normal((300, 7)) * 0.01 + 1000).astype(dtype)
    var = dev.get(dev.cuda.batchnorm_forward(dev.put(far), None, None, 1e-8)[2])
    exact = far.astype(np.float64).var(axis=0)
    assert np.linalg.norm(var - exact) <= 1e-6 * np.linalg.norm(exact)


@pytest.mark.parametrize("fill_mode", ["constant", "nearest", "reflect", "mirror", "wrap"])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_affine_resample(dev, reference, rng, dtype, fill_mode, interpolation):
    """Forward against the array code; backward against its scatter-add and as the forward's
    adjoint, <resample(x), g> == <x, backward(g)>."""
    from minicnn.layers import RandomRotation, RandomZoom

    x = rng.standard_normal((4, 9, 7, 3)).astype(dtype)
    t = np.concatenate([RandomRotation(0.4).transforms(2, 9, 7), RandomZoom(0.5).transforms(2, 9, 7)]).astype(dtype)  # fmt: skip
    y = dev.cuda.affine_resample(dev.put(x), dev.put(t), interpolation, fill_mode, 0.0)
    close(dev, y, reference.affine_resample(x, t, interpolation, fill_mode, 0.0), dtype, factor=10)
    g = rng.standard_normal(x.shape).astype(dtype)
    gx = dev.cuda.affine_resample_backward(dev.put(g), dev.put(t), interpolation, fill_mode)
    close(dev, gx, reference.affine_resample_backward(g, t, interpolation, fill_mode), dtype, factor=10)  # fmt: skip
    lhs, rhs = np.vdot(dev.get(y), g), np.vdot(x, dev.get(gx))
    assert abs(lhs - rhs) <= 10 * TOL[dtype] * np.linalg.norm(x) * np.linalg.norm(g)


@pytest.mark.parametrize("m", [100, 4096 * 17 + 77])
def test_matmul_tn_and_sum_rows(dev, rng, dtype, m):
    a, b = rng.standard_normal((m, 9)).astype(dtype), rng.standard_normal((m, 7)).astype(dtype)
    close(dev, dev.cuda.matmul_tn(dev.put(a), dev.put(b)), a.T @ b, dtype, factor=10)
    close(dev, dev.cuda.sum_rows(dev.put(b)), b.sum(axis=0), dtype, factor=10)


def test_wrong_arguments_are_named(dev, rng):
    x = dev.put(rng.standard_normal((10, 4)).astype("float32"))
    with pytest.raises(ValueError, match="gamma must hold one value per channel"):
        dev.cuda.batchnorm_forward(x, dev.put(np.ones(3, "float32")), None, 1e-3)
    with pytest.raises(TypeError, match="float32 or float64"):
        dev.cuda.channel_affine(dev.put(np.ones((2, 4), "float16")), x[0], x[0])
    images = dev.put(np.zeros((2, 5, 5, 1), "float32"))
    with pytest.raises(ValueError, match="fill_mode must be one of"):
        dev.cuda.affine_resample(images, dev.put(np.zeros((2, 6))), "bilinear", "edge")
    with pytest.raises(ValueError, match=r"transforms must be \(2, 6\)"):
        dev.cuda.affine_resample(images, dev.put(np.zeros((3, 6))))
    with pytest.raises(ValueError, match="raw 32-bit values"):
        dev.cuda.dropout(x, np.zeros(5, np.uint32), 7, 2.0)


def test_the_stand_in_checks_each_launch(dev):
    """A launch whose arguments do not fit the kernel's C++ signature fails on the host: an
    untyped scalar (CuPy would pass 8 bytes for an int), a wrong dtype, one argument too few."""
    if dev.name != "host":
        pytest.skip("the stand-in's own check")
    ema, p = np.zeros(4, np.float32), np.ones(4, np.float32)
    one = (np.float32(0.5), np.float32(0.5))
    with pytest.raises(AssertionError, match="total must be a int32 scalar"):
        dev.cuda._launch("ema_update", ema.dtype, 4, np.int32, ema, p, 4, *one)
    with pytest.raises(AssertionError, match="p must be a contiguous float32 array"):
        dev.cuda._launch("ema_update", ema.dtype, 4, np.int32, ema, p.astype(np.float64), np.int32(4), *one)  # fmt: skip
    with pytest.raises(AssertionError, match="takes 5 arguments"):
        dev.cuda._launch("ema_update", ema.dtype, 4, np.int32, ema, p, np.int32(4), one[0])
    dev.cuda._launch("ema_update", ema.dtype, 4, np.int32, ema, p, np.int32(4), *one)
    np.testing.assert_array_equal(ema, 0.5)


# -- model by model (GPU only) --------------------------------------------------------------------


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


def augmented_bn_model_on(name, seed=5):
    """The BatchNorm + augmentation recipe in small: every new kernel on the way."""
    from minicnn.layers import BatchNormalization, RandomRotation, RandomZoom, ReLU

    set_random_seed(seed)
    return Sequential(
        [
            RandomRotation(0.05, input_shape=(12, 12, 1)),
            RandomZoom(0.1, fill_mode="constant"),
            Conv2D(8, 3, use_bias=False),
            BatchNormalization(),
            ReLU(),
            Conv2D(8, 5, strides=2, padding="same", use_bias=False),
            BatchNormalization(),
            ReLU(),
            Dropout(0.0),  # masks: test_dropout_keeps_where_the_bits_say
            Flatten(),
            Dense(10, activation="softmax"),
        ],
        backend=name,
    )


@needs_gpu
def test_same_seed_same_start_on_both_devices():
    for a, b in zip(model_on("numpy").get_weights(), model_on("cupy").get_weights()):
        np.testing.assert_array_equal(a, b)


@needs_gpu
@pytest.mark.parametrize("build", [model_on, augmented_bn_model_on], ids=["conv", "bn_augment"])
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-10), ("float32", 1e-4)])
def test_forward_backward_agree(rng, build, dtype, tol):
    minicnn.set_floatx(dtype)
    x = rng.random((8, 12, 12, 1)).astype(dtype)
    y = to_categorical(rng.integers(0, 10, 8), 10, dtype=dtype)
    results = []
    for name in ("numpy", "cupy"):
        model = build(name)
        model.compile(minicnn.optimizers.Adam(1e-3, use_ema=True), "categorical_crossentropy", metrics=["accuracy"])  # fmt: skip
        model.train_on_batch(x, y)  # forward, backward, one Adam step and the EMA
        model.train_on_batch(x, y)
        results.append((model.get_weights(), model.predict(x, verbose=0)))
    (w_cpu, p_cpu), (w_gpu, p_gpu) = results
    for a, b in zip(w_cpu, w_gpu):
        assert np.linalg.norm(a - b) <= tol * np.linalg.norm(a)
    assert np.linalg.norm(p_cpu - p_gpu) <= tol * np.linalg.norm(p_cpu)


@needs_gpu
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


@needs_gpu
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


@needs_gpu
def test_the_engine_finds_every_cuda_kernel():
    """On the GPU, lookup serves each op of cuda.OPS for both float types (nothing falls back
    to array code unnoticed), and the first calls compile every .cu file."""
    import cupy
    from minicnn.kernels import cuda

    for (op, _), fn in cuda.OPS.items():
        for dtype in (np.float32, np.float64):
            assert kernels.lookup(op, cupy, np.dtype(dtype)) is fn, op
