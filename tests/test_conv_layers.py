"""DepthwiseConv2D, SeparableConv2D and Conv2DTranspose: forward against the naive loops of
minicnn/maths/reference.py, the numba kernels against the array code in float32 and float64 on
odd shapes, every input and weight gradient by float64 finite differences, and PyTorch
(groups convolution, ConvTranspose2d) for the forward and the gradients."""

import numpy as np
import pytest
from gradcheck import build
from referee import need
from test_gradients import gradcheck_layer

import minicnn
from minicnn import Sequential, backend, kernels, maths
from minicnn.layers import Conv2DTranspose, Dense, DepthwiseConv2D, Flatten, SeparableConv2D
from minicnn.maths import reference
from minicnn.utils import set_random_seed


@pytest.fixture
def f64():
    minicnn.set_floatx("float64")
    yield
    minicnn.set_floatx("float32")


def shake_bias(layer, rng):
    if "bias" in layer.params:
        b = layer.params["bias"]
        b[...] = layer.xp.asarray(rng.standard_normal(b.shape))


# -- depthwise: the maths -----------------------------------------------------------------------

DEPTHWISE = [  # (kernel, strides, padding, depth multiplier)
    (3, 1, "same", 1),
    (3, 2, "valid", 1),
    ((3, 2), (2, 1), "same", 2),
    (5, 2, "same", 3),
    (1, 1, "valid", 2),
    (4, 3, "same", 1),
]


@pytest.mark.parametrize("k,s,padding,m", DEPTHWISE)
def test_depthwise_matches_a_naive_loop(backend_name, rng, f64, k, s, padding, m):
    be = backend.get_backend(backend_name)
    layer = DepthwiseConv2D(k, strides=s, padding=padding, depth_multiplier=m)
    x = rng.standard_normal((2, 9, 8, 3))
    build(layer, x.shape, be)
    shake_bias(layer, rng)
    kernel, bias = (be.to_numpy(layer.params[n]) for n in ("kernel", "bias"))
    expected = reference.depthwise_conv2d(x, kernel, bias, layer.strides, padding)
    np.testing.assert_allclose(be.to_numpy(layer(be.asarray(x))), expected, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "n,hw,c,m,k,s,padding",
    [(1, (13, 11), 5, 1, 3, 1, "same"), (7, (9, 14), 17, 1, 3, 2, "same"),
     (7, (11, 7), 33, 2, (5, 3), (1, 2), "valid"), (1, (6, 6), 3, 3, 2, 1, "valid")],
)  # fmt: skip
def test_depthwise_kernels_against_the_array_code(monkeypatch, rng, dtype, n, hw, c, m, k, s, padding):  # fmt: skip
    if kernels.lookup("depthwise_conv", np, np.dtype(dtype)) is None:
        pytest.skip("no numba kernel here")
    kh, kw = (k, k) if isinstance(k, int) else k
    sy, sx = (s, s) if isinstance(s, int) else s
    x = rng.standard_normal((n, *hw, c)).astype(dtype)
    kernel = rng.standard_normal((kh, kw, c, m)).astype(dtype)
    bias = rng.standard_normal(c * m).astype(dtype)
    pads = maths.padding_amounts(*hw, kh, kw, sy, sx, padding)

    def run():
        y, ctx = maths.depthwise_forward(x, kernel, bias, (sy, sx), pads)
        g = np.cos(np.arange(y.size, dtype=dtype)).reshape(y.shape)  # the same gy both times
        return (y, *maths.depthwise_backward(g, ctx))

    fast = run()
    monkeypatch.setenv("MINICNN_KERNELS", "numpy")
    slow = run()
    tol = 1e-12 if dtype == "float64" else 2e-5
    for what, a, b in zip(("y", "gx", "gkernel", "gbias"), fast, slow):
        assert a.dtype == dtype and a.shape == b.shape, what
        err = np.linalg.norm((a - b).astype(np.float64)) / np.linalg.norm(b.astype(np.float64))
        assert err <= tol, f"{what}: relative error {err:.2e}"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("relu", [False, True])
