"""The merging layers: each one's output against NumPy, every input's gradient by float64 finite
differences (broadcasting included), and Add and Concatenate against PyTorch autograd."""

import numpy as np
import pytest
from gradcheck import check, numerical_gradient
from referee import need

import minicnn as keras
from minicnn import backend, layers

pytestmark = pytest.mark.usefixtures("float64")

CASES = {
    "add": (layers.Add, lambda xs: xs[0] + xs[1] + xs[2], 3),
    "subtract": (layers.Subtract, lambda xs: xs[0] - xs[1], 2),
    "multiply": (layers.Multiply, lambda xs: xs[0] * xs[1] * xs[2], 3),
    "average": (layers.Average, lambda xs: (xs[0] + xs[1]) / 2, 2),
    "maximum": (layers.Maximum, lambda xs: np.maximum(np.maximum(xs[0], xs[1]), xs[2]), 3),
    "minimum": (layers.Minimum, lambda xs: np.minimum(xs[0], xs[1]), 2),
    "concatenate": (
        lambda: layers.Concatenate(axis=-1),
        lambda xs: np.concatenate(xs, axis=-1),
        3,
    ),  # fmt: skip
    "concatenate-axis1": (
        lambda: layers.Concatenate(axis=1),
        lambda xs: np.concatenate(xs, axis=1),
        2,
    ),  # fmt: skip
}


def inputs(case, rng, broadcast):
    n = CASES[case][2]
    if case.startswith("concatenate"):
        return [rng.standard_normal((3, 4, 2, 1 + i)) if case == "concatenate" else rng.standard_normal((3, 2 + i, 2, 3)) for i in range(n)]  # fmt: skip
    shapes = [(3, 4, 5)] * n
    if broadcast:  # a size-1 axis stretches, as in Keras
        shapes[1] = (3, 1, 5)
    xs = [rng.standard_normal(s) for s in shapes]
    if case in ("maximum", "minimum"):  # no near ties that a step of h could flip
        xs = [x + 0.3 * i for i, x in enumerate(xs)]
    return xs


@pytest.mark.parametrize("broadcast", [False, True])
@pytest.mark.parametrize("case", list(CASES))
def test_merge_forward_and_gradients(backend_name, rng, case, broadcast):
    if broadcast and case.startswith("concatenate"):
        pytest.skip("Concatenate does not broadcast")
    be = backend.get_backend(backend_name)
    make, numpy_fn, _ = CASES[case]
    xs = inputs(case, rng, broadcast)
    layer = make()
    y = layer([be.asarray(x) for x in xs])
    np.testing.assert_allclose(be.to_numpy(y), numpy_fn(xs), rtol=1e-12, atol=1e-12)
    r = rng.standard_normal(y.shape)
    out, ctx = layer.forward([be.asarray(x) for x in xs], training=True)
    gxs, grads = layer.backward(be.asarray(r), ctx)
    assert grads == {} and len(gxs) == len(xs)
    for i, x in enumerate(xs):
        f = lambda: float((be.to_numpy(layer.forward([be.asarray(a) for a in xs])[0]) * r).sum())  # noqa: E731
        check(f"{case} dx{i}", be.to_numpy(gxs[i]), numerical_gradient(f, x))


def test_functional_forms_and_symbolic_shapes():
    a, b = keras.Input(shape=(4, 5)), keras.Input(shape=(1, 5))
    assert layers.add([a, b]).shape == (None, 4, 5)
    assert layers.concatenate([a, a], axis=1).shape == (None, 8, 5)
    assert layers.maximum([a, a, a]).history[0].__class__ is layers.Maximum
    with pytest.raises(ValueError, match="should be called on a list of inputs"):
        layers.Add()(a)
    with pytest.raises(ValueError, match="axis 0 is not an axis"):
        layers.Concatenate(axis=0)([a, a])


def test_add_and_concatenate_against_pytorch(rng):
    torch = need("torch")
    xs = [rng.standard_normal((2, 3, 4, 5)) for _ in range(3)]
    r = rng.standard_normal((2, 3, 4, 15))
    for layer, fn, rr in (
        (layers.Add(), lambda ts: ts[0] + ts[1] + ts[2], r[..., :5]),
        (layers.Concatenate(), lambda ts: torch.cat(ts, dim=-1), r),
    ):
        ts = [torch.tensor(x, requires_grad=True) for x in xs]
        yt = fn(ts)
        yt.backward(torch.tensor(rr))
        y, ctx = layer.forward(xs, training=True)
        gxs, _ = layer.backward(rr, ctx)
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12)
        for g, t in zip(gxs, ts):
            np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("kind", ["Maximum", "Minimum"])
def test_a_nan_result_passes_its_gradient_to_the_input_holding_it(kind):
    """NumPy's maximum and minimum give a NaN where an input holds one, so that input holds the
    result and takes its gradient (the earliest, where several do), as max pooling's first NaN
    does: none is dropped, and the finite positions keep their winner."""
    nan = np.nan
    xs = [np.array([[1.0, nan, 5.0, nan]]), np.array([[2.0, 3.0, nan, nan]]), np.array([[0.0, 0.0, 0.0, nan]])]  # fmt: skip
    layer = getattr(layers, kind)()
    y, ctx = layer.forward(xs, training=True)
    gy = np.array([[1.0, 2.0, 3.0, 4.0]])
    gxs, _ = layer.backward(gy, ctx)
    winner = [1 if kind == "Maximum" else 2, 0, 1, 0]  # which input takes each position
    for i, g in enumerate(gxs):
        np.testing.assert_array_equal(g[0], np.where(np.array(winner) == i, gy[0], 0.0))
    assert np.isnan(y[0, 1:]).all()
