"""A graph: its input and output tensors, and the nodes between them in an order that runs (each
node after every node it reads from), as Keras's ``Function`` keeps them. A model holds one; a
traced custom layer holds one per input shape and mode."""

from __future__ import annotations

from minicnn.layers.core import InputLayer
from minicnn.layers.node import KerasTensor


class Graph:
    """The nodes from ``inputs`` to ``outputs`` (lists of KerasTensors made by ``keras.Input``
    and by layer calls), in topological order; refused with a message naming the tensor if an
    output cannot be computed from the inputs alone."""

    def __init__(self, inputs: list, outputs: list):
        for t in [*inputs, *outputs]:
            if not isinstance(t, KerasTensor):
                raise TypeError(
                    "A model's inputs and outputs must be symbolic tensors (from keras.Input and "
                    f"layer calls). Received: {t!r}"
                )
        for t in inputs:
            if not isinstance(t.history[0], InputLayer):
                raise ValueError(
                    f"A model's inputs must come from keras.Input(...). Received: {t!r}, the "
                    f'output of layer "{t.history[0].name}"'
                )
        if len({id(t) for t in inputs}) != len(inputs):
            raise ValueError("A model's inputs must be distinct tensors")
        self.inputs, self.outputs = list(inputs), list(outputs)
        self.n_outputs, self.single_output = len(outputs), len(outputs) == 1  # a trace sets them
        self.nodes = self._order()  # without the inputs' own nodes
        self.layers = self._layers()  # a graph never changes: worked out once

    def _order(self) -> list:
        known = {id(t) for t in self.inputs}
        order, done = [], set()
        for out in self.outputs:
            stack = [(out.node, False)]
            while stack:  # depth first, each node after its parents (post-order)
                node, expanded = stack.pop()
                if id(node) in done:
                    continue
                if expanded:
                    done.add(id(node))
                    order.append(node)
                    continue
                if isinstance(node.layer, InputLayer):
                    if id(node.outputs[0]) not in known:
                        raise ValueError(
                            f'Graph disconnected: the output {out!r} needs input "{node.layer.name}", '
                            "which is not one of the model's inputs"
                        )
                    done.add(id(node))
                    continue
                stack.append((node, True))
                stack.extend((t.node, False) for t in reversed(node.inputs))
        return order

    def _layers(self) -> list:
        """Every layer once, in Keras's order: by decreasing depth (distance from the outputs,
        so the inputs come first), in traversal order within a depth."""
        nodes = [t.node for t in self.inputs] + self.nodes
        depth = {id(n): 0 for n in nodes}
        for node in reversed(self.nodes):  # consumers before the nodes they read from
            for parent in node.parents:
                depth[id(parent)] = max(depth[id(parent)], depth[id(node)] + 1)
        order = sorted(range(len(nodes)), key=lambda i: (-depth[id(nodes[i])], i))
        seen, out = set(), []
        for i in order:
            layer = nodes[i].layer
            if getattr(layer, "is_op", False):  # keras.ops nodes are not layers (as in Keras)
                continue
            if id(layer) not in seen:
                seen.add(id(layer))
                out.append(layer)
        return out

    def node_index(self) -> dict:
        """{id(node): its index among its layer's calls in this graph}: the [node] of a
        "layer[node][tensor]" reference, which Keras numbers per model."""
        index, count = {}, {}
        for node in [t.node for t in self.inputs] + self.nodes:
            k = count.get(id(node.layer), 0)
            index[id(node)] = k
            count[id(node.layer)] = k + 1
        return index

    def is_chain(self) -> bool:
        """One input, one output, each node reading one tensor and each layer called once:
        what Keras's summary prints without a "Connected to" column."""
        layers = [n.layer for n in self.nodes]
        return (
            len(self.inputs) == len(self.outputs) == 1
            and all(len(n.inputs) == 1 for n in self.nodes)
            and len({id(x) for x in layers}) == len(layers)
            and all(n.parents[0] is p for n, p in zip(self.nodes[1:], self.nodes))
        )
