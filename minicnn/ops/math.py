"""keras.ops' elementwise maths: unary functions, binary ones with NumPy's broadcasting,
comparisons, ``where`` and ``clip``. Each op is its forward and its gradient, side by side; a
binary op's gradient is summed back over the axes an operand was broadcast along."""

from __future__ import annotations

from minicnn.layers.merging import _broadcast
from minicnn.ops.core import Operation, run, xp_of


class Unary(Operation):
    """y = f(x), elementwise; ``f(xp, x)`` and its gradient ``df(gy, x, y)`` (None: none)."""

    f = staticmethod(lambda xp, x: x)
    df = None

    def compute(self, x):
        return self.f(xp_of(x), x)

    def grads(self, gy, xs, y):
        return [None if self.df is None else self.df(gy, xs[0], y)]

    def output_shape(self, shape):
        return tuple(shape)


def unary(name: str, f, df, doc: str):
    """Register ``name`` as a unary op and return its keras.ops function."""
    cls = type(name.title().replace("_", ""), (Unary,), {"op_name": name, "f": staticmethod(f), "df": staticmethod(df) if df else None})  # fmt: skip

    def op(x):
        return run(cls(), x)

    op.__name__, op.__doc__ = name, doc
    return op


negative = unary("negative", lambda xp, x: -x, lambda g, x, y: -g, "-x")
absolute = unary("absolute", lambda xp, x: xp.abs(x), lambda g, x, y: g * xp_of(x).sign(x), "|x|")  # fmt: skip
abs = absolute  # noqa: A001  (Keras's name)
square = unary("square", lambda xp, x: x * x, lambda g, x, y: 2 * g * x, "x * x")
sqrt = unary("sqrt", lambda xp, x: xp.sqrt(x), lambda g, x, y: g / (2 * y), "the square root")
exp = unary("exp", lambda xp, x: xp.exp(x), lambda g, x, y: g * y, "e ** x")
expm1 = unary("expm1", lambda xp, x: xp.expm1(x), lambda g, x, y: g * (y + 1), "e ** x - 1")
log = unary("log", lambda xp, x: xp.log(x), lambda g, x, y: g / x, "the natural logarithm")
log1p = unary("log1p", lambda xp, x: xp.log1p(x), lambda g, x, y: g / (1 + x), "log(1 + x)")
sin = unary("sin", lambda xp, x: xp.sin(x), lambda g, x, y: g * xp_of(x).cos(x), "sine")
cos = unary("cos", lambda xp, x: xp.cos(x), lambda g, x, y: -g * xp_of(x).sin(x), "cosine")
tanh = unary("tanh", lambda xp, x: xp.tanh(x), lambda g, x, y: g * (1 - y * y), "tanh")
reciprocal = unary("reciprocal", lambda xp, x: 1 / x, lambda g, x, y: -g * y * y, "1 / x")
sign = unary("sign", lambda xp, x: xp.sign(x), None, "the sign (no gradient)")
floor = unary("floor", lambda xp, x: xp.floor(x), None, "floor (no gradient)")
ceil = unary("ceil", lambda xp, x: xp.ceil(x), None, "ceil (no gradient)")
round = unary("round", lambda xp, x: xp.round(x), None, "round half to even (no gradient)")  # noqa: A001


class Binary(Operation):
    """z = f(x, y) with broadcasting; ``dfx(g, x, y, z)``, ``dfy(g, x, y, z)``."""

    f = dfx = dfy = None

    def compute(self, x, y):
        return self.f(xp_of(x, y), x, y)

    def grads(self, gz, xs, z):
        x, y = xs
        return [None if self.dfx is None else self.dfx(gz, x, y, z), None if self.dfy is None else self.dfy(gz, x, y, z)]  # fmt: skip

    def output_shape(self, a, b):
        return tuple(_broadcast(list(a), list(b), [a, b]))


def binary(name: str, f, dfx, dfy, doc: str, out_dtype=None):
    """Register ``name`` as a binary op and return its keras.ops function."""
    attrs = {"op_name": name, "f": staticmethod(f), "out_dtype": out_dtype}
    attrs.update(dfx=staticmethod(dfx) if dfx else None, dfy=staticmethod(dfy) if dfy else None)
    cls = type(name.title().replace("_", ""), (Binary,), attrs)

    def op(x1, x2):
        return run(cls(), x1, x2)

    op.__name__, op.__doc__ = name, doc
    return op


