"""What a model is: ``keras.Model(inputs, outputs)``, a graph of layers from symbolic inputs to
outputs; ``Sequential`` (``models/sequential.py``) is its chain. A model is itself a layer, so
it can be called inside another model, sharing its weights.

A model knows its graph, its weights and what it was compiled with, and runs by a plan made
once per input shape and mode (``minicnn.plan``). How it is trained lives in
``minicnn.training``, its files in ``minicnn.saving`` and ``minicnn.export``: ``fit``, ``save``
and ``export`` hand the work to them, so this module imports none of them at its top.
"""

from __future__ import annotations

from minicnn import data
from minicnn.backend import floatx, get_backend
from minicnn.layers import InputLayer, Layer
from minicnn.layers.base import snake_case, unique_name
from minicnn.layers.graph import Graph
from minicnn.layers.node import KerasTensor
from minicnn.models.compile import Objectives
from minicnn.models.subclassed import Subclassing
from minicnn.models.trainer import Trainer
from minicnn.plan import SMALL_BATCH, Plan


def _structure(value, what: str):
    """(flat list of tensors, how to rebuild it: None for one tensor, a list or dict keys)."""
    if isinstance(value, dict):
        return list(value.values()), list(value)
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"`{what}` argument cannot be empty. Received: {what}={value!r}")
        return list(value), len(value)
    return [value], None