def test_fused_kernels_against_the_array_code(monkeypatch, rng, dtype, relu):
    """The depthwise convolution with its ReLU fused (one pass over gy for every gradient,
    masked by the output), and ReLU's gradient with the bias sums in one pass."""
    if kernels.lookup("depthwise_conv_backward", np, np.dtype(dtype)) is None:
        pytest.skip("no numba kernel here")
    x = rng.standard_normal((7, 9, 10, 17)).astype(dtype)
    kernel = rng.standard_normal((3, 3, 17, 2)).astype(dtype)
    bias = rng.standard_normal(34).astype(dtype)
    gy = rng.standard_normal((7, 5, 10, 34)).astype(dtype)
    pads = maths.padding_amounts(9, 10, 3, 3, 2, 1, "same")

    def run():
        y, ctx = maths.depthwise_forward(x, kernel, bias, (2, 1), pads, relu)
        return (y, *maths.depthwise_backward(gy, ctx), *maths.relu_backward_sum(gy.reshape(-1, 34), y.reshape(-1, 34)))  # fmt: skip

    fast = run()
    _, ctx = maths.depthwise_forward(x, kernel, bias, (2, 1), pads, relu)
    first = maths.depthwise_backward(gy, ctx, need_gx=False)  # a first layer's: no gx
    monkeypatch.setenv("MINICNN_KERNELS", "numpy")
    slow = run()
    assert first[0] is None
    np.testing.assert_array_equal(first[1], fast[2])  # the same sums, in the same order
    np.testing.assert_array_equal(first[2], fast[3])
    tol = 1e-12 if dtype == "float64" else 2e-5
    for what, a, b in zip(("y", "gx", "gkernel", "gbias", "g", "gsum"), fast, slow):
        assert a.dtype == dtype and a.shape == b.shape, what
        err = np.linalg.norm((a - b).astype(np.float64)) / np.linalg.norm(b.astype(np.float64))
        assert err <= tol, f"{what}: relative error {err:.2e}"
    if relu:
        assert (fast[0] == 0).mean() > 0.3  # the mask mattered


# -- depthwise and separable: gradients and PyTorch -------------------------------------------------


@pytest.mark.parametrize("k,s,padding,m", DEPTHWISE)
@pytest.mark.parametrize("activation", [None, "relu", "gelu"])
def test_depthwise_gradients(backend_name, rng, f64, k, s, padding, m, activation):
    layer = DepthwiseConv2D(
        k, strides=s, padding=padding, depth_multiplier=m, activation=activation
    )
    x = rng.standard_normal((2, 7, 6, 3))
    build(layer, x.shape, backend.get_backend(backend_name))
    shake_bias(layer, rng)
    gradcheck_layer(layer, x, backend_name, rng)


@pytest.mark.parametrize(
    "layer",
    [lambda: SeparableConv2D(4, 3), lambda: SeparableConv2D(5, 3, strides=2, padding="same", depth_multiplier=2, activation="relu"),
     lambda: SeparableConv2D(2, (2, 3), use_bias=False, activation="tanh"), lambda: DepthwiseConv2D(3, use_bias=False)],
    ids=["plain", "strided-m2-relu", "nobias-tanh", "depthwise-nobias"],
)  # fmt: skip
def test_separable_gradients(backend_name, rng, f64, layer):
    layer = layer()
    x = rng.standard_normal((2, 7, 8, 3))
    build(layer, x.shape, backend.get_backend(backend_name))
    shake_bias(layer, rng)
    gradcheck_layer(layer, x, backend_name, rng)


def _torch_same_pad(F, t, h, w, k, s, padding):
    top, bottom, left, right = maths.padding_amounts(h, w, k, k, s, s, padding)
    return F.pad(t, (left, right, top, bottom))  # TensorFlow's uneven "same"