add = binary("add", lambda xp, x, y: x + y, lambda g, x, y, z: g, lambda g, x, y, z: g, "x1 + x2")
subtract = binary("subtract", lambda xp, x, y: x - y, lambda g, x, y, z: g, lambda g, x, y, z: -g, "x1 - x2")  # fmt: skip
multiply = binary("multiply", lambda xp, x, y: x * y, lambda g, x, y, z: g * y, lambda g, x, y, z: g * x, "x1 * x2")  # fmt: skip
divide = binary("divide", lambda xp, x, y: x / y, lambda g, x, y, z: g / y, lambda g, x, y, z: -g * z / y, "x1 / x2")  # fmt: skip
true_divide = divide
power = binary(
    "power",
    lambda xp, x, y: x**y,
    lambda g, x, y, z: g * y * x ** (y - 1),
    lambda g, x, y, z: g * z * xp_of(x, y).log(xp_of(x, y).where(x > 0, x, 1)),
    "x1 ** x2 (the exponent's gradient where x1 > 0)",
)


def _winner(first: bool, largest: bool):
    """The gradient of max/min to one operand: where it holds the result, ties to the first
    operand (as Keras's pairwise maximum and minimum). A NaN is the result (NumPy's maximum
    and minimum give it), so the operand holding it takes the gradient: the first one where
    both do, as max pooling's first NaN does."""

    def grad(g, x, y, z):
        xp = xp_of(x, y, g)
        first_wins = ((x >= y) if largest else (x <= y)) | xp.isnan(x)
        win = first_wins if first else ~first_wins
        return g * xp.broadcast_to(win, g.shape)

    return grad


maximum = binary("maximum", lambda xp, x, y: xp.maximum(x, y), _winner(True, True), _winner(False, True), "elementwise max")  # fmt: skip
minimum = binary("minimum", lambda xp, x, y: xp.minimum(x, y), _winner(True, False), _winner(False, False), "elementwise min")  # fmt: skip

equal = binary("equal", lambda xp, x, y: x == y, None, None, "x1 == x2", "bool")
not_equal = binary("not_equal", lambda xp, x, y: x != y, None, None, "x1 != x2", "bool")
less = binary("less", lambda xp, x, y: x < y, None, None, "x1 < x2", "bool")
less_equal = binary("less_equal", lambda xp, x, y: x <= y, None, None, "x1 <= x2", "bool")
greater = binary("greater", lambda xp, x, y: x > y, None, None, "x1 > x2", "bool")
greater_equal = binary("greater_equal", lambda xp, x, y: x >= y, None, None, "x1 >= x2", "bool")
logical_and = binary("logical_and", lambda xp, x, y: xp.logical_and(x, y), None, None, "x1 and x2", "bool")  # fmt: skip
logical_or = binary("logical_or", lambda xp, x, y: xp.logical_or(x, y), None, None, "x1 or x2", "bool")  # fmt: skip
logical_not = unary("logical_not", lambda xp, x: xp.logical_not(x), None, "not x")


class Where(Operation):
    """x1 where condition holds, else x2 (no gradient to the condition)."""

    op_name = "where"

    def compute(self, c, x, y):
        return xp_of(c, x, y).where(c, x, y)

    def grads(self, g, xs, z):
        c = xs[0]
        xp = xp_of(g)
        return [None, xp.where(c, g, 0), xp.where(c, 0, g)]

    def output_shape(self, c, a, b):
        return tuple(_broadcast(_broadcast(list(c), list(a), [c, a]), list(b), [c, a, b]))


def where(condition, x1=None, x2=None):
    """``x1`` where ``condition``, else ``x2``; the one-argument form is not supported."""
    if x1 is None or x2 is None:
        raise ValueError("ops.where(condition) without x1 and x2 (the indices form) is not supported in minicnn")  # fmt: skip
    return run(Where(), condition, x1, x2)


class Clip(Operation):
    op_name = "clip"

    def compute(self, x):
        return xp_of(x).clip(x, self.settings["lo"], self.settings["hi"])

    def grads(self, g, xs, y):
        x = xs[0]
        return [g * ((x >= self.settings["lo"]) & (x <= self.settings["hi"]))]

    def output_shape(self, shape):
        return tuple(shape)


def clip(x, x_min, x_max):
    """x limited to [x_min, x_max]; the gradient passes where x lies inside."""
    return run(Clip(lo=x_min, hi=x_max), x)
