"""keras.ops' reductions and shape ops: sum, mean, max, min, std, var, argmax, argmin; reshape,
transpose, concatenate, stack, squeeze, expand_dims, split, take and slicing. Shapes keep the
batch axis (None) where it passes through."""

from __future__ import annotations

import builtins
import math

import numpy as np

from minicnn.ops.core import Operation, run, xp_of


def _axes(axis, ndim: int) -> tuple:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(a % ndim for a in axes)


def _reduced(shape, axis, keepdims):
    axes = _axes(axis, len(shape))
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _expand(g, x_ndim, axis, keepdims):
    """A reduction's gradient put back on the reduced axes, to broadcast against x."""
    if keepdims or axis is None and g.ndim == x_ndim:
        return g
    xp = xp_of(g)
    for a in sorted(_axes(axis, x_ndim)):
        g = xp.expand_dims(g, a)
    return g


class Reduce(Operation):
    def compute(self, x):
        s = self.settings
        return getattr(xp_of(x), self.op_name)(x, axis=s["axis"], keepdims=s["keepdims"])

    def output_shape(self, shape):
        return _reduced(shape, self.settings["axis"], self.settings["keepdims"])

    def grads(self, g, xs, y):
        x, s = xs[0], self.settings
        g = _expand(g, x.ndim, s["axis"], s["keepdims"])
        n = math.prod(x.shape[a] for a in _axes(s["axis"], x.ndim))
        kind = self.op_name
        if kind == "sum":
            return [xp_of(x).broadcast_to(g, x.shape)]
        if kind == "mean":
            return [xp_of(x).broadcast_to(g / g.dtype.type(n), x.shape)]
        yk = _expand(y, x.ndim, s["axis"], s["keepdims"])
        if kind in ("max", "min"):  # to every element that holds it, shared out (Keras: TF's)
            hit = x == yk
            return [g * hit / hit.sum(axis=_axes(s["axis"], x.ndim), keepdims=True)]
        mean = x.mean(axis=_axes(s["axis"], x.ndim), keepdims=True)
        if kind == "var":
            return [g * 2 * (x - mean) / x.dtype.type(n)]
        return [g * (x - mean) / (x.dtype.type(n) * xp_of(x).where(yk > 0, yk, 1))]  # std


def _reduction(name: str, doc: str):
    cls = type(name.title(), (Reduce,), {"op_name": name})

    def op(x, axis=None, keepdims=False):
        return run(cls(axis=axis, keepdims=keepdims), x)

    op.__name__, op.__doc__ = name, doc
    return op


sum = _reduction("sum", "The sum over ``axis`` (all axes by default).")  # noqa: A001
mean = _reduction("mean", "The mean over ``axis``.")
max = _reduction("max", "The largest value over ``axis``; its gradient shared among ties.")  # noqa: A001
min = _reduction("min", "The smallest value over ``axis``.")  # noqa: A001
var = _reduction("var", "The (biased) variance over ``axis``.")
std = _reduction("std", "The (biased) standard deviation over ``axis``.")


class ArgReduce(Operation):
    out_dtype = "int64"

    def compute(self, x):
        s = self.settings
        y = getattr(xp_of(x), self.op_name)(x, axis=s["axis"])
        return xp_of(x).expand_dims(y, s["axis"]) if s["keepdims"] and s["axis"] is not None else y

    def grads(self, g, xs, y):
        return [None]

    def output_shape(self, shape):
        if self.settings["axis"] is None:
            return ()
        return _reduced(shape, self.settings["axis"], self.settings["keepdims"])


class Argmax(ArgReduce):
    op_name = "argmax"


class Argmin(ArgReduce):
    op_name = "argmin"


def argmax(x, axis=None, keepdims=False):
    """The index of the largest value along ``axis`` (no gradient)."""
    return run(Argmax(axis=axis, keepdims=keepdims), x)


def argmin(x, axis=None, keepdims=False):
    return run(Argmin(axis=axis, keepdims=keepdims), x)