@pytest.mark.parametrize("k,s,padding,m", [(3, 1, "same", 1), (3, 2, "same", 2), (5, 2, "valid", 1), (4, 2, "same", 1)])  # fmt: skip
def test_depthwise_and_separable_against_pytorch(rng, k, s, padding, m):
    torch = need("torch")
    F = torch.nn.functional
    x = rng.standard_normal((3, 10, 9, 4))
    minicnn.set_floatx("float64")
    try:
        dw = DepthwiseConv2D(k, strides=s, padding=padding, depth_multiplier=m)
        sep = SeparableConv2D(5, k, strides=s, padding=padding, depth_multiplier=m)
        for layer in (dw, sep):
            layer.maybe_build((None, *x.shape[1:]))
            shake_bias(layer, rng)
        results = []
        for layer in (dw, sep):
            y, ctx = layer.forward(x, training=True)
            g = rng.standard_normal(y.shape)
            results.append((y, g, *layer.backward(g, ctx)))
    finally:
        minicnn.set_floatx("float32")
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    # Keras's (kh, kw, C, M) is torch's groups=C weight (C*M, 1, kh, kw), channel c*M + m
    kd = torch.tensor(dw.params["kernel"].reshape(k, k, 4 * m).transpose(2, 0, 1)[:, None], requires_grad=True)  # fmt: skip
    bd = torch.tensor(dw.params["bias"], requires_grad=True)
    yt = F.conv2d(_torch_same_pad(F, xt, 10, 9, k, s, padding), kd, bd, stride=s, groups=4)
    y, g, gx, grads = results[0]
    yt.backward(torch.tensor(g.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), atol=1e-12)
    np.testing.assert_allclose(gx, xt.grad.numpy().transpose(0, 2, 3, 1), atol=1e-11)
    np.testing.assert_allclose(grads["kernel"], kd.grad.numpy()[:, 0].transpose(1, 2, 0).reshape(k, k, 4, m), atol=1e-10)  # fmt: skip
    np.testing.assert_allclose(grads["bias"], bd.grad.numpy(), atol=1e-10)
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    kd = torch.tensor(sep.params["depthwise_kernel"].reshape(k, k, 4 * m).transpose(2, 0, 1)[:, None], requires_grad=True)  # fmt: skip
    kp = torch.tensor(sep.params["pointwise_kernel"][0, 0].T[:, :, None, None].copy(), requires_grad=True)  # fmt: skip
    bp = torch.tensor(sep.params["bias"], requires_grad=True)
    yt = F.conv2d(F.conv2d(_torch_same_pad(F, xt, 10, 9, k, s, padding), kd, stride=s, groups=4), kp, bp)  # fmt: skip
    y, g, gx, grads = results[1]
    yt.backward(torch.tensor(g.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), atol=1e-12)
    np.testing.assert_allclose(gx, xt.grad.numpy().transpose(0, 2, 3, 1), atol=1e-11)
    np.testing.assert_allclose(grads["depthwise_kernel"], kd.grad.numpy()[:, 0].transpose(1, 2, 0).reshape(k, k, 4, m), atol=1e-10)  # fmt: skip
    np.testing.assert_allclose(grads["pointwise_kernel"][0, 0], kp.grad.numpy()[:, :, 0, 0].T, atol=1e-10)  # fmt: skip
    np.testing.assert_allclose(grads["bias"], bp.grad.numpy(), atol=1e-10)


def test_depthwise_and_separable_keras_weights_and_errors():
    dw = DepthwiseConv2D(3, depth_multiplier=2)
    dw.maybe_build((None, 8, 8, 5))
    assert [(n, w.shape) for n, w in zip(dw.weight_names, dw.get_weights())] == [("kernel", (3, 3, 5, 2)), ("bias", (10,))]  # fmt: skip
    sep = SeparableConv2D(7, 3)
    sep.maybe_build((None, 8, 8, 5))
    assert [(n, w.shape) for n, w in zip(sep.weight_names, sep.get_weights())] == [
        ("depthwise_kernel", (3, 3, 5, 1)), ("pointwise_kernel", (1, 1, 5, 7)), ("bias", (7,))]  # fmt: skip
    assert minicnn.layers.SeparableConvolution2D is SeparableConv2D
    with pytest.raises(ValueError, match="dilation_rate other than 1"):
        DepthwiseConv2D(3, dilation_rate=2)
    with pytest.raises(ValueError, match="data_format='channels_first'"):
        SeparableConv2D(4, 3, data_format="channels_first")
    with pytest.raises(ValueError, match="depth_multiplier must be a positive int"):
        DepthwiseConv2D(3, depth_multiplier=0)
    with pytest.raises(ValueError, match='padding="valid" needs an image at least that large'):
        Sequential([minicnn.Input((2, 2, 1)), DepthwiseConv2D(3)])


