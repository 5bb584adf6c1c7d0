"""Every hand-written kernel (numba on the CPU, CUDA on the GPU) against the plain array code
in minicnn/maths/, which MINICNN_KERNELS=numpy selects."""

import numpy as np
import pytest

from minicnn import backend, kernels, maths
from minicnn.maths import reference
from minicnn.utils import set_random_seed

TOL = {"float64": 1e-12, "float32": 1e-5}


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return request.param


def both(monkeypatch, op, xp, dtype, fn):
    """(kernel result, reference result) of ``fn()``; skips where no kernel serves ``op``."""
    if kernels.lookup(op, xp, np.dtype(dtype)) is None:
        pytest.skip(f"no {op} kernel for {xp.__name__} here")
    fast = fn()
    monkeypatch.setenv("MINICNN_KERNELS", "numpy")
    ref = fn()
    monkeypatch.delenv("MINICNN_KERNELS")
    return fast, ref


def host(be, a):
    return (
        [host(be, v) for v in a]
        if isinstance(a, (tuple, list))
        else np.asarray(be.to_numpy(a) if hasattr(a, "shape") else a)
    )


GEOMETRIES = [
    ((3, 3), (1, 1), "valid"),
    ((3, 3), (1, 1), "same"),
    ((2, 3), (2, 1), "same"),
    ((3, 3), (2, 2), "valid"),
]


@pytest.mark.parametrize("k,s,padding", GEOMETRIES)
def test_im2col_col2im(backend_name, monkeypatch, rng, dtype, k, s, padding):
    be = backend.get_backend(backend_name)
    x = be.asarray(rng.standard_normal((3, 9, 8, 5)).astype(dtype))
    pads = maths.padding_amounts(9, 8, *k, *s, padding)
    fast, ref = both(monkeypatch, "im2col", be.xp, dtype, lambda: maths.im2col(x, *k, *s, pads))
    assert fast.dtype == dtype and fast.shape == ref.shape
    np.testing.assert_array_equal(host(be, fast), host(be, ref))  # a pure copy: exact
    g = be.asarray(rng.standard_normal(ref.shape).astype(dtype))
    fast, ref = both(
        monkeypatch, "col2im", be.xp, dtype, lambda: maths.col2im(g, x.shape, *s, pads)
    )
    assert fast.dtype == dtype and rel(host(be, fast), host(be, ref)) <= TOL[dtype]


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_bias_relu_and_backward(backend_name, monkeypatch, rng, dtype, relu, bias):
    be = backend.get_backend(backend_name)
    y0 = rng.standard_normal((50, 7)).astype(dtype)
    b = be.asarray(rng.standard_normal(7).astype(dtype)) if bias else None
    fast, ref = both(
        monkeypatch,
        "bias_relu",
        be.xp,
        dtype,
        lambda: maths.bias_relu(be.asarray(y0.copy()), b, relu),
    )
    assert rel(host(be, fast), host(be, ref)) <= TOL[dtype]
    gy = be.asarray(rng.standard_normal((50, 7)).astype(dtype))
    fast, ref = both(
        monkeypatch, "relu_backward", be.xp, dtype, lambda: maths.relu_backward(gy, ref)
    )
    np.testing.assert_array_equal(host(be, fast), host(be, ref))


def test_softmax_cross_entropy(backend_name, monkeypatch, rng, dtype):
    be = backend.get_backend(backend_name)
    z = be.asarray((rng.standard_normal((33, 10)) * 5).astype(dtype))
    t = be.asarray(np.eye(10, dtype=dtype)[rng.integers(0, 10, 33)])
    (fl, fg), (rl, rg) = both(
        monkeypatch,
        "softmax_cross_entropy",
        be.xp,
        dtype,
        lambda: maths.softmax_cross_entropy(z, t),
    )
    assert abs(float(fl) - float(rl)) <= TOL[dtype] * abs(float(rl))
    assert rel(host(be, fg), host(be, rg)) <= TOL[dtype]


@pytest.mark.parametrize(
    "k,s,padding", [((2, 2), (2, 2), "valid"), ((3, 3), (2, 2), "same"), ((3, 2), (1, 1), "valid")]
)
def test_maxpool(backend_name, monkeypatch, rng, dtype, k, s, padding):
    be = backend.get_backend(backend_name)
    x = be.asarray(rng.standard_normal((2, 9, 8, 4)).astype(dtype))
    pads = maths.padding_amounts(9, 8, *k, *s, padding)
    (fy, fa), (ry, ra) = both(
        monkeypatch, "maxpool_forward", be.xp, dtype, lambda: maths.maxpool_forward(x, *k, *s, pads)
    )
    np.testing.assert_array_equal(host(be, fy), host(be, ry))
    np.testing.assert_array_equal(host(be, fa), host(be, ra))
    # inference's maxima alone (its own kernel on the CPU): the training forward's values
    np.testing.assert_array_equal(host(be, maths.maxpool(x, *k, *s, pads)), host(be, ry))
    # a NaN is its window's maximum, and the first NaN of a window takes its gradient
    xn = host(be, x).copy()
    xn[0, 1, 1, :2] = xn[0, 1, 2, 1:3] = xn[1, 0, 0, 3] = np.nan
    xn = be.asarray(xn)
    (fny, fna), (rny, rna) = both(
        monkeypatch,
        "maxpool_forward",
        be.xp,
        dtype,
        lambda: maths.maxpool_forward(xn, *k, *s, pads),
    )
    want = reference.maxpool(host(be, xn).astype(np.float64), k, s, padding)
    assert np.isnan(want).any()
    for got in (fny, rny, maths.maxpool(xn, *k, *s, pads)):
        np.testing.assert_array_equal(host(be, got), want.astype(dtype))
    np.testing.assert_array_equal(host(be, fna), host(be, rna))
    top, _, left, _ = pads  # each NaN output's winner is its window's first NaN
    xh, arg = host(be, xn), host(be, fna)
    for b, p, q, ch in np.argwhere(np.isnan(want)):
        window = [(p * s[0] + i - top, q * s[1] + j - left) for i in range(k[0]) for j in range(k[1])]  # fmt: skip
        inside = [0 <= r < 9 and 0 <= c < 8 and np.isnan(xh[b, r, c, ch]) for r, c in window]
        assert arg[b, p, q, ch] == inside.index(True)
    gx = maths.maxpool_backward(be.asarray(np.ones(want.shape, dtype)), fna, xn.shape, *k, *s, pads)
    assert (host(be, gx)[np.isnan(xh)] > 0).all()  # the NaNs took their windows' gradients
    gy = be.asarray(rng.standard_normal(ry.shape).astype(dtype))
    fast, ref = both(
        monkeypatch,
        "maxpool_backward",
        be.xp,
        dtype,
        lambda: maths.maxpool_backward(gy, ra, x.shape, *k, *s, pads),
    )
    assert rel(host(be, fast), host(be, ref)) <= TOL[dtype]


