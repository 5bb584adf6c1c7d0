"""The merging layers: several tensors in, one out. Add, Subtract, Multiply, Average, Maximum and
Minimum combine elementwise, with NumPy's broadcasting over every axis but the batch one (an
axis of size 1 stretches, as in Keras); Concatenate joins along an axis. Each has Keras's
functional form too: ``layers.add([a, b])`` is ``layers.Add()([a, b])``.

Backward: each input's gradient is the output's through that input's partial derivative,
summed back over the axes it was broadcast along.
"""

from __future__ import annotations

from minicnn.backend import get_array_module
from minicnn.layers.base import Layer


def _unbroadcast(g, shape):
    """``g`` summed down to ``shape`` (batch axis first) over the axes it was broadcast along."""
    lead = g.ndim - len(shape)
    if lead:
        g = g.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, d in enumerate(shape) if d == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


class _Merge(Layer):
    """Elementwise merging of a list of at least ``min_inputs`` tensors."""

    min_inputs, max_inputs = 1, None

    def compute_output_shape(self, input_shape):
        kind = type(self).__name__
        if not isinstance(input_shape, list):
            raise ValueError(
                f'Layer "{self.name}" ({kind}) should be called on a list of inputs. '
                f"Received: input_shape={input_shape}"
            )
        n = len(input_shape)
        if n < self.min_inputs or (self.max_inputs and n > self.max_inputs):
            many = "exactly 2" if self.max_inputs == 2 else f"at least {self.min_inputs}"
            raise ValueError(
                f'A "{kind}" layer should be called on {many} inputs. Received: {n} inputs'
            )
        out = list(input_shape[0])
        for shape in input_shape[1:]:
            out = _broadcast(out, list(shape), input_shape)
        return tuple(out)

    def forward(self, xs, training=False):
        y = self.combine(xs)
        keep = self.keeps_inputs and training
        return y, ([x.shape for x in xs], xs if keep else None, y if keep else None)

    keeps_inputs = False  # whether backward needs the inputs themselves

    def combine(self, xs):
        raise NotImplementedError

    def backward(self, gy, ctx, need_gx=True):
        shapes, xs, y = ctx
        return [_unbroadcast(g, s) for g, s in zip(self.partials(gy, xs, y, len(shapes)), shapes)], {}  # fmt: skip


def _broadcast(a: list, b: list, shapes) -> list:
    """Keras's elementwise output shape of two shapes (batch axis first)."""
    if len(a) < len(b):
        a, b = b, a
    out = a[: len(a) - len(b)]
    for i, j in zip(a[len(a) - len(b) :], b):
        if i is None or j is None:
            out.append(i if j == 1 else j if i == 1 else i if i is not None else j)
        elif i == 1 or j == 1 or i == j:
            out.append(j if i == 1 else i)
        else:
            raise ValueError(f"Inputs have incompatible shapes. Received shapes {shapes}")
    return out


class Add(_Merge):
    """The elementwise sum of the inputs."""

    def combine(self, xs):
        y = xs[0] + xs[1] if len(xs) > 1 else xs[0].copy()
        for x in xs[2:]:
            y += x
        return y

    def partials(self, gy, xs, y, n):
        return [gy] * n


class Subtract(_Merge):
    """inputs[0] - inputs[1], for exactly two inputs."""

    min_inputs = max_inputs = 2

    def combine(self, xs):
        return xs[0] - xs[1]

    def partials(self, gy, xs, y, n):
        return [gy, -gy]


class Multiply(_Merge):
    """The elementwise product of the inputs."""

    keeps_inputs = True

    def combine(self, xs):
        y = xs[0] * xs[1] if len(xs) > 1 else xs[0].copy()
        for x in xs[2:]:
            y = y * x
        return y

    def partials(self, gy, xs, y, n):
        out = []
        for i in range(n):
            g = gy
            for j, x in enumerate(xs):
                if j != i:
                    g = g * x
            out.append(g)
        return out


class Average(_Merge):
    """The elementwise mean of the inputs."""

    def combine(self, xs):
        return Add.combine(self, xs) / xs[0].dtype.type(len(xs))

    def partials(self, gy, xs, y, n):
        return [gy / gy.dtype.type(n)] * n


class Maximum(_Merge):
    """The elementwise maximum; its gradient goes to the first input that holds it."""

    keeps_inputs = True
    pick = "maximum"

    def combine(self, xs):
        xp = get_array_module(xs[0])
        y = xs[0]
        for x in xs[1:]:
            y = getattr(xp, self.pick)(y, x)
        return y

    def partials(self, gy, xs, y, n):
        xp = get_array_module(gy)
        taken = xp.zeros(y.shape, dtype=bool)
        out = []
        for x in xs:  # ties, and a NaN result, to the earliest input holding it (Keras's pairs)
            win = ((x == y) | xp.isnan(x)) & ~taken
            taken |= win
            out.append(gy * win)
        return out


class Minimum(Maximum):
    """The elementwise minimum; its gradient goes to the first input that holds it."""

    pick = "minimum"


class Concatenate(Layer):
    """The inputs joined along ``axis`` (default -1, the channels); every other axis must match."""

    def __init__(self, axis: int = -1, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(axis, int):
            raise ValueError(f"Concatenate: axis must be an int. Received: axis={axis!r}")
        self.axis = axis

    def _axis(self, rank: int) -> int:
        axis = self.axis % rank if -rank <= self.axis < rank else None
        if axis in (None, 0):
            raise ValueError(
                f'Layer "{self.name}" (Concatenate): axis {self.axis} is not an axis of the '
                f"inputs (rank {rank}, batch axis 0)"
            )
        return axis

    def compute_output_shape(self, input_shape):
        if not isinstance(input_shape, list) or not input_shape:
            raise ValueError(
                'A "Concatenate" layer should be called on a list of at least 1 input. '
                f"Received: input_shape={input_shape}"
            )
        axis = self._axis(len(input_shape[0]))
        rest = {tuple(d for i, d in enumerate(s) if i != axis) for s in input_shape}
        if len(rest) > 1 or any(len(s) != len(input_shape[0]) for s in input_shape):
            raise ValueError(
                'A "Concatenate" layer requires inputs with matching shapes except for the '
                f"concatenation axis. Received: input_shape={input_shape}"
            )
        out = list(input_shape[0])
        out[axis] = sum(s[axis] for s in input_shape)
        return tuple(out)

    def forward(self, xs, training=False):
        axis = self._axis(xs[0].ndim)
        return get_array_module(xs[0]).concatenate(xs, axis=axis), [x.shape[axis] for x in xs]

    def backward(self, gy, ctx, need_gx=True):
        axis = self._axis(gy.ndim)
        cuts, at = [], 0
        for size in ctx[:-1]:
            at += size
            cuts.append(at)
        return get_array_module(gy).split(gy, cuts, axis=axis), {}

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


def _functional(cls):
    def merge(inputs, **kwargs):
        return cls(**kwargs)(inputs)

    merge.__name__ = cls.__name__.lower()
    merge.__doc__ = f"``{cls.__name__}(**kwargs)(inputs)``: Keras's functional form."
    return merge


add, subtract, multiply = _functional(Add), _functional(Subtract), _functional(Multiply)
average, maximum, minimum = _functional(Average), _functional(Maximum), _functional(Minimum)


def concatenate(inputs, axis: int = -1, **kwargs):
    """``Concatenate(axis, **kwargs)(inputs)``: Keras's functional form."""
    return Concatenate(axis=axis, **kwargs)(inputs)
