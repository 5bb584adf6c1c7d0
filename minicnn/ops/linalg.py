"""keras.ops' products: matmul, dot and einsum, with their gradients as products again."""

from __future__ import annotations

import numpy as np

from minicnn.layers.merging import _broadcast
from minicnn.ops.core import Operation, run, xp_of


class Matmul(Operation):
    """a @ b with NumPy's matmul rules (stacks of matrices broadcast; 1-D operands promoted)."""

    op_name = "matmul"

    def compute(self, a, b):
        return xp_of(a, b).matmul(a, b)

    def grads(self, g, xs, y):
        a, b = xs
        xp = xp_of(a, b, g)
        a2 = a[None, :] if a.ndim == 1 else a  # promote as matmul does, then undo
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = g
        if a.ndim == 1:
            g2 = xp.expand_dims(g2, -2)
        if b.ndim == 1:
            g2 = xp.expand_dims(g2, -1)
        ga = xp.matmul(g2, xp.swapaxes(b2, -1, -2))
        gb = xp.matmul(xp.swapaxes(a2, -1, -2), g2)
        ga = ga[..., 0, :] if a.ndim == 1 else ga
        gb = gb[..., 0] if b.ndim == 1 else gb
        return [ga, gb]

    def output_shape(self, a, b):
        if len(a) == 1 and len(b) == 1:
            return ()
        a2 = (1, *a) if len(a) == 1 else tuple(a)
        b2 = (*b, 1) if len(b) == 1 else tuple(b)
        if a2[-1] is not None and b2[-2] is not None and a2[-1] != b2[-2]:
            raise ValueError(f"ops.matmul: inner dimensions differ. Received shapes {a} and {b}")
        batch = _broadcast(list(a2[:-2]), list(b2[:-2]), [a, b])
        out = [*batch, a2[-2], b2[-1]]
        if len(a) == 1:
            out.pop(-2)
        if len(b) == 1:
            out.pop(-1)
        return tuple(out)


def matmul(x1, x2):
    return run(Matmul(), x1, x2)


def dot(x1, x2):
    """NumPy's dot: the same as matmul for vectors and matrices; other ranks are refused."""
    for x in (x1, x2):
        if len(np.shape(x) if not hasattr(x, "history") else x.shape) > 2:
            raise ValueError("ops.dot on arrays of rank above 2 is not supported in minicnn: use ops.matmul or ops.einsum")  # fmt: skip
    return matmul(x1, x2)


def _parse(subscripts: str, n: int) -> tuple[list[str], str]:
    if "..." in subscripts:
        raise ValueError(f"ops.einsum: ellipses are not supported in minicnn. Received: {subscripts!r}")  # fmt: skip
    ins, arrow, out = subscripts.replace(" ", "").partition("->")
    terms = ins.split(",")
    if len(terms) != n:
        raise ValueError(f"ops.einsum: {subscripts!r} names {len(terms)} operands. Received: {n}")
    if not arrow:  # NumPy's implicit output: the labels seen once, sorted
        out = "".join(sorted(c for c in set(ins) - {","} if ins.count(c) == 1))
    for t in terms:
        if len(set(t)) != len(t):
            raise ValueError(f"ops.einsum: a label repeated within one operand (a trace or diagonal) is not supported. Received: {subscripts!r}")  # fmt: skip
    return terms, out


class Einsum(Operation):
    """Any einsum whose operands each name a label at most once and no ellipsis. Operand i's
    gradient is the einsum of the output's gradient with the other operands, its labels as the
    output; a label only operand i has (summed away) comes back by broadcasting."""

    op_name = "einsum"

    def compute(self, *xs):
        return xp_of(*xs).einsum(self.settings["subscripts"], *xs)

    def grads(self, g, xs, y):
        terms, out = _parse(self.settings["subscripts"], len(xs))
        xp = xp_of(g, *xs)
        grads = []
        for i, (term, x) in enumerate(zip(terms, xs)):
            others = [t for j, t in enumerate(terms) if j != i]
            keep = [c for c in term if c in out or any(c in t for t in others)]
            expr = ",".join([out, *others]) + "->" + "".join(keep)
            gi = xp.einsum(expr, g, *[xs[j] for j in range(len(xs)) if j != i])
            for axis, c in enumerate(term):  # labels only x has: broadcast back
                if c not in keep:
                    gi = xp.expand_dims(gi, axis)
            grads.append(xp.broadcast_to(gi, x.shape))
        return grads

    def output_shape(self, *shapes):
        terms, out = _parse(self.settings["subscripts"], len(shapes))
        size = {}
        for term, shape in zip(terms, shapes):
            if len(term) != len(shape):
                raise ValueError(f"ops.einsum: {term!r} does not fit an operand of shape {shape}")
            for c, d in zip(term, shape):
                if d is not None:
                    size[c] = d
        return tuple(size.get(c) for c in out)


def einsum(subscripts: str, *operands):
    """Einstein summation over the operands (see Einsum for what minicnn supports)."""
    _parse(subscripts, len(operands))  # refused now, not when it runs
    return run(Einsum(subscripts=subscripts), *operands)