class Model(Trainer, Subclassing, Layer):
    """``Model(inputs, outputs, name=None)``: inputs and outputs are one symbolic tensor, a list
    or a dict of them. ``backend``: "numpy" or "cupy" (default: ``minicnn.set_backend``'s).
    As in Keras, ``Model(inputs, outputs)`` makes a ``Functional``."""

    def __new__(cls, *args, **kwargs):
        if cls is Model and (args or "inputs" in kwargs):
            return super().__new__(Functional)
        return super().__new__(cls)

    def __init__(self, inputs=None, outputs=None, name=None, backend=None, trainable=True, **kwargs):  # fmt: skip
        if (inputs is None or outputs is None) and not hasattr(self, "_layers"):
            if not self.traces_call():
                raise ValueError(
                    "keras.Model() needs inputs and outputs, keras.Model(inputs, outputs), or a "
                    "subclass that defines call(). Received: "
                    f"inputs={'None' if inputs is None else '...'}, outputs={'None' if outputs is None else '...'}"
                )
        own = type(self) in (Model, Functional) or "default_name" in vars(type(self))
        default = self.default_name if own else snake_case(type(self).__name__)  # subclassed
        super().__init__(name=name or unique_name(default), **kwargs)
        self._trainable = bool(trainable)
        self.backend = get_backend(backend)
        self.optimizer = None
        self.objectives: Objectives | None = None
        self.stop_training = False
        self.history = None  # the History of the last fit
        self.training_state = None  # set by load_checkpoint: the run a fit may continue
        self._plans: dict = {}
        self.graph: Graph | None = None
        if inputs is not None:
            self.set_graph(inputs, outputs)

    default_name = "functional"

    def set_graph(self, inputs, outputs) -> None:
        """The graph from ``inputs`` to ``outputs``; its layers' weights move to this model's
        device; layer names must be unique in it."""
        flat_in, self._input_struct = _structure(inputs, "inputs")
        flat_out, self._output_struct = _structure(outputs, "outputs")
        graph = Graph(flat_in, flat_out)
        names = [layer.name for layer in graph.layers]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(
                    f'The name "{name}" is used {names.count(name)} times in the model. All '
                    "layer names should be unique"
                )
        self.graph = graph
        for layer in self.leaf_layers():
            layer.to_backend(self.backend)
        self._plans.clear()

    # -- the graph -----------------------------------------------------------------------------

    @property
    def built(self) -> bool:
        return self.graph is not None or self.__dict__.get("_marked_built", False)

    @built.setter
    def built(self, value) -> None:
        """Set by Layer.__init__ (False) and by a user's build() (True, as Keras's guides do):
        a True is kept, and the graph comes when call is traced (after that build, or at the
        first call). A built model cannot be unbuilt: minicnn does not drop a graph."""
        if not value and self.__dict__.get("graph") is not None:
            raise ValueError(f"Model '{self.name}' is built (it has its graph); minicnn cannot set built = False to build it anew: make a new model")  # fmt: skip
        self.__dict__["_marked_built"] = bool(value)

    @property
    def inputs(self) -> list:
        return list(self._graph("inputs").inputs)

    @property
    def outputs(self) -> list:
        return list(self._graph("outputs").outputs)

    def _graph(self, what: str) -> Graph:
        if self.graph is None:
            raise AttributeError(f"Model '{self.name}' has no defined {what} yet: build it with an Input or build(input_shape)")  # fmt: skip
        return self.graph

    def _restructure(self, flat: list, struct):
        if struct is None:
            return flat[0]
        return dict(zip(struct, flat)) if isinstance(struct, list) else list(flat)

    @property
    def input(self):
        return self._restructure(self.inputs, self._input_struct)

    @property
    def output(self):
        return self._restructure(self.outputs, self._output_struct)

    @property
    def input_shape(self):
        """The input's shape with the batch axis, ``(None, 28, 28, 1)`` (a list for several)."""
        shapes = [t.shape for t in self.inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self):
        shapes = [t.shape for t in self.outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def layers(self) -> list[Layer]:
        """Every layer, the InputLayers first, in Keras's order."""
        return self._graph("layers").layers

    @property
    def output_names(self) -> list[str]:
        """The names of the layers that make the outputs, as Keras gives them."""
        return [t.history[0].name for t in self.outputs]

    def output_keys(self) -> list[str]:
        """The names losses, targets and logs use: the dict keys of dict outputs, else the
        output layers' names."""
        if isinstance(self._output_struct, list):
            return list(self._output_struct)
        return self.output_names

    def input_keys(self) -> list[str]:
        if isinstance(self._input_struct, list):
            return list(self._input_struct)
        return [t.history[0].name for t in self.inputs]

    def get_layer(self, name=None, index=None) -> Layer:
        if name is not None and index is not None:
            raise ValueError(f"Provide only a layer name or a layer index. Received: index={index}, name={name}.")  # fmt: skip
        layers = self.layers
        if index is not None:
            if not 0 <= index < len(layers):
                raise ValueError(f"Was asked to retrieve layer at index {index} but model only has {len(layers)} layers.")  # fmt: skip
            return layers[index]
        if name is None:
            raise ValueError("Provide either a layer name or layer index at `get_layer`.")
        for layer in layers:
            if layer.name == name:
                return layer
        raise ValueError(f"No such layer: {name}. Existing layers are: {[x.name for x in layers]}.")

    def leaf_layers(self) -> list[Layer]:
        """Every layer that computes, nested models and traced layers opened up, each once, in
        Keras's order (worked out once per graph: a plan's key asks for it on every batch)."""
        cached = getattr(self, "_leaves", None)
        if cached is not None and cached[0] is self.graph and cached[0] is not None:
            return cached[1]
        out, seen = [], set()
        own = [self] if self.params or self.state else []  # a subclassed model's add_weight
        for layer in own + (self.layers if self.graph is not None else []):
            for x in [layer] if layer is self else _leaves_of(layer):
                if id(x) not in seen and not isinstance(x, InputLayer):
                    seen.add(id(x))
                    out.append(x)
        self._leaves = (self.graph, out)
        return out

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value) -> None:
        """As in Keras: every layer of the model takes the setting (recompile to train with it)."""
        self._trainable = bool(value)
        for layer in self.layers if getattr(self, "graph", None) is not None else []:
            layer.trainable = bool(value)

    # -- as a layer ----------------------------------------------------------------------------

    def compute_output_shape(self, input_shape):
        want = [t.shape for t in self.inputs]
        got = input_shape if isinstance(input_shape, list) else [input_shape]
        if [tuple(s[1:]) for s in got] != [tuple(s[1:]) for s in want]:
            raise ValueError(
                f'Model "{self.name}" expects input shape {self.input_shape}. Received: {input_shape}'
            )
        return self.output_shape

    def maybe_build(self, input_shape, backend=None) -> None:
        if self.graph is None:
            self.build(input_shape)

    def __call__(self, inputs, training=None, **kwargs):
        """On symbolic tensors: one node of this model in a bigger graph. On arrays: its
        outputs (training=True runs Dropout and augmentation)."""
        if kwargs:
            raise TypeError(f"Model.__call__ got unexpected arguments {sorted(kwargs)}")
        if isinstance(inputs, dict):
            keys = self.input_keys() if self.graph is not None else list(inputs)
            missing = [k for k in keys if k not in inputs]
            if missing:
                raise ValueError(f'Model "{self.name}" takes inputs {keys}. Received: {sorted(inputs)}')  # fmt: skip
            inputs = [inputs[k] for k in keys]
        flat = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        if any(isinstance(t, KerasTensor) for t in flat):
            single = not isinstance(inputs, (list, tuple))
            return self.symbolic_call(list(flat), single, training)
        xs = self.check_inputs(inputs)
        outs = self.run(xs, training=bool(training))
        return self._restructure(outs, self._output_struct)

    # -- running ---------------------------------------------------------------------------------

    def plan(self, n: int, training: bool) -> Plan:
        """The plan for batches of ``n`` in this mode, made once and kept (made anew if the
        layers' trainable flags, the backend or the loss changed). At inference on a few
        images, the kernels once a plan of this model has run them (``Plan``'s ``warm``)."""
        from minicnn import tuning

        heads = self.objectives.heads() if self.objectives is not None else ()
        leaves = self.leaf_layers()
        warm = not training and n <= SMALL_BATCH and any(p.ran and p.kernels for p in self._plans.values())  # fmt: skip
        key = (n, bool(training), heads, tuple(x.trainable for x in leaves), floatx(), len(leaves), warm)  # fmt: skip
        plan = self._plans.get(key)
        if plan is None:
            tuning.apply()  # the allocator and thread settings, on first use
            if len(self._plans) > 16:
                self._plans.clear()
            graph = self.graph_for(training)
            plan = Plan(graph, n, bool(training), heads, self.backend.xp, floatx(), warm)
            self._plans[key] = plan
        return plan

    def run(self, xs: list, training: bool = False) -> list:
        """The outputs for device batches ``xs`` (one per input), softmax heads included."""
        plan = self.plan(xs[0].shape[0], training)
        outs, _ = plan.forward(xs, training)
        return self.probabilities(outs[: plan.n_outputs], plan.logits)

    @staticmethod
    def probabilities(outs: list, logits) -> list:
        """The outputs of heads whose final activation (``logits``) was left to the loss."""
        from minicnn import activations

        return [activations.get(lg).forward(o) if lg else o for o, lg in zip(outs, logits)]

    # -- data checks ---------------------------------------------------------------------------

    def check_inputs(self, x, what: str = "x", empty=False) -> list:
        """x as one checked array per input (a Sequential built from x's shape if need be)."""
        if self.graph is None:
            first = x[0] if isinstance(x, (list, tuple)) else x
            self.build((None, *data.as_real_array(first, what, empty).shape[1:]))
        keys = self.input_keys()
        xs = _per_key(x, keys, what, "input")
        readers = self._first_readers()
        arrays = [
            data.check_features(
                a,
                t.shape[1:],
                self.backend.xp,
                f"{what}[{k!r}]" if len(keys) > 1 else what,
                readers.get(id(t), t.history[0].name),
                empty,
            )  # fmt: skip
            for a, t, k in zip(xs, self.inputs, keys)
        ]
        n = {a.shape[0] for a in arrays}
        if len(n) > 1:
            raise ValueError(f"All inputs must have the same number of samples. Received: {[a.shape[0] for a in arrays]}")  # fmt: skip
        return arrays

    def _first_readers(self) -> dict:
        """{id(tensor): the first layer that reads it}, which an input's error names; once a graph."""
        graph, readers = self.__dict__.get("_readers", (None, None))
        if graph is not self.graph:
            nodes = reversed(self.graph.nodes)  # so that the first reader's name is the one kept
            readers = {id(t): node.layer.name for node in nodes for t in node.inputs}
            self.__dict__["_readers"] = (self.graph, readers)
        return readers

    def check_targets(self, y, n: int, what: str = "y") -> list:
        """y as one checked array per output (None for outputs without a loss)."""
        keys, objectives = self.output_keys(), self.objectives
        ys = _per_key(y, keys, what, "output", optional=[lo is None for lo in objectives.losses])
        return [
            None if lo is None else data.check_targets(t, n, lo, out.shape, self.backend, what)
            for t, lo, out in zip(ys, objectives.losses, self.outputs)
        ]

    def require_compiled(self, method: str) -> None:
        self.check_own_loop()
        if not self.compiled:
            raise RuntimeError(f"You must call compile() before {method}()")
        if self.graph is None and not self.traces_call() and not getattr(self, "_layers", None):
            raise ValueError(f"The model has no layers: add() some before {method}()")

    # -- serialisation -------------------------------------------------------------------------

    def get_config(self) -> dict:
        """A functional model's layers and graph; a subclassed model's base config (name,
        trainable), which its own get_config extends with its ``__init__``'s arguments, as in
        Keras (its layers are its code's, remade by ``__init__``)."""
        from minicnn.models.config import functional_config

        if self.traces_call():
            return {"name": self.name, "trainable": self.trainable}
        return functional_config(self)

    @classmethod
    def from_config(cls, config: dict, custom_objects=None):
        """A functional model's config (``get_config``) made again with new weights; a
        subclassed model's own config goes to its ``__init__``, as in Keras."""
        if isinstance(config, dict) and "input_layers" in config and "layers" in config:
            from minicnn.models.sequential import _from_config

            return _from_config("Functional", config, custom_objects)
        return cls(**config)

    def __repr__(self) -> str:
        n = len(self.leaf_layers()) if self.graph is not None else 0
        return (
            f"<{type(self).__name__} name={self.name!r} layers={n} backend={self.backend.name!r}>"
        )


