"""What a subclassed ``keras.Model`` (one defined by ``call``) adds to a model: its graph is its
``call`` traced on symbolic inputs, for a given input shape and mode, after the model's own
``build(input_shape)`` where it writes one (its weights, as Keras lets it make them).

A mixin of ``Model`` (``models/model.py``), which holds the graph these methods set and read.
"""

from __future__ import annotations


class Subclassing:
    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "build" in vars(cls) and not cls.__module__.startswith("minicnn."):
            cls.build = _then_traced(vars(cls)["build"])

    def build(self, input_shape=None) -> None:
        """A subclassed model: trace its call() on inputs of ``input_shape`` (batch axis first),
        which gives its graph; a functional model is built already."""
        if self.graph is not None or self.__dict__.get("_user_build"):
            return  # a user's build() calling super().build(): traced once it returns
        if not self.traces_call() or input_shape is None:
            raise ValueError(f"Model '{self.name}' cannot be built: give input_shape to build() for a subclassed model")  # fmt: skip
        shapes = input_shape if isinstance(input_shape, list) else [tuple(input_shape)]
        shapes = [s if s and s[0] is None else (None, *s) for s in map(tuple, shapes)]
        single = not isinstance(input_shape, list)
        graph = self.traced_graph(shapes, single, False)
        outs = graph.outputs[: graph.n_outputs]
        self.set_graph(graph.inputs[0] if single else graph.inputs, outs[0] if graph.single_output else outs)  # fmt: skip

    def graph_for(self, training: bool):
        """The graph a plan runs in this mode: a subclassed model's call traced for it."""
        graph = self._graph("a plan")
        if not self.traces_call():
            return graph
        single = self._input_struct is None
        return self.traced_graph([t.shape for t in graph.inputs], single, bool(training))


def _then_traced(build):
    """A subclassed model's own ``build(input_shape)``, then its ``call`` traced on those
    shapes (``Subclassing.build``), which gives its graph."""

    def built_then_traced(self, input_shape=None, *args, **kwargs):
        if self.graph is not None:
            return
        self._user_build = True
        try:
            build(self, input_shape, *args, **kwargs)
        finally:
            self._user_build = False
        Subclassing.build(self, input_shape)

    built_then_traced.__doc__, built_then_traced.__name__ = build.__doc__, build.__name__
    return built_then_traced
