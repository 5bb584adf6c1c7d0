"""The plan: how a model's graph runs, decided once for an input shape and a mode, then read by
every forward and backward pass made with it.

For each leaf-layer call it decides

- which convolution algorithm runs (``maths.choose_algorithm`` for that layer's geometry);
- what fuses (``minicnn.plan.steps``): BatchNormalization + ReLU; Conv2D/Dense + ReLU; at
  inference Conv2D + BatchNormalization (+ ReLU), a BatchNormalization (through Dropouts)
  into a "valid" Conv2D after it where that pays, else into the output of the Conv2D + ReLU
  before it, a 2x2 MaxPooling2D into the Conv2D before it, and a residual block's Add
  (+ ReLU) into the Winograd or direct Conv2D that feeds it; a softmax head whose loss takes
  the logits;
- whether the step must give its input's gradient (only if a trained weight lies upstream),
  so backward stops where nothing below it learns.

A value feeds a fused chain only if the chain's next layer is its one reader and it is not a
model output. ``forward`` frees each value after its last reader; ``backward`` walks the steps
in reverse, adds gradients where a value fans out, and sums each weight's gradient over the
calls of a shared layer.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from minicnn import maths
from minicnn.maths import dispatch
from minicnn.ops.core import WeightRead
from minicnn.plan.graph import Graph, flatten
from minicnn.plan.steps import (
    BatchNormStep,
    ConvStep,
    DenseStep,
    LayerStep,
    SkipStep,
    WeightStep,
    is_relu_layer,
)

SMALL_BATCH = 4  # inference on at most this many images: array code until the kernels are warm


class Plan:
    """The steps of ``graph`` for inputs of batch ``n`` in mode ``training``.
    ``heads``: (output index, activation) of each output whose loss takes the logits of that
    final activation (a softmax or a sigmoid, left to the loss).
    ``kernels``: whether the steps ask for hand-written kernels. At inference on a few images
    only when ``warm`` (the model has run a plan with kernels in this process, so they are
    compiled): on a fresh install their compilation takes seconds (the seed model's first
    batch-1 predict: 8.3 s with them, 0.01 s without). They run on every core, at any batch:
    on the calling thread alone, batch-1 predicts took 1.2-1.3x as long (interleaved, 2-core
    AMD EPYC, us, one core / all: seed 339 / 256, convnet 117 / 88, BatchNorm + augmentation
    318 / 245, best 538 / 430, residual 514 / 437).
    ``ran``: a forward has run (its kernels are compiled)."""

    def __init__(self, graph: Graph, n: int, training: bool, heads=(), xp=np, dtype="float32", warm=False):  # fmt: skip
        self.training, self.n, self.xp, self.dtype = training, n, xp, dtype
        self.kernels = training or n > SMALL_BATCH or xp is not np or warm
        self.ran = False
        flat = flatten(graph, training)
        self.inputs, self.n_outputs = flat.inputs, len(flat.outputs)
        self.outputs = flat.outputs + flat.losses  # the model's outputs, then add_loss terms
        readers = defaultdict(list)
        for i, call in enumerate(flat.calls):
            for v in call.inputs:
                readers[v].append(i)
        heads = {flat.outputs[i]: act for i, act in heads}
        self._made_at = {v: i for i, call in enumerate(flat.calls) for v in call.outputs}
        emitted = {}  # head values given as logits: their activation
        grad = {v: False for v in flat.inputs}  # does a trained weight lie upstream of v?
        self.steps, taken = [], set()
        for i, call in enumerate(flat.calls):
            if i in taken:
                continue
            need_gx = any(grad[v] for v in call.inputs)
            chain = self._chain(flat, i, readers)
            last = flat.calls[chain[-1]]
            logits = (  # a head nothing else reads, ending in its loss's activation
                len(last.outputs) == 1
                and not readers[last.outputs[0]]
                and heads.get(last.outputs[0]) is not None
                and _final_activation(last.layer) == heads[last.outputs[0]]
            )
            if logits:
                emitted[last.outputs[0]] = heads[last.outputs[0]]
            step = self._step(call, chain, flat, need_gx, logits)
            taken.update(chain)
            step.outputs = flat.calls[chain[-1]].outputs  # a fused chain gives its last value
            for v in step.outputs:
                grad[v] = need_gx or step.trains
            self.steps.append(step)
        last = {}
        for k, step in enumerate(self.steps):
            for v in step.inputs:
                last[v] = k
        self.last_reader = last
        self.needs_grad = grad
        # per output: the activation left to its loss (the output is its logits), or None
        self.logits = tuple(emitted.get(v) for v in flat.outputs)

    def _chain(self, flat, i, readers) -> list:
        """The calls that fuse with call i: i, then each next one that is its value's only
        reader (and where that value is no model output), while the pair fuses. A chain may
        start with a BatchNormalization at inference, and the Dropouts after it, folded into
        the "valid" convolution they lead to (``_prefix``); the rules then go on from it."""
        chain = self._prefix(flat, i, readers)
        head = len(chain) - 1  # where the convolution's own chain starts
        while True:
            out = flat.calls[chain[-1]].outputs
            if len(out) != 1 or out[0] in flat.outputs or len(readers[out[0]]) != 1:
                return chain
            j = readers[out[0]][0]
            if not self._fuses([flat.calls[k] for k in chain[head:]], flat.calls[j], flat, j, readers):  # fmt: skip
                return chain
            chain.append(j)

    def _prefix(self, flat, i, readers) -> list:
        """[i, the Dropouts after it..., a Conv2D] when call i is a BatchNormalization at
        inference that reaches a "valid" Conv2D through nothing but inference Dropouts (each
        value's one reader, no model output): conv(x * s + t) = conv_{k*s}(x) + sum(k * t)
        when no padding is read. Else [i]. Only where the fold pays: it makes the kernel anew
        each call (two passes over it), the BatchNormalization's own step one pass over its
        input; at batch 1 the best recipe's network spent 24-144 us a layer on the fold, a
        quarter of its predict."""
        call = flat.calls[i]
        # an inference plan only: backward through the fold would give the folded kernel's
        # gradient, not the kernel's
        if self.training or type(call.layer).__name__ != "BatchNormalization":
            return [i]
        chain = [i]
        while True:
            out = flat.calls[chain[-1]].outputs
            if len(out) != 1 or out[0] in flat.outputs or len(readers[out[0]]) != 1:
                return [i]
            nxt = flat.calls[readers[out[0]][0]]
            kind = type(nxt.layer).__name__
            if not nxt.single or nxt.training or kind not in ("Dropout", "Conv2D"):
                return [i]
            chain.append(readers[out[0]][0])
            if kind == "Conv2D":
                shape = flat.shapes[nxt.inputs[0]][1:]
                valid = all(p == 0 for p in nxt.layer.pads(*shape[:2]))
                # n * H * W * C against kh * kw * C * F: the batch's pixels against taps x filters
                pays = self.n * math.prod(shape) >= nxt.layer.params["kernel"].size
                return chain if valid and pays else [i]

    def _fuses(self, chain, nxt, flat, j, readers) -> bool:
        kinds = [type(c.layer).__name__ for c in chain]
        first = chain[0].layer
        if any(c.training != nxt.training for c in chain) or _after_relu(chain) is not None:
            return False  # nothing fuses after a BatchNormalization that follows the ReLU
        if type(nxt.layer).__name__ == "Add":
            return kinds == ["Conv2D"] and self._adds(chain[0], nxt, flat)
        if not nxt.single:
            return False
        if kinds == ["Conv2D", "Add"]:
            return is_relu_layer(nxt.layer)
        if type(nxt.layer).__name__ == "MaxPooling2D":
            return kinds[0] == "Conv2D" and not {"Add", "MaxPooling2D"} & set(kinds) and self._pools(chain[0], nxt, flat)  # fmt: skip
        relu = is_relu_layer(nxt.layer)
        linear = (
            getattr(first, "activation", None) is not None and first.activation.name == "linear"
        )
        if kinds == ["BatchNormalization"] or kinds == ["Conv2D", "BatchNormalization"]:
            return relu
        if kinds in (["Conv2D"], ["Dense"]) and linear and relu:
            return True
        inference = not (self.training if nxt.training is None else nxt.training)
        is_bn = type(nxt.layer).__name__ == "BatchNormalization"
        # the fold computes the inference map; backward through it gives no weight gradients,
        # so a call fixed to training=False whose weights train keeps the two steps
        trains = self.training and any(x.trainable and x.params for x in (first, nxt.layer))
        if kinds == ["Conv2D"] and linear and is_bn and inference and not trains:
            return True
        # a BatchNormalization after the convolution's ReLU, at inference: an affine map on its
        # output, in its step, unless it folds into the next convolution (``_prefix``: no pass)
        relu_ended = kinds == ["Conv2D", "ReLU"] or (kinds == ["Conv2D"] and getattr(first.activation, "name", None) == "relu")  # fmt: skip
        if not (relu_ended and is_bn and inference and not self.training):
            return False
        return len(self._prefix(flat, j, readers)) == 1

    def _pools(self, conv, pool, flat) -> bool:
        """Whether the convolution of call ``conv`` (with its BatchNormalization and ReLU) can
        max-pool its output in its last pass for the MaxPooling2D call ``pool``: at inference on
        the CPU, 2x2 windows of stride 2 reading no padding, an activation that is ReLU or none
        (max pooling commutes with ReLU, not with every activation), and an algorithm that can
        (``maths.conv.POOLED``)."""
        layer, p = conv.layer, pool.layer
        if self.training or pool.training or self.xp is not np:
            return False
        if (p.pool_size, p.strides, p.padding) != ((2, 2), (2, 2), "valid"):
            return False
        if getattr(layer.activation, "name", None) not in ("relu", "linear"):
            return False
        return self._conv_algorithm(conv, flat) in maths.conv.POOLED

    def _adds(self, conv, add, flat) -> bool:
        """Whether the Add call ``add`` (and a ReLU after it) can join the convolution of call
        ``conv`` as a residual added in its step: at inference on the CPU, a Winograd (in its
        output pass) or direct (after it) convolution with no activation of its own, whose
        output is one of the Add's two inputs and the other, of the same shape, is made before
        it (the fused step runs where the convolution did)."""
        y = conv.outputs[0]
        if self.training or add.training or self.xp is not np or len(add.inputs) != 2:
            return False
        if getattr(conv.layer.activation, "name", None) != "linear" or list(add.inputs).count(y) != 1:  # fmt: skip
            return False
        other = next(v for v in add.inputs if v != y)
        if tuple(flat.shapes[other]) != tuple(flat.shapes[y]):
            return False
        if self._made_at.get(other, -1) >= self._made_at[y]:
            return False
        return self._conv_algorithm(conv, flat) in ("winograd", "direct")

    def _conv_algorithm(self, call, flat) -> str:
        x_shape = (self.n, *flat.shapes[call.inputs[0]][1:])
        conv = call.layer
        kernel = (*conv.kernel_size, x_shape[-1], conv.filters)
        pads = conv.pads(*x_shape[1:3])
        return maths.choose_algorithm(x_shape, kernel, conv.strides, pads, self.xp, self.dtype, self.kernels, self.training)  # fmt: skip

    def _step(self, call, chain, flat, need_gx, logits):
        calls = [flat.calls[j] for j in chain]
        kinds = [type(c.layer).__name__ for c in calls]
        if kinds[0] == "BatchNormalization" and "Conv2D" in kinds:  # ``_prefix``'s fold
            k = kinds.index("Conv2D")
            step = self._step(calls[k], chain[k:], flat, need_gx, logits)
            step.take_prefix(call, [c.layer for c in calls[:k]])
            return step
        kind = type(call.layer).__name__
        relu = next((c.layer for c in calls[1:] if is_relu_layer(c.layer)), None)
        if kind == "Conv2D":
            post = _after_relu(calls)
            bn = next((c.layer for c in calls[1:] if type(c.layer).__name__ == "BatchNormalization" and c.layer is not post), None)  # fmt: skip
            pool = next((c.layer for c in calls[1:] if type(c.layer).__name__ == "MaxPooling2D"), None)  # fmt: skip
            add = next((c for c in calls[1:] if type(c.layer).__name__ == "Add"), None)
            algo = self._conv_algorithm(call, flat)
            step = ConvStep(call, need_gx, algo, bn, relu, logits, pool, add and add.layer, post)
            if add is not None:  # the residual: the Add's other input
                step.inputs = [*call.inputs, next(v for v in add.inputs if v != call.outputs[0])]  # fmt: skip
            return step
        if kind == "Dense" and (relu is not None or logits):
            return DenseStep(call, need_gx, relu, logits)
        if kind == "BatchNormalization" and relu is not None:
            return BatchNormStep(call, need_gx, relu)
        if logits:
            return SkipStep(call, need_gx)
        if isinstance(call.layer, WeightRead):
            return WeightStep(call, need_gx)
        return LayerStep(call, need_gx)

    # -- running it ----------------------------------------------------------------------------

    def forward(self, xs: list, training: bool, watch=None):
        """Model inputs -> (model outputs, tape for backward). ``watch(step, y)``, if given,
        sees each step's output as it is made (a diagnosis of where values stop being finite)."""
        if not self.kernels:
            with dispatch.array_code():
                return self._forward(xs, training, watch)
        return self._forward(xs, training, watch)

    def _forward(self, xs: list, training: bool, watch):
        values = dict(zip(self.inputs, xs))
        outputs = set(self.outputs)
        tape = []
        for k, step in enumerate(self.steps):
            mode = training if step.call.training is None else step.call.training
            y, ctx = step.forward([values[v] for v in step.inputs], mode, training)
            if watch is not None:
                watch(step, y)
            if len(step.outputs) == 1:
                values[step.outputs[0]] = y
            else:  # a call with several outputs (ops.split)
                values.update(zip(step.outputs, y))
            tape.append(ctx)
            for v in set(step.inputs):
                if self.last_reader[v] == k and v not in outputs:
                    del values[v]  # its last reader has run: let it go
        self.ran = True
        return [values[v] for v in self.outputs], tape

    def backward(self, tape: list, gouts: list) -> dict:
        """The gradient of each model output (None where no loss reads it), back through the
        steps: -> {(id(layer), weight name): gradient}."""
        grads: dict = {}
        g = {}
        for v, gv in zip(self.outputs, gouts):
            if gv is not None:
                g[v] = g[v] + gv if v in g else gv
        for k in range(len(self.steps) - 1, -1, -1):
            step, ctx = self.steps[k], tape[k]
            tape[k] = None  # the largest arrays of the step: let them go once used
            if len(step.outputs) == 1:
                gy = g.pop(step.outputs[0], None)
            else:  # several outputs: None where no gradient reached one
                gy = [g.pop(v, None) for v in step.outputs]
                gy = None if all(x is None for x in gy) else gy
            if gy is None or not (step.trains or step.need_gx):
                continue
            gxs, wgrads = step.backward(gy, ctx)
            for layer, name, gw in wgrads:
                if layer.trainable:
                    key = (id(layer), name)
                    grads[key] = grads[key] + gw if key in grads else gw
            if not step.need_gx:
                continue
            for v, gx in zip(step.inputs, gxs):
                if gx is not None and self.needs_grad.get(v, False):
                    g[v] = g[v] + gx if v in g else gx
        return grads

    # -- what it decided -------------------------------------------------------------------------

    def describe(self) -> list[tuple[str, str, str, str, str]]:
        """One row per step: (layers, type, algorithm, fused, kept for backward)."""
        rows = []
        for step in self.steps:
            names = " + ".join(layer.name for layer in step.layers)
            kinds = " + ".join(type(layer).__name__ for layer in step.layers)
            keeps = step.keeps() if self.training and (step.trains or step.need_gx) else ""
            rows.append((names, kinds, step.algorithm(), ", ".join(step.fused), keeps))
        return rows


def _after_relu(calls):
    """The BatchNormalization layer of a Conv2D chain that comes after its ReLU (the
    convolution's own or a ReLU layer's), or None."""
    if type(calls[0].layer).__name__ != "Conv2D":
        return None
    relu = getattr(calls[0].layer.activation, "name", None) == "relu"
    for c in calls[1:]:
        if is_relu_layer(c.layer):
            relu = True
        elif type(c.layer).__name__ == "BatchNormalization" and relu:
            return c.layer
    return None


def _final_activation(layer) -> str | None:
    """The name of the activation a layer ends in, for layers with ``activation=``."""
    if not hasattr(layer, "ends_in_softmax"):  # minicnn.layers.base.ActivationMixin
        return None
    return getattr(layer.activation, "name", None)
