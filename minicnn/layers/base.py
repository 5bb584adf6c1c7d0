"""The Layer contract.

A layer lives in three steps, as in Keras: ``__init__`` stores and validates settings;
``build(input_shape)`` makes the weights once the input shape is known (with the batch axis,
``(None, 28, 28, 1)``, as Keras gives it); then it computes, in two hand-written halves:

    forward(x, training)       -> (y, ctx)     ctx: what backward needs (None if not training)
    backward(gy, ctx, need_gx) -> (gx, grads)  grads: {weight name: gradient}

A layer whose forward depends on the mode (Dropout, BatchNormalization, the augmentations) says
so with ``mode_dependent``; a model being trained runs a call of it fixed to ``training=False``
(a base model fine-tuned in inference mode) through ``inference_forward``, which keeps what
backward needs. Every other layer computes the same in both modes.

A layer keeps nothing from a call on itself, so one layer object can be called on several
inputs (a shared layer, a siamese tower): each call's ``ctx`` is the caller's to keep. Layers
that take several inputs (the merging layers) get and give lists.

Calling a layer on symbolic tensors (``keras.Input``) records a graph node and returns symbolic
outputs; calling it on arrays builds it from their shape and runs ``forward``.

Weights live in dicts: ``params`` (trained) and ``state`` (not trained: BatchNormalization's
moving statistics, say), in Keras's order, so ``get_weights`` / ``set_weights`` exchange arrays
with Keras models as they are.
"""

from __future__ import annotations

import contextlib
import itertools
import re
from collections import defaultdict

import numpy as np

from minicnn import activations
from minicnn.backend import Backend, floatx, get_array_module, get_backend
from minicnn.layers.node import KerasTensor, Node, flatten_tensors

_counters: dict[str, itertools.count] = defaultdict(itertools.count)
_scope: list[str] = []  # the models whose build is under way, outermost first (weights' paths)


@contextlib.contextmanager
def name_scope(name: str):
    """Layers built inside get Keras's weight paths under ``name`` ("sequential/dense/kernel")."""
    _scope.append(name)
    try:
        yield
    finally:
        _scope.pop()


_ALLOWED = ("input_shape", "input_dim", "batch_input_shape")


def unique_name(base: str) -> str:
    """``base``, then ``base_1``, ``base_2``, ... for the same base (Keras's default names)."""
    k = next(_counters[base])
    return base if k == 0 else f"{base}_{k}"


