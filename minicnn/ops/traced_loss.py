"""A loss written as Keras writes one, run by the engine: a ``keras.losses.Loss`` subclass with
its own ``call(y_true, y_pred)``, or a plain function ``fn(y_true, y_pred)`` given to compile
(``losses.LossFunctionWrapper``), written with keras.ops.

Its ``call`` is traced once per pair of per-sample shapes (and dtype) on two symbolic inputs,
y_true and y_pred, into a graph of keras.ops nodes. Each batch then runs that graph forward,
keeping what each op's backward needs; Keras's reduction (``losses.base.reduce``, with the
sample weights) turns the values into the loss and gives d loss / d values, from which the ops'
backward passes run in reverse topological order, summing where a tensor fans out. What reaches
y_pred is the loss's gradient.

Only keras.ops may appear in such a call: a layer there would have weights no optimizer sees,
so it is refused by name.
"""

from __future__ import annotations

import numpy as np

from minicnn.backend import get_array_module
from minicnn.layers.base import Layer
from minicnn.layers.core import InputLayer
from minicnn.layers.graph import Graph
from minicnn.layers.node import KerasTensor
from minicnn.losses.base import reduce
from minicnn.ops.trace import call_traced


class _Target(InputLayer):
    """y_true or y_pred of a traced loss: any per-sample shape, () included (one number per
    sample), which a model's keras.Input does not take."""

    def __init__(self, shape: tuple, dtype, name: str):
        Layer.__init__(self, name=name)
        self.start(shape, dtype)


class TracedLoss:
    """What the engine runs for ``loss`` (whose ``defines_call``): the Loss contract's
    ``forward_backward``, by its traced graph."""

    def __init__(self, loss):
        self.loss = loss
        self.graphs: dict = {}

    def graph(self, t_shape: tuple, p_shape: tuple, dtype) -> Graph:
        key = (t_shape[1:], p_shape[1:], str(dtype))
        if key not in self.graphs:
            lo = self.loss
            yt = _Target(t_shape[1:], dtype, f"{lo.name}_y_true").output
            yp = _Target(p_shape[1:], dtype, f"{lo.name}_y_pred").output
            values, added = call_traced(lo, lambda: lo.call(yt, yp), "call(y_true, y_pred)")
            if added:
                raise ValueError(f"Loss {lo.name!r}: add_loss() inside a loss's call is not supported")  # fmt: skip
            if not isinstance(values, KerasTensor):
                raise TypeError(
                    f"Loss {lo.name!r} ({type(lo).__name__}): call(y_true, y_pred) must return a "
                    f"tensor computed from its inputs with keras.ops. Received: {type(values).__name__}"
                )
            graph = Graph([yt, yp], [values])
            for node in graph.nodes:
                if not getattr(node.layer, "is_op", False):
                    raise TypeError(
                        f"Loss {lo.name!r} ({type(lo).__name__}): its call uses layer "
                        f'"{node.layer.name}" ({type(node.layer).__name__}); a loss may use '
                        "keras.ops only (a layer's weights there would never train)"
                    )
            self.graphs[key] = graph
        return self.graphs[key]

    def prepare(self, t_shape: tuple, p_shape: tuple, dtype) -> None:
        """Trace the call for targets of ``t_shape`` and outputs of ``p_shape`` (batch axis
        first, any size), before a pass changes anything."""
        lo = self.loss
        t, p = (np.empty((1, *s[1:]), dtype=lo._dtype or dtype) for s in (t_shape, p_shape))
        t, p = lo.align_ranks(t, p)
        self.graph(tuple(t.shape), tuple(p.shape), p.dtype)

    def forward(self, t, p):
        """(per-sample values, what ``backward`` needs): the graph run forward on y_true ``t``
        and y_pred ``p`` (arrays of the same dtype, ranks already aligned)."""
        graph = self.graph(tuple(t.shape), tuple(p.shape), p.dtype)
        env = {id(graph.inputs[0]): t, id(graph.inputs[1]): p}
        ctxs = []
        for node in graph.nodes:
            xs = [env[id(x)] for x in node.inputs]
            y, ctx = node.layer.forward(xs[0] if node.single else xs, True)
            ys = y if len(node.outputs) > 1 else [y]
            for o, v in zip(node.outputs, ys):
                env[id(o)] = v
            ctxs.append(ctx)
        return env[id(graph.outputs[0])], (graph, ctxs, p)

    @staticmethod
    def backward(seed, saved):
        """d sum(seed * values) / d y_pred, every op's backward in reverse order."""
        graph, ctxs, p = saved
        xp = get_array_module(p)
        grads = {id(graph.outputs[0]): seed}
        for node, ctx in zip(reversed(graph.nodes), reversed(ctxs)):
            gys = [grads.pop(id(o), None) for o in node.outputs]
            if all(g is None for g in gys):
                continue
            gy = gys[0] if len(gys) == 1 else gys  # several outputs: None where none came
            gx, _ = node.layer.backward(gy, ctx, True)
            for x, g in zip(node.inputs, [gx] if node.single else gx):
                if g is not None:
                    k = id(x)
                    grads[k] = g if k not in grads else grads[k] + g
        g = grads.get(id(graph.inputs[1]))
        g = xp.zeros_like(p) if g is None else xp.broadcast_to(g, p.shape)
        return g.astype(p.dtype, copy=False)

    def forward_backward(self, out, t, logits=None, sample_weight=None):
        """(the reduced loss, its gradient with respect to ``out``), as ``Loss.forward_backward``."""
        lo = self.loss
        dtype = out.dtype
        p = out if lo._dtype in (None, dtype) else out.astype(lo._dtype)
        tt, pp = lo.align_ranks(t.astype(p.dtype, copy=False), p)
        values, saved = self.forward(tt, pp)
        if values.dtype != pp.dtype:
            raise TypeError(f"Loss {lo.name!r}: call(y_true, y_pred) gave {values.dtype} values for {pp.dtype} inputs")  # fmt: skip
        loss, coef = reduce(values, sample_weight, lo.reduction)  # d loss / d values: coef
        seed = get_array_module(values).broadcast_to(values.dtype.type(coef) if not getattr(coef, "ndim", 0) else coef, values.shape)  # fmt: skip
        g = self.backward(seed.astype(values.dtype, copy=False), saved).reshape(p.shape)
        return loss, g.astype(dtype, copy=False)
