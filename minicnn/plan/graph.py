"""A graph laid out for a plan (``flatten``): every call of a leaf layer once, with nested
models (a Sequential inside a model, a tower called twice) and traced custom layers opened up
into their own calls, and each value named by an integer. The graph itself (nodes in an order
that runs) is ``minicnn.layers.graph.Graph``.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

from minicnn.layers.graph import Graph
from minicnn.layers.options import activity_penalty


class Call(NamedTuple):
    """One call of a leaf layer in a flattened graph: value ids in and out."""

    layer: object
    inputs: tuple
    outputs: tuple
    single: bool  # called with one tensor, not a list
    training: object  # True/False where the call (or a model call around it) fixed it, else None


class Flat(NamedTuple):
    inputs: list  # value ids of the model's inputs
    calls: list  # Calls, in an order that runs
    outputs: list  # value ids of the model's outputs
    shapes: dict  # value id -> shape (batch axis None)
    losses: list  # value ids of the add_loss terms of traced calls


def inner_graph(layer, node, mode):
    """The graph a node opens into: a traced call's for its inputs and mode, a model's own, or
    None for a leaf layer."""
    if layer.traces_call():
        return layer.traced_graph([t.shape for t in node.inputs], node.single, mode)
    graph = getattr(layer, "graph", None)
    return graph if isinstance(graph, Graph) else None


def flatten(graph: Graph, training: bool = False) -> Flat:
    """The graph's leaf-layer calls, nested models and traced calls opened up (for mode
    ``training`` where a call fixes none), values numbered from 0."""
    counter = itertools.count()
    calls, shapes, losses = [], {}, []

    def expand(g: Graph, input_ids: list, fixed) -> list:
        scope = {id(t): i for t, i in zip(g.inputs, input_ids)}
        for node in g.nodes:
            ins = [scope[id(t)] for t in node.inputs]
            training_ = fixed if fixed is not None else node.training  # the outer call wins
            inner = inner_graph(node.layer, node, training if training_ is None else training_)
            if inner is not None:  # a model used as a layer, or a traced call
                outs = expand(inner, ins, training_)
                losses.extend(outs[inner.n_outputs :])
                outs = outs[: inner.n_outputs]
            else:
                outs = [next(counter) for _ in node.outputs]
                calls.append(Call(node.layer, tuple(ins), tuple(outs), node.single, training_))
                penalty = activity_penalty(node.layer)
                if penalty is not None:  # Keras adds it with add_loss: a loss term
                    for o in outs:
                        losses.append(next(counter))
                        shapes[losses[-1]] = ()
                        calls.append(Call(penalty, (o,), (losses[-1],), True, training_))
            for t, o in zip(node.outputs, outs):
                scope[id(t)] = o
                shapes[o] = t.shape
        return [scope[id(t)] for t in g.outputs]

    inputs = [next(counter) for _ in graph.inputs]
    for t, i in zip(graph.inputs, inputs):
        shapes[i] = t.shape
    outputs = expand(graph, inputs, None)
    losses.extend(outputs[graph.n_outputs :])
    return Flat(inputs, calls, outputs[: graph.n_outputs], shapes, losses)
