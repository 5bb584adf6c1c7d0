"""How a keras.ops function runs: on arrays it computes at once (NumPy or CuPy); on symbolic
tensors it records one ``Operation`` node in the graph, as a layer call does, whose forward and
backward are written by hand beside each other like every layer's.

    ops.add(x, y)           arrays -> an array;  KerasTensors -> a KerasTensor (an Add op node)

While a custom layer's ``call`` (or a Lambda's function, or a subclassed model's ``call``) is
traced, a weight of that layer passed to an op becomes a ``WeightRead`` node, so its gradient
reaches the weight; and ``add_loss`` values are collected (``tracing``).
"""

from __future__ import annotations

import contextlib

import numpy as np

from minicnn.backend import get_array_module, get_backend
from minicnn.layers.base import Layer, unique_name
from minicnn.layers.node import KerasTensor

_TRACING: list = []  # the trace under way (innermost last): its owner's weights and losses


class Trace:
    """What one trace collects: the weights of ``owner`` an op may read, the add_loss values."""

    def __init__(self, owner):
        self.owner = owner
        self.losses: list = []
        self.reads: dict = {}  # id(weight array) -> its WeightRead tensor (one read per weight)

    def weight_tensor(self, value):
        """The symbolic read of ``value`` if it is one of the owner's weights, else None."""
        for layer in _owners(self.owner):
            for arrays in (layer.params, layer.state):
                for name, a in arrays.items():
                    if a is value:
                        if id(a) not in self.reads:
                            self.reads[id(a)] = WeightRead(layer, name).symbolic_call([], False)
                        return self.reads[id(a)]
        return None


def _owners(layer) -> list:
    """The layer and the layers set as its attributes (Keras tracks those as sublayers)."""
    if not isinstance(layer, Layer):  # a traced loss: it has no weights
        return []
    out = [layer]
    for v in vars(layer).values():
        if isinstance(v, Layer) and v is not layer:
            out.append(v)
    return out


@contextlib.contextmanager
def tracing(owner):
    trace = Trace(owner)
    _TRACING.append(trace)
    try:
        yield trace
    finally:
        _TRACING.pop()


def current_trace():
    return _TRACING[-1] if _TRACING else None


def symbolic(value) -> bool:
    return isinstance(value, KerasTensor)


def as_input(value):
    """A KerasTensor as it is; a traced layer's weight as its WeightRead tensor; else None (a
    constant the op keeps)."""
    if isinstance(value, KerasTensor):
        return value
    trace = current_trace()
    if trace is not None and hasattr(value, "shape") and hasattr(value, "dtype"):
        return trace.weight_tensor(value)
    return None


class Operation(Layer):
    """One call of a keras.ops function on symbolic tensors. A subclass writes ``compute`` (the
    maths on arrays, over every operand), ``grads`` (each operand's gradient from the output's,
    None where it has none) and ``output_shape`` (from every operand's shape). The node holds
    the tensor operands; the others (numbers, arrays) are the op's ``consts``."""

    op_name = "operation"
    out_dtype = None  # a dtype other than floatx (comparisons: bool; argmax: int64)
    is_op = True

    def __init__(self, **settings):
        super().__init__(name=unique_name(self.op_name))
        self.built = True
        self.settings = settings
        self.arity, self.slots, self.consts = 0, [], {}

    def compute(self, *xs):
        raise NotImplementedError

    def grads(self, gy, xs, y) -> list:
        raise NotImplementedError

    def output_shape(self, *shapes):
        raise NotImplementedError

    def _full(self, values, const=lambda c: c) -> list:
        """The tensor slots' values with the constants put back, in operand order."""
        it = iter(values)
        return [const(self.consts[i]) if i in self.consts else next(it) for i in range(self.arity)]

    def compute_output_shape(self, input_shape):
        shapes = input_shape if isinstance(input_shape, list) else [input_shape]
        return self.output_shape(*self._full(shapes, lambda c: tuple(np.shape(c))))

    def forward(self, xs, training=False):
        full = self._full(xs)
        y = self.compute(*full)
        return y, ((full, y) if training else None)

    def backward(self, gy, ctx, need_gx=True):
        full, y = ctx
        gs = self.grads(gy, full, y)
        return [_fit(gs[i], full[i]) for i in self.slots], {}

    def __repr__(self) -> str:
        return f"<Operation {self.op_name} {self.settings}>"


def _fit(g, x):
    """A gradient summed down to ``x``'s shape (broadcasting), or None."""
    if g is None or not hasattr(x, "shape"):
        return None
    if g.shape == x.shape:
        return g
    lead = g.ndim - x.ndim
    if lead > 0:
        g = g.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, d in enumerate(x.shape) if d == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


class WeightRead(Operation):
    """A traced layer's weight read inside its ``call``: the gradient that reaches it is the
    weight's (``plan.steps.WeightStep`` hands it to the layer that owns it)."""

    op_name = "weight_read"

    def __init__(self, owner, weight: str):
        super().__init__()
        self.owner, self.weight = owner, weight

    def value(self):
        return self.owner._weight(self.weight)

    def compute(self):
        return self.value()

    def output_shape(self):
        return tuple(self.value().shape)

    def forward(self, xs, training=False):
        return self.value(), None

    def backward(self, gy, ctx, need_gx=True):
        return [], {}


def run(op: Operation, *args):
    """``op`` on ``args``: at once on arrays, or as a graph node when any is symbolic (or a
    traced layer's weight). Other arguments (numbers, arrays) are kept as constants."""
    inputs = [as_input(a) for a in args]
    if all(t is None for t in inputs):
        return op.compute(*args)
    op.arity = len(args)
    op.slots = [i for i, t in enumerate(inputs) if t is not None]
    op.consts = {i: a for i, (a, t) in enumerate(zip(args, inputs)) if t is None}
    return op.symbolic_call([inputs[i] for i in op.slots], False)


def xp_of(*xs):
    """The array module of the first array among ``xs`` that is not NumPy's, else NumPy."""
    for x in xs:
        if hasattr(x, "shape") and get_array_module(x) is not np:
            return get_array_module(x)
    return np


def default_xp():
    """The array module new arrays are made on (the current backend's)."""
    return get_backend().xp