def _leaves_of(layer) -> list:
    """A layer's computing layers: a model's, a traced layer itself and those its call uses."""
    if isinstance(layer, Model):
        return layer.leaf_layers()
    if layer.traces_call():
        inner = [x for g in layer.__dict__.get("_traces", {}).values() for x in g.layers]
        return [layer, *(y for x in inner if not isinstance(x, InputLayer) for y in _leaves_of(x))]
    return [layer]


class Functional(Model):
    """What ``keras.Model(inputs, outputs)`` makes: a model over the graph between them."""


def _per_key(value, keys: list, what: str, kind: str, optional=None) -> list:
    """One entry per input or output from one array, a list in order, or a dict by name."""
    n = len(keys)
    if isinstance(value, dict):
        missing = [k for i, k in enumerate(keys) if k not in value and not (optional and optional[i])]  # fmt: skip
        extra = sorted(set(value) - set(keys))
        if missing or extra:
            raise ValueError(f"{what}: the model's {kind}s are {keys}. Received keys {sorted(value)}")  # fmt: skip
        return [value.get(k) for k in keys]
    if (
        isinstance(value, (list, tuple))
        and n == 1
        and len(value) == 1
        and hasattr(value[0], "shape")
    ):
        return [value[0]]  # [x] for a model with one input, as Keras takes it
    if isinstance(value, (list, tuple)) and n > 1:
        if len(value) != n:
            raise ValueError(f"{what}: the model has {n} {kind}s ({keys}). Received a list of {len(value)}")  # fmt: skip
        return list(value)
    if n > 1:
        raise ValueError(f"{what}: the model has {n} {kind}s ({keys}): give a list or a dict. Received: {type(value).__name__}")  # fmt: skip
    return [value]