# -- Conv2DTranspose -----------------------------------------------------------------------------

TRANSPOSE = [  # (kernel, strides, padding, output_padding)
    (3, 2, "same", None),
    (3, 2, "valid", None),
    (2, 2, "same", None),
    (4, 2, "same", None),
    (2, 3, "valid", None),
    (3, 1, "same", None),
    (5, 2, "same", 1),
    (3, 2, "valid", 1),
    ((3, 2), (2, 1), "same", None),
]


@pytest.mark.parametrize("k,s,padding,op", TRANSPOSE)
def test_transpose_output_sizes_are_keras(k, s, padding, op):
    layer = Conv2DTranspose(2, k, strides=s, padding=padding, output_padding=op)
    kh, sy = (k, s) if isinstance(k, int) else (k[0], s[0])
    h = 7
    if op is None:  # Keras: input * stride ("same"), input * stride + max(k - stride, 0)
        want = h * sy if padding == "same" else h * sy + max(kh - sy, 0)
    else:  # (input - 1) * stride + k % 2 + output_padding, or + k + output_padding
        want = (h - 1) * sy + (kh % 2 if padding == "same" else kh) + op
    assert layer.compute_output_shape((None, 7, 7, 3))[1] == want


@pytest.mark.parametrize("k,s,padding,op", TRANSPOSE)
def test_transpose_against_pytorch_and_a_scatter_loop(rng, k, s, padding, op):
    """PyTorch's full transposed convolution (no padding), cropped where TensorFlow's "same"
    padding of the adjoint convolution starts: forward and every gradient."""
    torch = need("torch")
    F = torch.nn.functional
    x = rng.standard_normal((2, 5, 6, 3))
    minicnn.set_floatx("float64")
    try:
        layer = Conv2DTranspose(4, k, strides=s, padding=padding, output_padding=op)
        layer.maybe_build((None, 5, 6, 3))
        shake_bias(layer, rng)
        y, ctx = layer.forward(x, training=True)
        g = rng.standard_normal(y.shape)
        gx, grads = layer.backward(g, ctx)
    finally:
        minicnn.set_floatx("float32")
    top, _, left, _ = layer.pads(5, 6)
    kernel, bias = layer.params["kernel"], layer.params["bias"]
    np.testing.assert_allclose(y, reference.conv2d_transpose(x, kernel, bias, layer.strides, y.shape[1:3], (top, left)), atol=1e-12)  # fmt: skip
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    kt = torch.tensor(kernel.transpose(3, 2, 0, 1).copy(), requires_grad=True)  # (C, F, kh, kw)
    bt = torch.tensor(bias, requires_grad=True)
    full = F.conv_transpose2d(xt, kt, stride=layer.strides)  # ((H-1)s + k, ...)
    oh, ow = y.shape[1:3]
    full = F.pad(full, (0, max(0, left + ow - full.shape[3]), 0, max(0, top + oh - full.shape[2])))
    yt = full[:, :, top : top + oh, left : left + ow] + bt[:, None, None]
    yt.backward(torch.tensor(g.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), atol=1e-12)
    np.testing.assert_allclose(gx, xt.grad.numpy().transpose(0, 2, 3, 1), atol=1e-11)
    np.testing.assert_allclose(grads["kernel"], kt.grad.numpy().transpose(2, 3, 1, 0), atol=1e-10)
    np.testing.assert_allclose(grads["bias"], bt.grad.numpy(), atol=1e-10)


