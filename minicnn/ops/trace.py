"""Tracing: a custom layer's ``call`` (or a Lambda's function, or a subclassed model's ``call``)
run once on symbolic inputs, so that its layers and keras.ops record graph nodes. The graph
that comes out is what the plan runs for that call, its backward the ops' and layers' own; it
is made once per input shape and mode (a ``call`` may branch on ``training``, never on
values).

A call that cannot be traced (it converts a symbolic tensor to NumPy, or branches on a value)
fails here with a TypeError naming the layer and the line of its call that did it.
"""

from __future__ import annotations

import inspect
import traceback

from minicnn.layers.base import Layer
from minicnn.layers.core import InputLayer
from minicnn.ops.core import tracing


def takes_training(fn) -> bool:
    try:
        return "training" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def trace(owner, fn, shapes: list, single: bool, training, what: str = "call()"):
    """(symbolic inputs, outputs, add_loss values) of ``fn`` traced for inputs of ``shapes``
    (batch axis first), in mode ``training`` (True, False or None)."""
    placeholders = [InputLayer(shape=tuple(s[1:]), name=f"{owner.name}_input_{i}").output for i, s in enumerate(shapes)]  # fmt: skip
    args = placeholders[0] if single else placeholders
    kwargs = {"training": training} if takes_training(fn) else {}
    out, losses = call_traced(owner, lambda: fn(args, **kwargs), what)
    return placeholders, out, losses


def call_traced(owner, run, what: str):
    """(what ``run()`` returns, the add_loss values) with ``owner``'s trace under way; a
    symbolic tensor used as data becomes a TypeError naming the owner and the user's line."""
    with tracing(owner) as collected:
        try:
            out = run()
        except TypeError as e:  # a symbolic tensor refused to act as data (layers/node.py)
            frames = traceback.extract_tb(e.__traceback__)
            refused = frames and frames[-1].filename.replace("\\", "/").endswith("layers/node.py")
            if not refused and "KerasTensor" not in str(e):  # the layer's own error: as it is
                raise
            raise TypeError(_explain(owner, what, e)) from e
        except AttributeError as e:  # a NumPy method asked of a symbolic tensor (x.mean())
            refuse_state_update(owner, e, what)
            if "KerasTensor" not in str(e):
                raise
            raise TypeError(_explain(owner, what, e)) from e
    return out, collected.losses


def _where(error: Exception) -> str:
    """at the user's file:line (its code), the last frame outside minicnn, or ""."""
    frames = traceback.extract_tb(error.__traceback__)
    mine = [f for f in frames if "/minicnn/" not in f.filename.replace("\\", "/")]
    return f" at {mine[-1].filename}:{mine[-1].lineno} ({mine[-1].line})" if mine else ""


def call_eagerly(owner, args, kwargs: dict):
    """``owner.call`` on arrays (keras.ops and the layers compute on them), with its
    in-place weight updates refused as in a trace."""
    try:
        return owner.call(args, **kwargs)
    except AttributeError as e:
        refuse_state_update(owner, e)
        raise


def refuse_state_update(owner, error: AttributeError, what: str = "call()") -> None:
    """A NotImplementedError naming the owner and the line where ``error`` is a weight asked
    for Keras's Variable.assign/assign_add/assign_sub (minicnn's weights are arrays)."""
    if "ndarray' object has no attribute 'assign" in str(error):
        raise NotImplementedError(_state_update(owner, what, error)) from error


def _state_update(owner, what: str, error: Exception) -> str:
    kind = "Layer" if isinstance(owner, Layer) else "Loss"
    return (
        f'{kind} "{owner.name}" ({type(owner).__name__}): its {what} updates a weight in place'
        f"{_where(error)}: Keras's Variable.assign, assign_add and assign_sub are not supported. "
        f"minicnn runs a {what} once on symbolic inputs into a graph of ops, which changes no "
        "state as it runs (its own layers keep theirs by hand, as BatchNormalization's moving "
        "statistics); compute the value in call() and return it, or update the weight outside "
        "call()"
    )


def _explain(owner, what: str, error: Exception) -> str:
    where = _where(error)
    kind = "Layer" if isinstance(owner, Layer) else "Loss"
    return (
        f'{kind} "{owner.name}" ({type(owner).__name__}): its {what} could not be traced into '
        f"graph nodes{where}: {error}. minicnn runs a {what} once on symbolic inputs, so it must "
        f"be written with keras.ops{' and layers' if kind == 'Layer' else ''}: no NumPy on its inputs, no Python branch on "
        "their values (a branch on `training` is fine)"
    )


def traced_graph(owner, fn, shapes: list, single: bool, training):
    """The Graph of ``fn`` traced for ``shapes`` in mode ``training``, kept on ``owner`` (one
    per input shape and mode). ``graph.n_outputs`` counts fn's outputs; the add_loss values
    follow them; ``graph.single_output``: fn gave one tensor, not a list."""
    from minicnn.layers.graph import Graph

    key = (tuple(tuple(s) for s in shapes), single, training)
    cache = owner.__dict__.setdefault("_traces", {})
    if key not in cache:
        inputs, out, losses = trace(owner, fn, list(shapes), single, training)
        outs = list(out) if isinstance(out, (list, tuple)) else [out]
        graph = Graph(inputs, outs + list(losses))
        graph.n_outputs, graph.single_output = len(outs), not isinstance(out, (list, tuple))
        cache[key] = graph
    return cache[key]