def test_adam_update(backend_name, monkeypatch, rng, dtype):
    be = backend.get_backend(backend_name)
    start = [rng.standard_normal(300).astype(dtype) for _ in range(4)]  # p, g, m, v
    start[3] = np.abs(start[3])

    def step():
        p, g, m, v = (be.asarray(a.copy()) for a in start)
        maths.adam_update(p, g, m, v, 1e-3, 0.9, 0.999, 1e-7)
        return p, m, v

    fast, ref = both(monkeypatch, "adam_update", be.xp, dtype, step)
    for f, r in zip(fast, ref):
        assert f.dtype == dtype and rel(host(be, f), host(be, r)) <= TOL[dtype]


def test_ema_update(backend_name, monkeypatch, rng, dtype):
    """In place, against the rule written out: ema <- m * ema + (1 - m) * p."""
    be = backend.get_backend(backend_name)
    ema0, p = rng.standard_normal((2, 5, 7)).astype(dtype)

    def step():
        ema = be.asarray(ema0.copy())
        maths.ema_update(ema, be.asarray(p), 0.999)
        return ema

    fast, ref = both(monkeypatch, "ema_update", be.xp, dtype, step)
    want = 0.999 * ema0.astype(np.float64) + 0.001 * p
    for a in (fast, ref):
        assert a.dtype == dtype and rel(host(be, a), want) <= TOL[dtype]


@pytest.mark.parametrize("m", [100, 4096 * 17 + 77])
def test_matmul_tn_and_sum_rows(backend_name, monkeypatch, rng, dtype, m):
    """The weight-gradient product a.T @ b and the bias gradient, split or not, as plain NumPy."""
    be = backend.get_backend(backend_name)
    a = be.asarray(rng.standard_normal((m, 9)).astype(dtype))
    b = be.asarray(rng.standard_normal((m, 7)).astype(dtype))
    fast, ref = both(monkeypatch, "matmul_tn", be.xp, dtype, lambda: maths.matmul_tn(a, b))
    assert fast.shape == (9, 7) and rel(host(be, fast), host(be, ref)) <= 10 * TOL[dtype]
    fast, ref = both(monkeypatch, "sum_rows", be.xp, dtype, lambda: maths.sum_rows(b))
    assert fast.shape == (7,) and rel(host(be, fast), host(be, ref)) <= 10 * TOL[dtype]


@pytest.mark.parametrize(
    "x_shape,grid,out",
    [
        ((3, 26, 26, 16), (6, 6, 0, 0, 1), (24, 24)),  # tiles cover x exactly: no map at all
        ((2, 7, 10, 3), (2, 3, 1, 1, 1), (7, 10)),  # "same": padding, tiles overhang
        ((2, 9, 10, 3), (2, 2, 1, 2, 2), (5, 5)),  # space to depth (5x5 / 2), padding, cut
        ((2, 10, 11, 37), (3, 3, 1, 1, 1), (10, 11)),  # 2 vectors of channels and 5 more
    ],
)
def test_winograd_transforms(backend_name, monkeypatch, rng, dtype, x_shape, grid, out):
    """The four transforms, each on a view of a larger buffer as the chunked convolution passes
    them (the GEMMs between them are plain matmul), reading x and writing its gradient through
    the grid's map (padding, 2x2 blocks, rows no tile reaches); the output transform with and
    without bias and ReLU, cut to an output that is not a multiple of 4; the output-gradient
    transform with and without ReLU's mask, and its bias sums."""
    be, xp = backend.get_backend(backend_name), backend.get_backend(backend_name).xp
    n, th, tw, blk = x_shape[0], grid[0], grid[1], grid[4]
    tiles, c = n * th * tw, blk * blk * x_shape[3]
    x = be.asarray(rng.standard_normal(x_shape).astype(dtype))
    m = be.asarray(rng.standard_normal((36, tiles + 5, c)).astype(dtype))
    gy = be.asarray(rng.standard_normal((n, *out, c)).astype(dtype))
    y = be.asarray(np.maximum(rng.standard_normal(gy.shape), 0).astype(dtype))
    bias = be.asarray(rng.standard_normal(c).astype(dtype))
    cases = {
        "winograd_input": lambda: maths.winograd_input(x, grid, xp.zeros((36, tiles + 5, c), dtype)[:, 5:]),
        "winograd_output": lambda: maths.winograd_output(m[:, 5:], th, tw, xp.zeros(gy.shape, dtype)),
        "winograd_output+bias+relu": lambda: maths.winograd_output(m[:, 5:], th, tw, xp.zeros(gy.shape, dtype), bias, True),
        "winograd_grad_output": lambda: maths.winograd_grad_output(gy, th, tw, xp.zeros((36, tiles, c), dtype)),
        "winograd_grad_output+mask": lambda: maths.winograd_grad_output(gy, th, tw, xp.zeros((36, tiles, c), dtype), y),
        "winograd_grad_input": lambda: maths.winograd_grad_input(m[:, :tiles], grid, xp.ones(x.shape, dtype)),
    }  # fmt: skip
    for case, fn in cases.items():
        fast, ref = both(monkeypatch, case.split("+")[0], be.xp, dtype, fn)
        for f, r in zip(*(a if isinstance(a, tuple) else (a,) for a in (fast, ref))):
            assert f.dtype == dtype and f.shape == r.shape, case
            assert rel(host(be, f), host(be, r)) <= TOL[dtype], case
    masked, _ = maths.winograd_grad_output(gy * (y > 0), th, tw, xp.zeros((36, tiles, c), dtype))
    gm, _ = cases["winograd_grad_output+mask"]()
    assert rel(host(be, masked), host(be, gm)) <= TOL[dtype]  # the mask is y > 0