@pytest.mark.parametrize("k,s,padding,op", TRANSPOSE)
@pytest.mark.parametrize("activation", [None, "relu"])
def test_transpose_gradients(backend_name, conv_algorithm, rng, f64, k, s, padding, op, activation):
    """Every convolution algorithm runs the backward pass (a Conv2D of gy)."""
    layer = Conv2DTranspose(3, k, strides=s, padding=padding, output_padding=op, activation=activation)  # fmt: skip
    x = rng.standard_normal((2, 4, 5, 2))
    build(layer, x.shape, backend.get_backend(backend_name))
    shake_bias(layer, rng)
    gradcheck_layer(layer, x, backend_name, rng, k=30)


def test_transpose_keras_weights_names_and_errors():
    layer = Conv2DTranspose(6, 3, strides=2, padding="same")
    layer.maybe_build((None, 7, 7, 4))
    assert [w.shape for w in layer.get_weights()] == [(3, 3, 6, 4), (6,)]  # (kh, kw, filters, C)
    assert layer.name.startswith("conv2d_transpose")
    assert minicnn.layers.Convolution2DTranspose is Conv2DTranspose
    with pytest.raises(ValueError, match="each less than its stride"):
        Conv2DTranspose(2, 3, strides=2, output_padding=2)
    with pytest.raises(ValueError, match="maps back to"):  # TensorFlow refuses it too
        Conv2DTranspose(2, 2, strides=2, padding="same", output_padding=0).compute_output_shape((None, 5, 5, 1))  # fmt: skip
    with pytest.raises(ValueError, match="dilation_rate other than 1"):
        Conv2DTranspose(2, 3, dilation_rate=(2, 2))


def test_a_decoder_trains(rng):
    set_random_seed(2)
    model = Sequential([
        minicnn.Input((4, 4, 3)),
        Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu"),
        DepthwiseConv2D(3, padding="same", activation="relu"),
        SeparableConv2D(8, 3, strides=2, activation="relu"),
        Flatten(),
        Dense(2, activation="softmax"),
    ])  # fmt: skip
    model.compile(minicnn.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])  # fmt: skip
    x = rng.random((128, 4, 4, 3), dtype=np.float32)
    y = (x[..., 0].mean(axis=(1, 2)) > x[..., 1].mean(axis=(1, 2))).astype(int)
    history = model.fit(x, y, batch_size=16, epochs=15, verbose=0)
    assert history.history["loss"][-1] < 0.7 * history.history["loss"][0]
    assert max(history.history["accuracy"][-3:]) > 0.8


def test_the_three_layers_save_and_load(tmp_path, rng):
    set_random_seed(4)
    model = Sequential([
        minicnn.Input((5, 5, 2)),
        Conv2DTranspose(4, 3, strides=2, padding="same", output_padding=1, kernel_regularizer="l2"),
        DepthwiseConv2D((3, 2), depth_multiplier=2, activation="gelu", depthwise_constraint="non_neg"),
        SeparableConv2D(3, 2, strides=2, padding="same", pointwise_regularizer=minicnn.regularizers.L1(0.02)),
        Flatten(),
        Dense(2, activation="softmax"),
    ])  # fmt: skip
    model.compile("adam", "sparse_categorical_crossentropy")
    x = rng.random((8, 5, 5, 2), dtype=np.float32)
    model.fit(x, np.arange(8) % 2, epochs=1, verbose=0)
    model.save(tmp_path / "conv.minicnn")
    again = minicnn.load_model(tmp_path / "conv.minicnn")
    for a, b in zip(again.layers, model.layers):
        assert type(a) is type(b) and a.get_config() == b.get_config()
    assert again.layers[0].output_padding == (1, 1) and again.layers[1].depth_multiplier == 2
    assert again.layers[2].weight_regularizers["pointwise_kernel"].get_config() == {"l1": 0.02}
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))
    np.testing.assert_allclose(again.evaluate(x, np.arange(8) % 2, verbose=0), model.evaluate(x, np.arange(8) % 2, verbose=0), rtol=1e-6)  # fmt: skip