class Reshape(Operation):
    op_name = "reshape"

    def compute(self, x):
        return x.reshape(self.settings["shape"])

    def grads(self, g, xs, y):
        return [g.reshape(xs[0].shape)]

    def output_shape(self, shape):
        target = list(self.settings["shape"])
        if None in shape[:1] and target and target[0] in (-1, None):
            known = math.prod(d for d in target[1:] if d != -1)
            rest = math.prod(shape[1:])
            return (None, *(rest // known if d == -1 else d for d in target[1:]))
        size = math.prod(d for d in shape if d is not None)
        known = math.prod(d for d in target if d != -1)
        return tuple(size // known if d == -1 else d for d in target)


def reshape(x, newshape):
    """x with the shape ``newshape`` (the batch axis included, as Keras's ops.reshape takes it)."""
    return run(Reshape(shape=tuple(-1 if d is None else d for d in newshape)), x)


class Transpose(Operation):
    op_name = "transpose"

    def _perm(self, ndim):
        axes = self.settings["axes"]
        return tuple(range(ndim))[::-1] if axes is None else tuple(a % ndim for a in axes)

    def compute(self, x):
        return x.transpose(self._perm(x.ndim))

    def grads(self, g, xs, y):
        return [g.transpose(np.argsort(self._perm(g.ndim)))]

    def output_shape(self, shape):
        return tuple(shape[a] for a in self._perm(len(shape)))


def transpose(x, axes=None):
    return run(Transpose(axes=axes), x)


class Concatenate(Operation):
    op_name = "concatenate"

    def compute(self, *xs):
        return xp_of(*xs).concatenate(xs, axis=self.settings["axis"])

    def grads(self, g, xs, y):
        axis = self.settings["axis"] % g.ndim
        cuts = np.cumsum([x.shape[axis] for x in xs])[:-1]
        return xp_of(g).split(g, [int(c) for c in cuts], axis=axis)

    def output_shape(self, *shapes):
        axis = self.settings["axis"] % len(shapes[0])
        out = list(shapes[0])
        out[axis] = None if any(s[axis] is None for s in shapes) else builtins.sum(s[axis] for s in shapes)  # fmt: skip
        return tuple(out)


def concatenate(xs, axis=0):
    """The arrays joined along ``axis`` (Keras's default: 0)."""
    return run(Concatenate(axis=axis), *xs)


class Stack(Operation):
    op_name = "stack"

    def compute(self, *xs):
        return xp_of(*xs).stack(xs, axis=self.settings["axis"])

    def grads(self, g, xs, y):
        axis = self.settings["axis"] % g.ndim
        return [xp_of(g).take(g, i, axis=axis) for i in range(len(xs))]

    def output_shape(self, *shapes):
        axis = self.settings["axis"] % (len(shapes[0]) + 1)
        return (*shapes[0][:axis], len(shapes), *shapes[0][axis:])


def stack(xs, axis=0):
    return run(Stack(axis=axis), *xs)


class ExpandDims(Operation):
    op_name = "expand_dims"

    def compute(self, x):
        return xp_of(x).expand_dims(x, self.settings["axis"])

    def grads(self, g, xs, y):
        return [g.reshape(xs[0].shape)]

    def output_shape(self, shape):
        axis = self.settings["axis"] % (len(shape) + 1)
        return (*shape[:axis], 1, *shape[axis:])


def expand_dims(x, axis):
    return run(ExpandDims(axis=axis), x)


class Squeeze(Operation):
    op_name = "squeeze"

    def compute(self, x):
        return xp_of(x).squeeze(x, axis=self.settings["axis"])

    def grads(self, g, xs, y):
        return [g.reshape(xs[0].shape)]

    def output_shape(self, shape):
        axis = self.settings["axis"]
        axes = (
            [i for i, d in enumerate(shape) if d == 1] if axis is None else _axes(axis, len(shape))
        )
        return tuple(d for i, d in enumerate(shape) if i not in axes)


def squeeze(x, axis=None):
    return run(Squeeze(axis=axis), x)


class Take(Operation):
    op_name = "take"

    def compute(self, x):
        return xp_of(x).take(x, self.settings["indices"], axis=self.settings["axis"])

    def grads(self, g, xs, y):
        x, s = xs[0], self.settings
        xp = xp_of(g)
        idx = xp.asarray(s["indices"]).reshape(-1)
        if s["axis"] is None:  # x read as flat
            gx = xp.zeros(x.size, dtype=g.dtype)
            _scatter_add(xp, gx, idx, g.reshape(-1))
            return [gx.reshape(x.shape)]
        gx = xp.zeros(x.shape, dtype=g.dtype)
        moved = xp.moveaxis(gx, s["axis"], 0)  # a view: (taken axis, the rest)
        gm = xp.moveaxis(g.reshape(*x.shape[: s["axis"] % x.ndim], idx.size, *x.shape[s["axis"] % x.ndim + 1 :]), s["axis"], 0)  # fmt: skip
        _scatter_add(xp, moved, idx, gm)
        return [gx]

    def output_shape(self, shape):
        idx = np.shape(self.settings["indices"])
        axis = self.settings["axis"]
        if axis is None:
            return tuple(idx)
        axis %= len(shape)
        return (*shape[:axis], *idx, *shape[axis + 1 :])


def take(x, indices, axis=None):
    """Elements of x at ``indices`` along ``axis`` (constant indices; gradient to x)."""
    return run(Take(indices=np.asarray(indices), axis=axis), x)


class GetItem(Operation):
    """x[key] for basic keys: ints, slices, Ellipsis and None."""

    op_name = "get_item"

    def compute(self, x):
        return x[self.settings["key"]]

    def grads(self, g, xs, y):
        gx = xp_of(g).zeros(xs[0].shape, dtype=g.dtype)
        gx[self.settings["key"]] = g
        return [gx]

    def output_shape(self, shape):
        probe = np.empty([2 if d is None else d for d in shape], dtype=np.int8)
        out = probe[self.settings["key"]].shape  # the key's effect on a stand-in of the shape
        return (None, *out[1:]) if shape and shape[0] is None and out[:1] == (2,) else tuple(out)


def get_item(x, key):
    key = key if isinstance(key, tuple) else (key,)
    if not all(isinstance(k, (int, slice, type(Ellipsis), type(None))) for k in key):
        raise TypeError(f"Indexing a symbolic tensor takes ints, slices, ... and None. Received: {key!r}")  # fmt: skip
    return run(GetItem(key=key), x)


class Split(Operation):
    op_name = "split"

    def _cuts(self, size):
        k = self.settings["sections"]
        if isinstance(k, int):
            if size % k:
                raise ValueError(f"ops.split: {k} equal parts do not divide an axis of {size}")
            return [size // k * i for i in range(1, k)]
        return list(k)

    def compute(self, x):
        return xp_of(x).split(x, self._cuts(x.shape[self.settings["axis"]]), axis=self.settings["axis"])  # fmt: skip

    def forward(self, xs, training=False):
        ys = self.compute(*xs)
        return list(ys), (xs if training else None)

    def backward(self, gys, ctx, need_gx=True):
        x = ctx[0]
        xp = xp_of(x)
        parts = xp.split(xp.zeros_like(x), self._cuts(x.shape[self.settings["axis"]]), axis=self.settings["axis"])  # fmt: skip
        return [xp.concatenate([p if g is None else g for p, g in zip(parts, gys)], axis=self.settings["axis"])], {}  # fmt: skip

    def output_shape(self, shape):
        axis = self.settings["axis"] % len(shape)
        edges = [0, *self._cuts(shape[axis]), shape[axis]]
        return [(*shape[:axis], b - a, *shape[axis + 1 :]) for a, b in zip(edges, edges[1:])]


def split(x, indices_or_sections, axis=0):
    """x cut into pieces along ``axis``: a list of tensors."""
    return run(Split(sections=indices_or_sections, axis=axis), x)


def _scatter_add(xp, target, index, values):
    """target[index] += values, repeated indices adding up."""
    if xp is np:
        np.add.at(target, index, values)
    else:
        import cupyx

        cupyx.scatter_add(target, index, values)
