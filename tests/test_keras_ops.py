"""keras.ops: each function on arrays against NumPy; each differentiable op's gradient (every
operand) by float64 finite differences, through the node it records on symbolic tensors; the
same graph run by a model against the eager values; a few against PyTorch autograd."""

import numpy as np
import pytest
from gradcheck import check, numerical_gradient
from referee import need

import minicnn as keras
from minicnn import ops

pytestmark = pytest.mark.usefixtures("float64")

A = (3, 4)
MASK = np.array([[True, False, True, False]] * 3)  # a constant condition for where

# name: (function of the operands, operand shapes, NumPy's value)
CASES = {
    "add": (ops.add, [A, (1, 4)], lambda a, b: a + b),
    "subtract": (ops.subtract, [A, A], lambda a, b: a - b),
    "multiply": (ops.multiply, [A, (3, 1)], lambda a, b: a * b),
    "divide": (ops.divide, [A, A], lambda a, b: a / b),
    "power": (ops.power, [A, A], lambda a, b: a**b),
    "maximum": (ops.maximum, [A, A], np.maximum),
    "minimum": (ops.minimum, [A, A], np.minimum),
    "negative": (ops.negative, [A], np.negative),
    "abs": (ops.abs, [A], np.abs),
    "square": (ops.square, [A], np.square),
    "sqrt": (ops.sqrt, [A], np.sqrt),
    "exp": (ops.exp, [A], np.exp),
    "log": (ops.log, [A], np.log),
    "log1p": (ops.log1p, [A], np.log1p),
    "sin": (ops.sin, [A], np.sin),
    "cos": (ops.cos, [A], np.cos),
    "tanh": (ops.tanh, [A], np.tanh),
    "reciprocal": (ops.reciprocal, [A], lambda a: 1 / a),
    "clip": (lambda a: ops.clip(a, 0.3, 0.7), [A], lambda a: np.clip(a, 0.3, 0.7)),
    "where": (lambda a, b: ops.where(MASK, a, b), [A, A], lambda a, b: np.where(MASK, a, b)),
    "sum": (lambda a: ops.sum(a, axis=1), [A], lambda a: a.sum(axis=1)),
    "mean": (
        lambda a: ops.mean(a, axis=0, keepdims=True),
        [A],
        lambda a: a.mean(axis=0, keepdims=True),
    ),  # fmt: skip
    "max": (lambda a: ops.max(a, axis=-1), [A], lambda a: a.max(axis=-1)),
    "min": (lambda a: ops.min(a), [A], lambda a: a.min()),
    "var": (lambda a: ops.var(a, axis=1), [A], lambda a: a.var(axis=1)),
    "std": (lambda a: ops.std(a, axis=(0, 1)), [A], lambda a: a.std()),
    "reshape": (lambda a: ops.reshape(a, (2, 6)), [A], lambda a: a.reshape(2, 6)),
    "transpose": (ops.transpose, [(2, 3, 4)], lambda a: a.transpose()),
    "concatenate": (
        lambda a, b: ops.concatenate([a, b], axis=1),
        [A, (3, 2)],
        lambda a, b: np.concatenate([a, b], axis=1),
    ),  # fmt: skip
    "stack": (
        lambda a, b: ops.stack([a, b], axis=1),
        [A, A],
        lambda a, b: np.stack([a, b], axis=1),
    ),  # fmt: skip
    "squeeze": (lambda a: ops.squeeze(a, axis=1), [(3, 1, 4)], lambda a: a.squeeze(1)),
    "expand_dims": (lambda a: ops.expand_dims(a, 1), [A], lambda a: a[:, None]),
    "take": (lambda a: ops.take(a, [2, 0, 2], axis=1), [A], lambda a: a[:, [2, 0, 2]]),
    "get_item": (lambda a: a[:, 1:3], [A], lambda a: a[:, 1:3]),
    "matmul": (ops.matmul, [(2, 3, 4), (4, 5)], np.matmul),
    "dot": (ops.dot, [A, (4, 2)], np.dot),
    "einsum": (
        lambda a, b: ops.einsum("bij,jk->bik", a, b),
        [(2, 3, 4), (4, 5)],
        lambda a, b: np.einsum("bij,jk->bik", a, b),
    ),  # fmt: skip
    "einsum-sum": (lambda a: ops.einsum("ij->j", a), [A], lambda a: a.sum(0)),
    "relu": (ops.relu, [A], lambda a: np.maximum(a, 0)),
    "sigmoid": (ops.sigmoid, [A], lambda a: 1 / (1 + np.exp(-a))),
    "softplus": (ops.softplus, [A], lambda a: np.log1p(np.exp(a))),
    "softsign": (ops.softsign, [A], lambda a: a / (1 + np.abs(a))),
    "silu": (ops.silu, [A], lambda a: a / (1 + np.exp(-a))),
    "gelu": (
        ops.gelu,
        [A],
        lambda a: 0.5 * a * (1 + np.tanh(np.sqrt(2 / np.pi) * (a + 0.044715 * a**3))),
    ),  # fmt: skip
    "leaky_relu": (ops.leaky_relu, [A], lambda a: np.where(a > 0, a, 0.2 * a)),
    "elu": (ops.elu, [A], lambda a: np.where(a > 0, a, np.expm1(a))),
    "selu": (
        ops.selu,
        [A],
        lambda a: 1.0507009873554805 * np.where(a > 0, a, 1.6732632423543772 * np.expm1(a)),
    ),  # fmt: skip
    "hard_sigmoid": (ops.hard_sigmoid, [A], lambda a: np.clip(a / 6 + 0.5, 0, 1)),
    "log_sigmoid": (ops.log_sigmoid, [A], lambda a: -np.log1p(np.exp(-a))),
    "softmax": (ops.softmax, [A], lambda a: np.exp(a) / np.exp(a).sum(-1, keepdims=True)),
    "log_softmax": (ops.log_softmax, [A], lambda a: a - np.log(np.exp(a).sum(-1, keepdims=True))),
}