def test_winograd_width_is_bounded_by_its_stack_scratch():
    """A tile's channels live on the stack, so a layer wider than SCRATCH_CHANNELS takes another
    algorithm, and the kernels themselves refuse it with a message that names the limit; they
    refuse buffers of the wrong shape too."""
    from minicnn.maths.conv import choose_algorithm

    if kernels.lookup("winograd_input", np, np.dtype(np.float32)) is None:
        pytest.skip("no numba here")
    top = kernels.SCRATCH_CHANNELS
    assert choose_algorithm((8, 12, 12, top), (3, 3, top, top), (1, 1), (1, 1, 1, 1)) == "winograd"
    assert (
        choose_algorithm((8, 12, 12, top + 1), (3, 3, top + 1, 64), (1, 1), (1, 1, 1, 1))
        == "shifted"
    )
    assert choose_algorithm((8, 12, 12, 64), (3, 3, 64, top + 1), (1, 1), (1, 1, 1, 1)) == "shifted"
    assert (
        choose_algorithm((8, 24, 24, top // 4), (5, 5, top // 4, 64), (2, 2), (1, 2, 1, 2))
        == "space_to_depth"
    )
    assert (
        choose_algorithm((8, 24, 24, top // 4 + 1), (5, 5, top // 4 + 1, 64), (2, 2), (1, 2, 1, 2))
        == "im2col"
    )
    wide = kernels.lookup("winograd_input", np, np.dtype(np.float32))
    x = np.zeros((1, 6, 6, top + 1), np.float32)
    with pytest.raises(ValueError, match=f"at most {top} channels.*Received: {top + 1} input"):
        wide(x, (1, 1, 0, 0, 1), np.zeros((36, 1, top + 1), np.float32))
    # the kernels index without bounds checks, so a buffer of the wrong shape is refused
    grad_output = kernels.lookup("winograd_grad_output", np, np.dtype(np.float32))
    gy = np.zeros((3, 8, 8, 4), np.float32)  # 2x2 tiles an image: gM needs 12 rows
    with pytest.raises(ValueError, match=r"expected shape \(36, 12, 4\). Received: \(36, 8, 4\)"):
        grad_output(gy, 2, 2, np.zeros((36, 8, 4), np.float32))
    with pytest.raises(ValueError, match="a 9x8 map does not fit 2x2 tiles"):
        grad_output(np.zeros((3, 9, 8, 4), np.float32), 2, 2, np.zeros((36, 12, 4), np.float32))


@pytest.mark.parametrize("keep", [False, True])
@pytest.mark.parametrize(
    "x_shape,grid,out",
    [
        ((1, 26, 26, 16), (6, 6, 0, 0, 1), (24, 24)),  # one image
        ((7, 7, 10, 3), (2, 3, 1, 1, 1), (7, 10)),  # "same": padding, tiles overhang
        ((7, 9, 10, 3), (2, 2, 1, 2, 2), (5, 5)),  # space to depth (5x5 / 2), padding, cut
    ],
)
def test_winograd_pipeline(monkeypatch, rng, dtype, x_shape, grid, out, keep):
    """Training's per-core pipeline (each core's images in chunks: transform, GEMMs, inverse),
    with chunks of 2 images so each core runs several and a last short one, against the array
    code: the output, the V it keeps and backward's gradients from it (input, kernel, bias; and
    the kernel's alone, without the input's), the backward pipelined too. Without ``keep``
    (inference) the fused kernel's output, against the same."""
    from minicnn.maths.conv import winograd as wino

    if kernels.lookup("winograd_input_serial", np, np.dtype(dtype)) is None:
        pytest.skip("no numba here")
    n, th, tw, blk = x_shape[0], grid[0], grid[1], grid[4]
    c = blk * blk * x_shape[3]
    x = rng.standard_normal(x_shape).astype(dtype)
    kernel = rng.standard_normal((3, 3, c, 19)).astype(dtype)
    bias = rng.standard_normal(19).astype(dtype)
    gy = rng.standard_normal((n, *out, 19)).astype(dtype)
    runs = []

    def two_cores(work, n):  # the split of two cores, on any runner: each half in turn
        runs.append(n)
        work(0, n // 2)
        work(n // 2, n)

    monkeypatch.setattr(wino, "can_split", lambda: True)
    monkeypatch.setattr(wino, "over_cores", two_cores)
    monkeypatch.setattr(
        wino, "PIPELINE_BYTES", 2 * 36 * th * tw * (c + 19) * np.dtype(dtype).itemsize
    )

    def run():
        z, ctx = wino.tiled_forward(x, kernel, grid[2:], out, bias, True, keep)
        if ctx is None:
            return (z,)
        _, gk, _ = wino.backward(gy, ctx, need_gx=False)  # the weights' gradients alone
        grads = wino.backward(gy, ctx)
        monkeypatch.setattr(wino, "can_split", lambda: False)  # the backward on all cores at once
        whole = wino.backward(gy, ctx)
        monkeypatch.setattr(wino, "can_split", lambda: True)
        # the same gradients to rounding: the pipeline's GEMMs are single-threaded, the whole
        # batch's threaded, and OpenBLAS's blocking (so its sums' order) differs between them
        assert all(rel(g, w) <= TOL[dtype] for g, w in zip(grads, whole))
        return (z, np.concatenate(ctx.vs, axis=1), *grads, gk)

    fast, ref = both(monkeypatch, "winograd_input_serial", np, dtype, run)
    # training's forward pipelined, and both backwards; inference is one fused kernel, no pipeline
    assert runs == ([n] * 3 if keep else [])
    assert (fast[0] == 0).mean() > 0.2  # ReLU applied
    for f, r in zip(fast, ref):
        assert f.dtype == dtype and f.shape == r.shape
        assert rel(f, r) <= TOL[dtype]


def test_placed_grid_is_padding_and_space_to_depth(rng):
    """The grid's map, against a pixel loop: zeros where the map leaves x, x's 2x2 blocks as
    channels; and its adjoint: <grid(x), g> == <x, adjoint(g)>."""
    x = rng.standard_normal((2, 9, 10, 3))
    grid = (2, 2, 1, 2, 2)  # 2x2 tiles: a 10x10 grid of 2x2 blocks, x placed 1 down, 2 right
    g = maths.placed_grid(x, grid)
    assert g.shape == (2, 10, 10, 12)
    want = np.zeros_like(g)
    for p in range(10):
        for q in range(10):
            for r in range(2):
                for s in range(2):
                    row, col = 2 * p + r - 1, 2 * q + s - 2
                    if 0 <= row < 9 and 0 <= col < 10:
                        want[:, p, q, (2 * r + s) * 3 : (2 * r + s + 1) * 3] = x[:, row, col]
    np.testing.assert_array_equal(g, want)
    h = rng.standard_normal(g.shape)
    gx = maths.placed_grid_adjoint(h, grid, x.shape)
    assert gx.shape == x.shape
    assert abs(np.vdot(g, h) - np.vdot(x, gx)) <= 1e-12 * abs(np.vdot(g, h))


@pytest.mark.parametrize("k,s,padding", GEOMETRIES)
@pytest.mark.parametrize("c,relu", [(1, True), (3, False)])
def test_direct_convolution(backend_name, monkeypatch, rng, dtype, k, s, padding, c, relu):
    """The direct kernels (forward with bias and ReLU, kernel/bias gradients, input gradient)
    on a first layer's channel counts, against im2col + GEMM."""
    be = backend.get_backend(backend_name)
    x = rng.standard_normal((5, 9, 8, c)).astype(dtype)
    xpad = be.asarray(maths.pad(x, maths.padding_amounts(9, 8, *k, *s, padding)))
    kernel = be.asarray(rng.standard_normal((*k, c, 7)).astype(dtype))
    bias = be.asarray(rng.standard_normal(7).astype(dtype))
    fast, ref = both(
        monkeypatch, "conv_direct", be.xp, dtype,
        lambda: maths.conv_direct(xpad, kernel, bias, relu, s),
    )  # fmt: skip
    assert fast.dtype == dtype and fast.shape == ref.shape
    assert rel(host(be, fast), host(be, ref)) <= TOL[dtype]
    if relu:
        assert (host(be, fast) == 0).mean() > 0.2  # the mask below has zeros to apply
    y = fast if relu else None
    gz = be.asarray(rng.standard_normal(ref.shape).astype(dtype))
    cases = {
        "conv_direct_grad": lambda: maths.conv_direct_grad(xpad, gz, y, kernel.shape, s),
        "conv_direct_grad_input": lambda: maths.conv_direct_grad_input(
            gz, y, kernel, xpad.shape, s
        ),
    }
    for op, fn in cases.items():
        fast, ref = both(monkeypatch, op, be.xp, dtype, fn)
        for f, r in zip(
            fast if isinstance(fast, tuple) else [fast], ref if isinstance(ref, tuple) else [ref]
        ):
            assert f.dtype == dtype and f.shape == r.shape, op
            assert rel(host(be, f), host(be, r)) <= TOL[dtype], op


DIRECT_SHAPES = [  # (images, kernel, strides, channels): odd sizes, both sides of UNROLLED_TAPS
    (1, (3, 3), (1, 1), 1),
    (7, (3, 3), (2, 2), 3),
    (7, (5, 5), (2, 1), 4),  # 100 taps: the largest written out
    (3, (7, 7), (1, 2), 3),  # 147 taps: the loop
]


@pytest.mark.parametrize("n,k,s,c", DIRECT_SHAPES)
def test_direct_written_out(rng, dtype, n, k, s, c):
    """The per-geometry forward and kernel gradient (taps written out, generated.py) sum in the
    loop kernels' order, so the two give the same bits; the forward conv_direct takes (written
    out, or register-blocked past WRITTEN_OUT_TAPS) and both gradients against im2col + GEMM."""
    pytest.importorskip("numba")
    from minicnn.kernels.cpu import direct as kdirect

    x = rng.standard_normal((n, 11, 10, c)).astype(dtype)
    kernel = rng.standard_normal((*k, c, 19)).astype(dtype)  # 19 filters: no vector multiple
    bias = rng.standard_normal(19).astype(dtype)
    z = kdirect.conv_direct(x, kernel, bias, True, s)
    loop = np.empty_like(z)
    kdirect._conv_direct(x, kernel, bias, True, loop, *s)
    taps = kernel[..., 0].size
    if taps <= kdirect.UNROLLED_TAPS:
        written = np.empty_like(z)
        kdirect._written_out("conv", *k, c, *s)(x, kernel.reshape(taps, 19), bias, True, written)
        np.testing.assert_array_equal(written, loop)
    if taps <= kdirect.WRITTEN_OUT_TAPS:
        np.testing.assert_array_equal(z, loop)
    col = maths.im2col(x, *k, *s, (0, 0, 0, 0))
    ref = np.maximum(col.reshape(-1, kernel[..., 0].size) @ kernel.reshape(-1, 19) + bias, 0)
    assert z.dtype == dtype and rel(z, ref.reshape(z.shape)) <= TOL[dtype]
    assert (z == 0).mean() > 0.2  # the ReLU was applied
    gz = rng.standard_normal(z.shape).astype(dtype)
    gk, gb = kdirect.conv_direct_grad(x, gz, z, kernel.shape, s)  # masked by ReLU's output
    blocks = min(n, kdirect._GRAD_BLOCKS)
    lk, lb = np.empty((blocks, *kernel.shape), dtype), np.empty((blocks, 19), dtype)
    kdirect._conv_direct_grad(x, gz, z, True, lk, lb, *s)
    np.testing.assert_array_equal(gk, lk.sum(axis=0))
    np.testing.assert_array_equal(gb, lb.sum(axis=0))
    g = np.where(z > 0, gz, 0).reshape(-1, 19)
    want = col.reshape(-1, kernel[..., 0].size).T @ g
    assert gk.dtype == dtype and rel(gk, want.reshape(kernel.shape)) <= TOL[dtype]
    assert rel(gb, g.sum(axis=0)) <= TOL[dtype]


BLOCKED_SHAPES = [  # (images, map, kernel, strides, channels, filters)
    (1, (13, 13), (3, 3), (1, 1), 32, 32),  # 11 pixels a row: blocks of 6 and 5 (float32)
    (7, (12, 9), (5, 5), (2, 2), 19, 10),  # channels and filters no multiple of a vector
    (2, (9, 11), (3, 5), (2, 1), 8, 64),
    (3, (6, 7), (2, 2), (1, 1), 5, 128),  # the most filters: one pixel a block in float64
]


@pytest.mark.parametrize("n,hw,k,s,c,f", BLOCKED_SHAPES)
def test_blocked_direct_kernel(rng, dtype, n, hw, k, s, c, f):
    """The register-blocked direct kernel against the plain definition (reference.conv2d) to
    rounding, with and without ReLU; a NaN input gives NaN where its windows read it, and only
    there; more filters than its registers hold are refused by name."""
    pytest.importorskip("numba")
    from minicnn.kernels.cpu import blocked

    x = rng.standard_normal((n, *hw, c)).astype(dtype)
    kernel = rng.standard_normal((*k, c, f)).astype(dtype)
    bias = rng.standard_normal(f).astype(dtype)
    want = reference.conv2d(x, kernel, bias, s, "valid")
    for relu in (False, True):
        z = blocked.conv_blocked(x, kernel, bias, relu, s)
        assert z.dtype == dtype and z.shape == want.shape
        assert rel(z, np.maximum(want, 0) if relu else want) <= TOL[dtype]
        # max-pooled in the same pass (or, past POOL_BLOCK_BYTES, after it): the same bits
        pooled = blocked.conv_blocked_pool(x, kernel, bias, relu, s)
        np.testing.assert_array_equal(pooled, maths.maxpool(z, 2, 2, 2, 2, (0, 0, 0, 0)))
    x[-1, 0, 0, 0] = np.nan  # read by the windows of output (0, 0) alone
    z = blocked.conv_blocked(x, kernel, bias, True, s)
    nan = np.zeros(z.shape, bool)
    nan[-1, 0, 0] = True
    np.testing.assert_array_equal(np.isnan(z), nan)
    with pytest.raises(ValueError, match="at most 128 filters"):
        blocked.conv_blocked(x, np.zeros((*k, c, 129), dtype), None, False, s)
    for empty in (x[:0], x[:, :, : k[1] - 1]):  # no images; a map narrower than the kernel
        z = blocked.conv_blocked(empty, kernel, bias, True, s)
        assert z.size == 0 and z.shape[3] == f


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("n,k,s,c", DIRECT_SHAPES)
def test_direct_pooled(rng, dtype, n, k, s, c, relu):
    """The forward max-pooled 2x2 / 2 in its own pass gives the same bits as the forward, then
    the max-pooling kernel, and as the array code (im2col + GEMM, then the pooling) to rounding:
    odd maps (a last row or column the pooling drops), strides, both sides of UNROLLED_TAPS; a
    NaN input, which the windows that read it give (as the pooling kernel and NumPy's max)."""
    pytest.importorskip("numba")
    from minicnn.kernels.cpu import direct as kdirect
    from minicnn.kernels.cpu import pooling as kpool

    x = rng.standard_normal((n, 12, 11, c)).astype(dtype)
    x[0, 0, 0, 0] = x[-1, 6, 5, 0] = np.nan  # first in its window; inside, read by many
    kernel = rng.standard_normal((*k, c, 19)).astype(dtype)
    bias = rng.standard_normal(19).astype(dtype)
    z = kdirect.conv_direct_pool(x, kernel, bias, relu, s)
    full = kdirect.conv_direct(x, kernel, bias, relu, s)
    np.testing.assert_array_equal(z, kpool.maxpool(full, 2, 2, 2, 2, (0, 0, 0, 0)))
    assert z.shape == (n, full.shape[1] // 2, full.shape[2] // 2, 19) and z.dtype == dtype
    nan = np.isnan(z)
    assert nan[0, 0, 0].all() and nan[-1].sum() >= 19  # the windows that read them, every filter
    with maths.dispatch.array_code():
        ref = maths.conv.direct.pooled_forward(x, kernel, bias, s, (0, 0, 0, 0), relu)
    np.testing.assert_array_equal(np.isnan(ref), nan)
    assert rel(z[~nan], ref[~nan]) <= TOL[dtype]


def _fused_or_not(monkeypatch, wino, fused: bool) -> None:
    """Winograd's inference in the fused kernel, or (without it) in the transform kernels
    around the batched GEMMs."""
    if not fused:
        monkeypatch.setattr(wino, "kernel_for", lambda op, x: None if op == "winograd_fused" else maths.dispatch.kernel_for(op, x))  # fmt: skip


@pytest.mark.parametrize(
    "x_shape,f,kernel_size,strides,padding",
    [
        ((1, 26, 26, 16), 19, 3, 1, "valid"),  # one image; a map of whole tiles
        ((7, 13, 11, 17), 33, 3, 1, "same"),  # padding; tiles overhang the map
        ((2, 9, 26, 80), 24, 3, 1, "same"),  # 7 tiles a row: spans of 4 tiles a task and 3
        ((3, 13, 11, 5), 7, 5, 2, "same"),  # space to depth: 5x5 / 2 over 2x2 blocks of 20 channels
    ],
)
def test_winograd_fused_against_the_definition(monkeypatch, rng, dtype, x_shape, f, kernel_size, strides, padding):  # fmt: skip
    """The fused inference kernel (transforms and the 36 products in one pass per span of
    tiles) against the plain convolution, with bias and ReLU, in both dtypes; and the same
    bits as it gives without the ReLU, then max(0)."""
    from minicnn.maths.conv import winograd as wino

    if kernels.lookup("winograd_fused", np, np.dtype(dtype)) is None:
        pytest.skip("no numba here")
    x = rng.standard_normal(x_shape).astype(dtype)
    kernel = rng.standard_normal((kernel_size, kernel_size, x_shape[3], f)).astype(dtype)
    bias = rng.standard_normal(f).astype(dtype)
    s = (strides, strides)
    pads = (*reference.pads(x_shape[1], kernel_size, strides, padding), *reference.pads(x_shape[2], kernel_size, strides, padding))  # fmt: skip
    algo = "winograd" if strides == 1 else "space_to_depth"
    calls = []
    monkeypatch.setattr(wino, "kernel_for", lambda op, a: calls.append(op) or maths.dispatch.kernel_for(op, a))  # fmt: skip
    y, ctx = maths.conv2d_forward(x, kernel, bias, s, pads, True, algo, keep=False)
    linear, _ = maths.conv2d_forward(x, kernel, bias, s, pads, False, algo, keep=False)
    assert ctx is None and calls == ["winograd_fused"] * 2  # one kernel, nothing else
    want = reference.conv2d(x.astype(np.float64), kernel.astype(np.float64), bias, s, padding)
    assert y.dtype == dtype and y.shape == want.shape
    assert rel(y, np.maximum(want, 0)) <= TOL[dtype] and (y == 0).mean() > 0.2
    np.testing.assert_array_equal(y, np.maximum(linear, 0))


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize(
    "x_shape,pads", [((7, 13, 13, 16), (1, 1, 1, 1)), ((2, 14, 11, 19), (0, 0, 0, 0))]
)
def test_winograd_pooled(monkeypatch, rng, dtype, x_shape, pads, fused):
    """Winograd's forward max-pooled 2x2 / 2 in its output transform, against the forward then
    the pooling kernel (the same bits), in the fused kernel or the transform kernels around
    GEMMs; and the array code's pooled forward to rounding. 13x13 "same" and 12x9 "valid":
    tiles cut at the edge, a row and a column the pooling drops."""
    from minicnn.kernels.cpu import pooling as kpool

    from minicnn.maths.conv import winograd as wino

    if kernels.lookup("winograd_input_serial", np, np.dtype(dtype)) is None:
        pytest.skip("no numba here")
    _fused_or_not(monkeypatch, wino, fused)
    x = rng.standard_normal(x_shape).astype(dtype)
    kernel = rng.standard_normal((3, 3, x_shape[3], 21)).astype(dtype)
    bias = rng.standard_normal(21).astype(dtype)
    z = wino.pooled_forward(x, kernel, bias, (1, 1), pads, True)
    full, _ = wino.forward(x, kernel, bias, (1, 1), pads, True, keep=False)
    assert z.shape == (x_shape[0], full.shape[1] // 2, full.shape[2] // 2, 21) and z.dtype == dtype
    np.testing.assert_array_equal(z, kpool.maxpool(full, 2, 2, 2, 2, (0, 0, 0, 0)))
    with maths.dispatch.array_code():
        ref = wino.pooled_forward(x, kernel, bias, (1, 1), pads, True)
    assert rel(z, ref) <= TOL[dtype] and (z == 0).mean() > 0.02


def test_winograd_pooled_tile_gives_a_nan(dtype):
    """The output transform's pooling: a NaN anywhere in a window is its maximum, and stays
    there over larger values after it (as the max-pooling kernel)."""
    if kernels.lookup("winograd_input_serial", np, np.dtype(dtype)) is None:
        pytest.skip("no numba here")
    from minicnn.kernels.cpu.winograd import _pool_tile

    o = np.zeros((4, 4, 3), dtype)
    o[0, 1, 0], o[1, 0, 0], o[1, 1, 0] = np.nan, 5, 9  # filter 0, window (0, 0): NaN second
    o[2, 2, 1], o[3, 3, 1] = 7, np.nan  # filter 1, window (1, 1): NaN last
    o[..., 2] = np.arange(16).reshape(4, 4)
    z = np.empty((1, 2, 2, 3), dtype)
    _pool_tile(o, np.zeros(3, dtype), True, np.dtype(dtype).type(-np.inf), z, 0, 0, 0)
    assert np.isnan(z[0, 0, 0, 0]) and np.isnan(z[0, 1, 1, 1])
    assert z[0, 0, 1, 0] == 0 and z[0, 1, 0, 1] == 0
    np.testing.assert_array_equal(z[0, ..., 2], [[5, 7], [13, 15]])


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("relu", [False, True])
def test_winograd_residual(monkeypatch, rng, dtype, relu, fused):
    """Winograd's forward with a residual added in its output transform, act(conv + bias + r),
    against the forward, the sum and the ReLU one after the other (the same bits), fused or
    not, and the array code to rounding; a residual of another shape is refused."""
    from minicnn.maths.conv import winograd as wino

    if kernels.lookup("winograd_input_serial", np, np.dtype(dtype)) is None:
        pytest.skip("no numba here")
    _fused_or_not(monkeypatch, wino, fused)
    x = rng.standard_normal((5, 13, 11, 17)).astype(dtype)
    kernel = rng.standard_normal((3, 3, 17, 17)).astype(dtype)
    bias = rng.standard_normal(17).astype(dtype)
    pads = (1, 1, 1, 1)
    z = wino.residual_forward(x, kernel, bias, (1, 1), pads, x, relu)
    y, _ = wino.forward(x, kernel, bias, (1, 1), pads, False, keep=False)
    want = np.maximum(y + x, 0) if relu else y + x
    assert z.dtype == dtype
    np.testing.assert_array_equal(z, want)
    with maths.dispatch.array_code():
        ref = wino.residual_forward(x, kernel, bias, (1, 1), pads, x, relu)
    assert rel(z, ref) <= TOL[dtype]
    with pytest.raises(ValueError, match="residual must match the output"):
        wino.residual_forward(x, kernel, bias, (1, 1), pads, x[:, :-1], relu)


def test_generated_kernels_are_cached_by_content(tmp_path, monkeypatch):
    """A generated kernel is saved once under its source's hash and loaded again from there; a
    cache folder that cannot be written leaves it compiled in memory, with the same result."""
    pytest.importorskip("numba")
    from minicnn.kernels.cpu import generated

    src = "def twice(a):\n    return 2 * a\n"
    monkeypatch.setenv("MINICNN_KERNEL_CACHE", str(tmp_path / "k"))
    assert generated.load("twice", src, "twice")(np.arange(3.0)).tolist() == [0.0, 2.0, 4.0]
    (saved,) = (tmp_path / "k").glob("twice_*.py")
    assert saved.read_text() == src
    stamp = saved.stat().st_mtime_ns
    generated._loaded.clear()
    assert generated.load("twice", src, "twice")(np.ones(2)).tolist() == [2.0, 2.0]
    assert saved.stat().st_mtime_ns == stamp  # read, not written again
    other = src.replace("2 * a", "3 * a")
    generated.load("twice", other, "twice")
    assert len(list((tmp_path / "k").glob("twice_*.py"))) == 2  # a changed source: a new file
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("MINICNN_KERNEL_CACHE", str(blocked / "k"))
    generated._loaded.clear()
    assert generated.load("twice", src, "twice")(np.ones(2)).tolist() == [2.0, 2.0]


@pytest.mark.parametrize("algorithm", ["shifted", "winograd", "direct", "taps"])
@pytest.mark.parametrize("relu", [False, True])
def test_convolution_algorithms_agree(rng, float64, monkeypatch, algorithm, relu):
    """The algebra itself, in float64: each algorithm's output with bias and ReLU, and its kernel,
    bias and input gradients, against im2col's, for a "same" convolution whose output is
    odd-sized (Winograd's tiles overhang it). With numba where it is installed, the references
    where not."""
    x = rng.standard_normal((2, 7, 9, 5))
    kernel = rng.standard_normal((3, 3, 5, 4))
    bias = rng.standard_normal(4)
    pads = maths.padding_amounts(7, 9, 3, 3, 1, 1, "same")
    results = {}
    for name in ("im2col", algorithm):
        z, ctx = maths.conv2d_forward(x, kernel, bias, (1, 1), pads, relu, algorithm=name)
        assert type(ctx) is maths.conv.ALGORITHMS[name].Ctx
        gx, gkernel, gbias = maths.conv2d_backward(np.cos(z), ctx)
        results[name] = (z, gx, gkernel, gbias)
    for a, b in zip(results[algorithm], results["im2col"]):
        assert a.shape == b.shape and rel(a, b) <= 1e-13


@pytest.mark.parametrize("relu", [False, True])
def test_batchnorm_kernels(backend_name, monkeypatch, rng, dtype, relu):
    """Training's forward (ReLU fused in or not) and backward (through that ReLU's mask), and
    inference's affine map; and the variance where the data's mean is far from 0 against its
    spread, where one-pass moments that did not shift by a sample would cancel, against the
    float64 variance (NumPy's float32 one is off by up to 4e-4 there)."""
    be = backend.get_backend(backend_name)
    x = be.asarray((rng.standard_normal((300, 7)) * 3 + 1).astype(dtype))
    far = be.asarray((rng.standard_normal((300, 7)) * 0.01 + 1000).astype(dtype))
    gamma, beta = be.asarray(rng.uniform(0.5, 2, 7).astype(dtype)), be.asarray(rng.standard_normal(7).astype(dtype))  # fmt: skip
    fast, ref = both(monkeypatch, "batchnorm_forward", be.xp, dtype, lambda: maths.batchnorm_forward(x, gamma, beta, 1e-3, relu))  # fmt: skip
    for a, b in zip(fast, ref):
        assert a.dtype == dtype and rel(host(be, a), host(be, b)) <= TOL[dtype]
    if relu:
        assert 0.1 < (host(be, fast[0]) == 0).mean() < 0.9
    fast_far, _ = both(monkeypatch, "batchnorm_forward", be.xp, dtype, lambda: maths.batchnorm_forward(far, None, None, 1e-8))  # fmt: skip
    exact = host(be, far).astype(np.float64).var(axis=0)  # 1e-4 at a mean of 1000
    assert rel(host(be, fast_far[2]), exact) <= 1e-6
    gy = be.asarray(rng.standard_normal((300, 7)).astype(dtype))
    _, mean, _, inv_std = ref
    fast, ref = both(monkeypatch, "batchnorm_backward", be.xp, dtype, lambda: maths.batchnorm_backward(gy, x, mean, inv_std, gamma, beta, relu))  # fmt: skip
    for a, b in zip(fast, ref):
        assert a.dtype == dtype and rel(host(be, a), host(be, b)) <= 10 * TOL[dtype]
    moving_var = be.asarray(rng.uniform(0.5, 2, 7).astype(dtype))
    fast, ref = both(monkeypatch, "channel_affine", be.xp, dtype, lambda: maths.batchnorm_inference(x, gamma, beta, mean, moving_var, 1e-3, relu))  # fmt: skip
    for a, b in zip(fast, ref):
        assert a.dtype == dtype and rel(host(be, a), host(be, b)) <= TOL[dtype]


@pytest.mark.parametrize("fill_mode", ["constant", "nearest", "reflect", "mirror", "wrap"])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_affine_resample_kernel(backend_name, monkeypatch, rng, dtype, fill_mode, interpolation):
    from minicnn.layers import RandomRotation, RandomZoom

    be = backend.get_backend(backend_name)
    x = be.asarray(rng.standard_normal((4, 9, 7, 3)).astype(dtype))
    t = np.concatenate([RandomRotation(0.4).transforms(2, 9, 7), RandomZoom(0.5).transforms(2, 9, 7)])  # fmt: skip
    t = be.asarray(t.astype(dtype))
    fast, ref = both(monkeypatch, "affine_resample", be.xp, dtype, lambda: maths.affine_resample(x, t, interpolation, fill_mode, 0.3))  # fmt: skip
    assert fast.dtype == dtype and rel(host(be, fast), host(be, ref)) <= 10 * TOL[dtype]


def test_batched_matmul_splits_the_batch_without_changing_a_bit():
    """Winograd's 36 GEMMs run a share per core, each single-threaded: the same numbers as a
    single-threaded matmul whatever the split, also for the transposed views the backward pass
    hands it; and the calling thread's OpenBLAS thread count is what it was before."""
    from minicnn import _threads
    from minicnn.maths.batched import batched_matmul

    set_threads = _threads.openblas_setter()
    if set_threads is None:
        pytest.skip("numpy's BLAS is not OpenBLAS: batched_matmul is plain matmul")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((36, 1000, 64), dtype=np.float32)  # 110 MFLOP: over the split's
    b = rng.standard_normal((36, 64, 24), dtype=np.float32)  # threshold, as a[5:17] (37)
    threads = _threads.openblas_threads()
    at = a.transpose(0, 2, 1).copy().transpose(0, 2, 1)  # the same values, column-major pages
    set_threads(1)
    try:
        want, want_t = np.matmul(a, b), np.matmul(at, b)
    finally:
        set_threads(threads)
    out = np.empty((36, 1000, 24), dtype=np.float32)
    assert batched_matmul(a, b, out=out) is out
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(batched_matmul(at, b), want_t)
    np.testing.assert_array_equal(batched_matmul(a[5:17], b[5:17]), want[5:17])
    assert _threads.openblas_threads() == threads


def test_dropout_kernel_keeps_where_the_bits_say(rng, dtype):
    """The kernel against the rule written out: keep where an element's 32 bits >= threshold,
    scale what is kept; its gradient the same mask and scale."""
    if kernels.lookup("dropout", np, np.dtype(dtype)) is None:
        pytest.skip("no dropout kernel here")
    from minicnn.kernels.cpu import elementwise

    x = rng.standard_normal((5, 7, 3)).astype(dtype)
    bits = rng.integers(0, 2**32, x.size).astype(np.uint32)
    threshold, scale = round(0.3 * 2**32), 1 / 0.7
    y, keep = elementwise.dropout(x, bits, threshold, scale)
    want = (bits >= threshold).reshape(x.shape)
    np.testing.assert_array_equal(keep, want)
    np.testing.assert_array_equal(y, np.where(want, x * np.dtype(dtype).type(scale), 0))
    gy = rng.standard_normal(x.shape).astype(dtype)
    g = elementwise.dropout_backward(gy, keep, scale)
    assert g.dtype == dtype
    np.testing.assert_array_equal(g, np.where(want, gy * np.dtype(dtype).type(scale), 0))


@pytest.mark.parametrize("kernels_setting", ["auto", "numpy"])
def test_dropout_draws_the_rate_from_the_seeded_generator(monkeypatch, kernels_setting):
    """Kernel or array code: about ``rate`` of the elements dropped (within 5 standard
    deviations), the rest scaled by 1/(1 - rate), the same mask again after the same seed."""
    monkeypatch.setenv("MINICNN_KERNELS", kernels_setting)
    x = np.ones((64, 25, 25, 4), np.float32)
    set_random_seed(7)
    y, keep = maths.dropout(x, 0.3)
    assert y.dtype == np.float32 and keep.shape == x.shape
    sd = (0.3 * 0.7 / x.size) ** 0.5
    assert abs((1 - keep.mean()) - 0.3) < 5 * sd
    np.testing.assert_array_equal(y, keep * np.float32(1 / 0.7))
    np.testing.assert_array_equal(maths.dropout_backward(2 * x, keep, 0.3), 2 * y)
    set_random_seed(7)
    np.testing.assert_array_equal(maths.dropout(x, 0.3)[1], keep)
    assert not np.array_equal(maths.dropout(x, 0.3)[1], keep)