def snake_case(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower().replace("2_d", "2d")


def normalize_tuple(value, n: int, what: str, owner: str) -> tuple[int, ...]:
    """An int or an n-tuple of positive ints -> n-tuple, as Keras accepts for sizes and strides."""
    t = (value,) * n if isinstance(value, (int, np.integer)) else tuple(value)
    if len(t) != n or not all(isinstance(v, (int, np.integer)) and v > 0 for v in t):
        raise ValueError(
            f"{owner}: {what} must be a positive int or a tuple of {n} positive ints. "
            f"Received: {what}={value!r}"
        )
    return tuple(int(v) for v in t)


def normalize_padding(value, owner: str) -> str:
    if not isinstance(value, str) or value.lower() not in ("valid", "same"):
        raise ValueError(f'{owner}: padding must be "valid" or "same". Received: padding={value!r}')
    return value.lower()


class Layer:
    """Base class: a layer with no weights that passes its input through."""

    def __init__(self, name: str | None = None, trainable: bool = True, dtype=None, **kwargs):
        unknown = sorted(set(kwargs) - set(_ALLOWED))
        if unknown:
            raise ValueError(
                f"Unrecognized keyword arguments passed to {type(self).__name__}: "
                f"{ {k: kwargs[k] for k in unknown} }"
            )
        if name is not None and (not isinstance(name, str) or "/" in name or not name):
            raise ValueError(f"Argument `name` must be a string without '/'. Received: name={name!r}")  # fmt: skip
        if dtype is not None and str(np.dtype(dtype)) != floatx():
            raise ValueError(
                f"{type(self).__name__}: minicnn computes every layer in floatx ({floatx()}); "
                f"set it with minicnn.set_floatx. Received: dtype={dtype!r}"
            )
        self.name = name or unique_name(snake_case(type(self).__name__))
        self.trainable = bool(trainable)
        shape = kwargs.get("input_shape")
        if kwargs.get("input_dim") is not None:
            shape = (kwargs["input_dim"],)
        if kwargs.get("batch_input_shape") is not None:
            shape = tuple(kwargs["batch_input_shape"])[1:]
        self.input_shape_arg = None if shape is None else tuple(shape)  # no batch axis
        self.built = False
        self.build_shape = None  # the input shape it was built for, batch axis first
        self.backend: Backend | None = None  # set when built, or by the model it joins
        self.params: dict = {}
        self.state: dict = {}
        self.inbound_nodes: list[Node] = []
        self.losses: list = []  # add_loss values of eager calls

    # -- life cycle --------------------------------------------------------------------------

    @property
    def xp(self):
        return (self.backend or get_backend()).xp

    @property
    def dtype(self) -> str:
        return floatx()

    def build(self, input_shape) -> None:
        """Make the weights for inputs of ``input_shape`` (batch axis first)."""

    def maybe_build(self, input_shape, backend: Backend | None = None) -> None:
        """Build once, on the first input shape seen (checked by compute_output_shape first)."""
        if self.built:
            return
        self.backend = self.backend or backend or get_backend()
        self.compute_output_shape(input_shape)  # a misfit input is refused before any weight
        self.path_prefix = "".join(f"{n}/" for n in _scope)  # as Keras's name scope sets paths
        self.build(input_shape)
        self.build_shape = input_shape
        self.built = True

    def add_weight(self, shape=None, initializer="glorot_uniform", dtype=None, trainable=True, name=None, regularizer=None, constraint=None):  # fmt: skip
        """A weight of ``shape`` drawn by ``initializer``, kept in ``params`` (trained) or
        ``state``; Keras's signature. ``regularizer`` (its penalty joins the loss) and
        ``constraint`` (applied after each update) are kept by weight name in
        ``weight_regularizers`` and ``weight_constraints``."""
        from minicnn import constraints, initializers, regularizers

        owner = f'layer "{self.name}"'
        init = initializers.get(initializer, owner)
        reg, con = regularizers.get(regularizer, owner), constraints.get(constraint, owner)
        name = name or f"variable_{len(self.params) + len(self.state)}"
        value = (self.backend or get_backend()).asarray(init(tuple(shape), floatx()))
        (self.params if trainable else self.state)[name] = value
        for table, entry in (("weight_regularizers", reg), ("weight_constraints", con)):
            if entry is not None:
                vars(self).setdefault(table, {})[name] = entry
        return value

    def compute_output_shape(self, input_shape):
        """Output shape for ``input_shape`` (batch axis first); pure, and it raises a ValueError
        naming this layer for an input it cannot take."""
        return tuple(input_shape)

    def weight_shapes(self, input_shape) -> dict[str, tuple]:
        """The shapes ``build`` would give the weights, in Keras order, without making them."""
        return {}

    def call(self, inputs, training=None):
        """Keras's way to define a layer: written with keras.ops and other layers, traced once
        on symbolic inputs (``minicnn.ops.trace``) so its backward is theirs. Built-in layers
        give ``forward``/``backward`` instead; a custom layer may too, for maths no op covers."""
        raise NotImplementedError(f"{type(self).__name__} defines neither call() nor forward()")

    def traces_call(self) -> bool:
        """Whether this layer is defined by ``call`` (a custom layer as Keras writes one) rather
        than by a hand-written ``forward``/``backward``."""
        return type(self).call is not Layer.call and type(self).forward is Layer.forward

    def traced_graph(self, shapes: list, single: bool, training):
        """The graph of ``call`` for inputs of ``shapes``, in mode ``training``: traced once
        and kept. Its outputs are call's, then the values given to ``add_loss``."""
        from minicnn.ops.trace import traced_graph

        return traced_graph(self, self.call, shapes, single, training)

    def add_loss(self, loss) -> None:
        """A term added to the model's loss (traced in call: Keras's activity regularisation)."""
        from minicnn.ops.core import current_trace

        trace = current_trace()
        if trace is not None:
            trace.losses.append(loss)
        else:
            self.losses.append(loss)

    mode_dependent = False  # forward's result depends on ``training``

    def forward(self, x, training: bool = False):
        """-> (y, ctx): the output, and what ``backward`` needs (None when not training)."""
        return x, None

    def inference_forward(self, x):
        """Inference mode, keeping what backward needs. A mode-dependent layer whose inference is
        the identity (Dropout, the augmentations) keeps nothing: its backward passes ``gy``."""
        return self.forward(x, not self.mode_dependent)

    def backward(self, gy, ctx, need_gx: bool = True):
        """-> (gx, {weight name: gradient}); gx may be None when ``need_gx`` is False."""
        return gy, {}

    def to_backend(self, backend: Backend) -> None:
        """Move this layer's weights to ``backend``'s device."""
        if self.backend is not None and self.backend.name == backend.name:
            return
        for arrays in (self.params, self.state):
            for k, a in arrays.items():
                arrays[k] = backend.asarray(backend.to_numpy(a) if self.backend else a)
        self.backend = backend

    # -- calling it ----------------------------------------------------------------------------

    def __call__(self, inputs, training=None, **kwargs):
        """On KerasTensors: build, record a node, return symbolic outputs. On arrays: build from
        their shape if need be and run ``forward``."""
        if kwargs:
            raise TypeError(f"{type(self).__name__}.__call__ got unexpected arguments {sorted(kwargs)}")  # fmt: skip
        flat, single = flatten_tensors(inputs)
        if any(isinstance(t, KerasTensor) for t in flat):
            return self.symbolic_call(flat, single, training)
        be = get_backend("cupy" if get_array_module(flat[0]) is not np else "numpy")
        arrays = [be.asarray(a, dtype=floatx()) if not hasattr(a, "dtype") else a for a in flat]
        shapes = [(None, *a.shape[1:]) for a in arrays]
        shape = shapes[0] if single else shapes
        self.maybe_build(shape, be)
        if self.traces_call():  # eagerly: keras.ops and the layers compute on the arrays
            from minicnn.ops.trace import call_eagerly, takes_training

            kwargs = {"training": bool(training)} if takes_training(self.call) else {}
            return call_eagerly(self, arrays[0] if single else arrays, kwargs)
        self.compute_output_shape(shape)
        y, _ = self.forward(arrays[0] if single else arrays, training=bool(training))
        return y

    def symbolic_call(self, flat: list, single: bool, training=None):
        if not all(isinstance(t, KerasTensor) for t in flat):
            raise ValueError(
                f'Layer "{self.name}" was called on a mix of symbolic tensors (keras.Input) and '
                f"arrays. Received: {[type(t).__name__ for t in flat]}"
            )
        shape = flat[0].shape if single else [t.shape for t in flat]
        self.maybe_build(shape)
        if self.traces_call():  # the outputs' shapes are those of call traced on these inputs
            graph = self.traced_graph([t.shape for t in flat], single, training)
            outs = [t.shape for t in graph.outputs[: graph.n_outputs]]
            out = outs[0] if graph.single_output else outs
        else:
            out = self.compute_output_shape(shape)
        shapes = out if isinstance(out, list) else [out]
        index = len(self.inbound_nodes)
        dtype = getattr(self, "out_dtype", None) or floatx()  # an op's may be bool or int
        outputs = [
            KerasTensor(s, dtype, f"{self.name}_{index}_{i}", (self, index, i))
            for i, s in enumerate(shapes)
        ]
        self.inbound_nodes.append(Node(self, list(flat), outputs, single, training))
        return outputs if isinstance(out, list) else outputs[0]

    def _node_tensors(self, what: str):
        if not self.inbound_nodes:
            raise AttributeError(
                f'Layer "{self.name}" has never been called on symbolic tensors, so it has no '
                f"{what} yet: call it on keras.Input(...) or build a model with it"
            )
        node = self.inbound_nodes[0]  # Keras: the tensors of the first call
        tensors = node.inputs if what == "input" else node.outputs
        if what == "input" and node.single:
            return tensors[0]
        return tensors[0] if len(tensors) == 1 else list(tensors)

    @property
    def input(self):
        """The symbolic input of this layer's first call (Keras's ``layer.input``)."""
        return self._node_tensors("input")

    @property
    def output(self):
        """The symbolic output of this layer's first call (Keras's ``layer.output``)."""
        return self._node_tensors("output")

    # -- shape checks --------------------------------------------------------------------------

    def check_rank(self, shape, rank: int, hint: str = "") -> None:
        """Raise a ValueError naming this layer if ``shape`` (batch axis first) is not of ``rank``."""
        if not isinstance(shape, tuple) or len(shape) != rank:
            dims = {2: "batch, features", 4: "batch, height, width, channels"}.get(rank)
            dims = dims or ", ".join(["batch", *(["..."] * (rank - 1))])
            raise ValueError(
                f'Layer "{self.name}" ({type(self).__name__}) expects input of rank {rank} '
                f"({dims}){hint}. Received: input shape {shape}"
            )

    def check_channels(self, shape, what: str = "channels") -> None:
        """A built layer's weights fix its input's last axis: refuse another."""
        if self.built and shape[-1] != self.build_shape[-1]:
            raise ValueError(
                f'Layer "{self.name}" ({type(self).__name__}) was built for inputs with '
                f"{self.build_shape[-1]} {what} (shape {self.build_shape}). Received: input shape {shape}"
            )

    # -- weights -------------------------------------------------------------------------------

    @property
    def weight_names(self) -> list[str]:
        """Keras order: trained weights, then the rest."""
        return [*self.params, *self.state]

    def _weight(self, name):
        return self.params[name] if name in self.params else self.state[name]

    def get_weights(self) -> list[np.ndarray]:
        return self.own_weights()

    def set_weights(self, weights) -> None:
        self.set_own_weights(weights)

    def own_weights(self) -> list[np.ndarray]:
        """Copies of the weights this layer holds itself (a model's: those of its own
        ``add_weight``, not its layers'), in ``weight_names``' order."""
        return [self.backend.to_numpy(self._weight(n)).copy() for n in self.weight_names]

    def set_own_weights(self, weights) -> None:
        """The inverse of own_weights; every shape is checked before any weight changes."""
        names = self.weight_names
        weights = list(weights)
        if len(weights) != len(names):
            raise ValueError(
                f'Layer "{self.name}" expects {len(names)} weight arrays ({", ".join(names)}). '
                f"Received: {len(weights)} arrays"
            )
        for n, w in zip(names, weights):
            if tuple(np.shape(w)) != self._weight(n).shape:
                raise ValueError(
                    f'Layer "{self.name}": weight "{n}" must have shape {self._weight(n).shape}. '
                    f"Received: shape {tuple(np.shape(w))}"
                )
        for n, w in zip(names, weights):
            self._weight(n)[...] = self.backend.asarray(np.asarray(w, dtype=self._weight(n).dtype))

    def count_params(self) -> int:
        return self.count_own_params()

    def count_own_params(self) -> int:
        return int(sum(self._weight(n).size for n in self.weight_names))

    @property
    def weights(self) -> list:
        """Keras's variables (``minicnn.variables.Variable``), views of this layer's arrays."""
        from minicnn.variables import weights_of

        return weights_of([self])

    @property
    def trainable_weights(self) -> list:
        return [v for v in self.weights if v.trainable] if self.trainable else []

    @property
    def non_trainable_weights(self) -> list:
        return [v for v in self.weights if not v.trainable] if self.trainable else self.weights

    # -- serialisation -------------------------------------------------------------------------

    def get_config(self) -> dict:
        config = {"name": self.name, "trainable": self.trainable}
        if self.input_shape_arg is not None:
            config["input_shape"] = list(self.input_shape_arg)
        return config

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self) -> str:
        settings = {k: v for k, v in self.get_config().items() if k not in ("name", "trainable")}
        inner = ", ".join(f"{k}={v!r}" for k, v in settings.items())
        return f"{type(self).__name__}({inner}{', ' if inner else ''}name={self.name!r})"


class ActivationMixin:
    """For layers with an ``activation=`` argument (Dense, Conv2D, Activation): the activation
    object, and its two halves over the layer's output. A plan may run such a layer without a
    final softmax when its loss takes the logits (``minicnn.plan``)."""

    def _init_activation(self, activation):
        self.activation = activations.get(activation, owner=f'layer "{self.name}"')

    @property
    def ends_in_softmax(self) -> bool:
        return isinstance(self.activation, activations.Softmax)