def operands(shapes, rng, name):
    xs = [rng.uniform(0.2, 1.5, s) for s in shapes]
    if name in ("relu", "leaky_relu", "elu", "selu", "abs", "sign", "silu", "gelu", "sigmoid", "softsign", "log_sigmoid"):  # fmt: skip
        xs = [x * np.where(rng.random(x.shape) < 0.5, -1, 1) for x in xs]  # both sides of 0
    if name == "hard_sigmoid":
        xs = [rng.uniform(-2.5, 2.5, s) for s in shapes]
    return xs


@pytest.mark.parametrize("name", list(CASES))
def test_op_on_arrays_matches_numpy(name, rng):
    fn, shapes, ref = CASES[name]
    xs = operands(shapes, rng, name)
    np.testing.assert_allclose(fn(*xs), ref(*xs), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", list(CASES))
def test_op_gradients_by_finite_differences(name, rng):
    """The node an op records on symbolic tensors: its forward is the eager value, and its
    backward each operand's gradient of sum(y * r)."""
    fn, shapes, _ = CASES[name]
    xs = operands(shapes, rng, name)
    inputs = [keras.Input(shape=s[1:]) for s in shapes]
    y = fn(*inputs)
    op = y.history[0]
    out, ctx = op.forward(xs, training=True)
    np.testing.assert_allclose(out, fn(*xs), rtol=1e-12, atol=1e-12)
    r = rng.standard_normal(np.shape(out))
    grads, _ = op.backward(r, ctx)
    for i, x in enumerate(xs):
        if grads[i] is None:
            continue
        f = lambda: float((op.forward(xs)[0] * r).sum())  # noqa: E731
        check(f"ops.{name} d{i}", grads[i], numerical_gradient(f, x))


@pytest.mark.parametrize("name", ["maximum", "minimum"])
def test_a_nan_result_passes_its_gradient_to_the_operand_holding_it(name):
    """Where an operand is NaN the result is (NumPy's maximum and minimum), so its gradient goes
    there, to the first operand where both are: none is dropped. Ties still go to the first."""
    nan = np.nan
    x, y = np.array([[nan, 1.0, nan, 2.0, 7.0]]), np.array([[1.0, nan, nan, 2.0, -7.0]])
    op = getattr(ops, name)(keras.Input(shape=(5,)), keras.Input(shape=(5,))).history[0]
    out, ctx = op.forward([x, y], training=True)
    (gx, gy), _ = op.backward(np.arange(1.0, 6.0)[None], ctx)
    first = [1, 0, 1, 1, 1 if name == "maximum" else 0]  # 1 where x takes the gradient
    np.testing.assert_array_equal(gx[0], np.where(first, np.arange(1.0, 6.0), 0))
    np.testing.assert_array_equal(gx + gy, np.arange(1.0, 6.0)[None])
    assert np.isnan(out[0, :3]).all()


def test_a_graph_of_ops_runs_as_the_eager_ops_do(rng):
    x_in = keras.Input(shape=(5,))
    h = ops.tanh(x_in) * 2.0 + ops.mean(x_in, axis=-1, keepdims=True)
    h = ops.concatenate([h, ops.square(x_in)[:, :2]], axis=-1)
    out = ops.softmax(ops.matmul(h, np.ones((7, 3)) / 7))
    model = keras.Model(x_in, out)
    x = rng.standard_normal((4, 5))
    eager = ops.softmax(ops.matmul(np.concatenate([np.tanh(x) * 2 + x.mean(-1, keepdims=True), (x * x)[:, :2]], -1), np.ones((7, 3)) / 7))  # fmt: skip
    np.testing.assert_allclose(model.predict(x, verbose=0), eager, rtol=1e-12)
    assert [type(layer).__name__ for layer in model.layers] == ["InputLayer"]  # ops are not layers


def test_creation_conversion_and_names():
    assert ops.ones((2, 3)).dtype == np.float64 and ops.zeros((2,)).shape == (2,)
    assert ops.arange(4).dtype == np.int32 and ops.full((2,), 7.0)[1] == 7.0
    assert ops.eye(3)[1, 1] == 1 and ops.shape(keras.Input((3, 4))) == (None, 3, 4)
    np.testing.assert_array_equal(ops.one_hot(np.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])
    assert ops.cast(np.ones(2), "int32").dtype == np.int32
    assert isinstance(ops.convert_to_numpy(ops.convert_to_tensor([1.0, 2.0])), np.ndarray)
    with pytest.raises(TypeError, match="symbolic"):
        ops.convert_to_numpy(keras.Input((3,)))
    with pytest.raises(
        AttributeError, match=r"keras.ops \(minicnn.ops\) has no fft: it is not implemented"
    ):
        ops.fft  # noqa: B018
    with pytest.raises(ValueError, match="ellipses are not supported"):
        ops.einsum("...i,i->...", np.ones((2, 3)), np.ones(3))
    with pytest.raises(ValueError, match="repeated within one operand"):
        ops.einsum("ii->i", np.ones((3, 3)))


@pytest.mark.parametrize(
    "name, theirs",
    [
        ("einsum", lambda t, a, b: t.einsum("bij,jk->bik", a, b)),
        ("matmul", lambda t, a, b: t.matmul(a, b)),
        ("log_softmax", lambda t, a: t.log_softmax(a, dim=-1)),
        ("gelu", lambda t, a: t.nn.functional.gelu(a, approximate="tanh")),
        ("std", lambda t, a: a.std(dim=(0, 1), unbiased=False)),
        ("softplus", lambda t, a: t.nn.functional.softplus(a)),
    ],
)
def test_ops_against_pytorch(rng, name, theirs):
    """Forward and every operand's gradient, against PyTorch autograd."""
    torch = need("torch")
    fn, shapes, _ = CASES[name]
    xs = operands(shapes, rng, name)
    op = fn(*[keras.Input(shape=s[1:]) for s in shapes]).history[0]
    y, ctx = op.forward(xs, training=True)
    ts = [torch.tensor(x, requires_grad=True) for x in xs]
    t = theirs(torch, *ts)
    r = rng.standard_normal(tuple(t.shape))
    t.backward(torch.tensor(r))
    np.testing.assert_allclose(y, t.detach().numpy(), rtol=1e-10, atol=1e-12)
    grads, _ = op.backward(r, ctx)
    for g, tt in zip(grads, ts):
        np.testing.assert_allclose(g, tt.grad.numpy(), rtol=1e-10, atol=1e-12)
