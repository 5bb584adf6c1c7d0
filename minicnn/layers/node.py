"""The graph's two small pieces, as in Keras: a ``KerasTensor`` is a symbolic value (a shape and a
dtype, no data), and a ``Node`` is one call of a layer on symbolic tensors.

    inputs = keras.Input(shape=(28, 28, 1))      # a KerasTensor made by an InputLayer's node
    x = layers.Conv2D(32, 3)(inputs)             # the call records a Node: Conv2D, [inputs] -> [x]

Each tensor remembers the node that made it (``history``: the layer, which of its calls, which
of that call's outputs), so a model can walk back from its outputs to its inputs. Nothing here
computes: ``minicnn.plan`` turns the nodes into the steps that run.
"""

from __future__ import annotations


class KerasTensor:
    """A value a graph will compute: ``shape`` with the batch axis first (None), ``dtype``, and
    the node that makes it (``history = (layer, node_index, tensor_index)``)."""

    def __init__(self, shape, dtype="float32", name: str | None = None, history=None):
        self.shape = tuple(None if d is None else int(d) for d in shape)
        self.dtype = str(dtype)
        self.name = name
        self.history = history
        self._node = None  # the Node that makes it (set when the node is made)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def node(self):
        """The Node that makes this tensor."""
        return self._node

    def __repr__(self) -> str:
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, name={self.name}>"

    # A symbolic tensor has no values: refuse what would silently treat it as data.
    def __array__(self, *args, **kwargs):
        raise TypeError(
            f"{self!r} is symbolic: it has no values to turn into an array. Build a model "
            "with keras.Model(inputs, outputs) and call predict() on data"
        )

    def __bool__(self):
        raise TypeError(f"{self!r} is symbolic: its truth value is not known until it runs")

    def __len__(self):
        raise TypeError(f"{self!r} is symbolic: use .shape instead of len()")

    # Arithmetic records keras.ops nodes, as in Keras (NumPy defers to these, not the reverse)
    __array_ufunc__ = None

    def __add__(self, other):
        return _ops().add(self, other)

    def __radd__(self, other):
        return _ops().add(other, self)

    def __sub__(self, other):
        return _ops().subtract(self, other)

    def __rsub__(self, other):
        return _ops().subtract(other, self)

    def __mul__(self, other):
        return _ops().multiply(self, other)

    def __rmul__(self, other):
        return _ops().multiply(other, self)

    def __truediv__(self, other):
        return _ops().divide(self, other)

    def __rtruediv__(self, other):
        return _ops().divide(other, self)

    def __matmul__(self, other):
        return _ops().matmul(self, other)

    def __rmatmul__(self, other):
        return _ops().matmul(other, self)

    def __pow__(self, other):
        return _ops().power(self, other)

    def __rpow__(self, other):
        return _ops().power(other, self)

    def __neg__(self):
        return _ops().negative(self)

    def __abs__(self):
        return _ops().absolute(self)

    def __lt__(self, other):
        return _ops().less(self, other)

    def __le__(self, other):
        return _ops().less_equal(self, other)

    def __gt__(self, other):
        return _ops().greater(self, other)

    def __ge__(self, other):
        return _ops().greater_equal(self, other)

    def __getitem__(self, key):
        return _ops().get_item(self, key)

    __hash__ = object.__hash__  # identity: a tensor is a node's output, not a value


def _ops():
    from minicnn import ops  # keras.ops sits beside the layers; imported when first used

    return ops


class Node:
    """One call of ``layer``: ``inputs`` (KerasTensors, in call order) -> ``outputs``.
    ``single``: the layer was called with one tensor, not a list of them. ``training``: what
    the call fixed (``base(x, training=False)`` keeps a BatchNormalization in inference mode
    during fit, as in Keras), or None to follow fit/predict."""

    def __init__(self, layer, inputs: list, outputs: list, single: bool, training=None):
        self.layer, self.inputs, self.outputs, self.single = layer, inputs, outputs, single
        self.training = None if training is None else bool(training)
        for t in outputs:
            t._node = self

    @property
    def parents(self) -> list:
        """The nodes that made this node's inputs."""
        return [t.node for t in self.inputs]

    def __repr__(self) -> str:
        ins = ", ".join(t.history[0].name for t in self.inputs)
        return f"<Node {self.layer.name}({ins})>"


def flatten_tensors(inputs) -> tuple[list, bool]:
    """(a flat list of the tensors in ``inputs``, whether it was a single one): a layer takes one
    tensor or a list/tuple of them; a model also takes a dict by input name."""
    if isinstance(inputs, dict):
        return list(inputs.values()), False
    if isinstance(inputs, (list, tuple)):
        return list(inputs), False
    return [inputs], True
