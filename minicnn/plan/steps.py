"""The steps a plan runs: a layer call as it is, or a chain of calls fused into one pass.

Every step has the contract of a layer, over value lists:

    forward(xs, mode, keep) -> (y, ctx)      backward(gy, ctx) -> (gxs, [(layer, name, grad)])

``mode`` is the call's (training or inference), ``keep`` whether backward will run (the plan's
mode). They differ for a call fixed to ``training=False`` in a model being trained (a base
model fine-tuned in inference mode): it computes as at inference and keeps what backward needs.

``LayerStep`` runs one layer's own forward and backward. The fused steps compute what the chain
of layers computes, with fewer passes over the activations:

- ``ConvStep``: a Conv2D with the plan's algorithm; at inference a BatchNormalization after it
  folds into its kernel and bias, and one after its ReLU maps its output in the same step; a
  ReLU after them (or its own) goes into the output pass; as
  a model's head it can stop before a final softmax (the loss then takes the logits);
- ``DenseStep``: a Dense, its bias and a ReLU that follows in one pass, or its logits;
- ``BatchNormStep``: a BatchNormalization with the ReLU that follows it in its output pass, the
  gradient masked by the same expression;
- ``SkipStep``: a softmax layer a head's loss takes over (the loss works from its input).
"""

from __future__ import annotations

from typing import NamedTuple

from minicnn import activations, maths

# What each layer type keeps for backward, for describe() (Conv2D's depends on its algorithm)
KEEPS = {
    "Dense": "input, output",
    "BatchNormalization": "input, batch mean, 1/std",
    "MaxPooling2D": "argmax",
    "GlobalMaxPooling2D": "argmax",
    "Dropout": "mask",
    "UnitNormalization": "input, 1/norm",
    "RandomFlip": "flipped images",
    "RandomContrast": "factors, clip mask",
    "RandomBrightness": "clip mask",
    "RandomRotation": "maps",
    "RandomTranslation": "maps",
    "RandomZoom": "maps",
    "RandomElasticTransform": "points, clip mask",
    "Activation": "output",
    "ReLU": "output",
    "Softmax": "output",
    "Multiply": "inputs",
    "Maximum": "inputs, output",
    "Minimum": "inputs, output",
}
CONV_KEEPS = {
    "im2col": "im2col rows",
    "direct": "padded input",
    "shifted": "padded input",
    "winograd": "transformed input V",
    "space_to_depth": "transformed 2x2-block input V",
    "taps": "input rows",
}


class Step:
    """One step: ``layers`` (the first is the call's own), value ids in and out."""

    fused: tuple = ()

    def __init__(self, call, need_gx: bool, layers=None):
        self.call = call
        self.layer = call.layer
        self.layers = tuple(layers or (call.layer,))
        self.inputs, self.outputs = call.inputs, call.outputs
        self.need_gx = need_gx

    @property
    def trains(self) -> bool:
        """Whether backward has weight gradients to give."""
        return any(layer.trainable and layer.params for layer in self.layers)

    def forward(self, xs, mode, keep=None):
        x = xs[0] if self.call.single else xs
        if keep and not mode:
            return self.layer.inference_forward(x)
        return self.layer.forward(x, mode)

    def backward(self, gy, ctx):
        gx, grads = self.layer.backward(gy, ctx, self.need_gx)
        return (
            [gx] if self.call.single else list(gx),
            [(self.layer, k, g) for k, g in grads.items()],
        )

    def algorithm(self) -> str:
        return ""

    def keeps(self) -> str:
        return KEEPS.get(type(self.layer).__name__, "")

    def __repr__(self) -> str:
        names = "+".join(layer.name for layer in self.layers)
        return f"<{type(self).__name__} {names}>"


LayerStep = Step


class ConvCtx(NamedTuple):
    conv: object  # the algorithm's ctx
    y: object  # what an activation other than ReLU reads in backward (``keeps``); else None


class ConvStep(Step):
    def __init__(self, call, need_gx, algorithm, bn=None, relu=None, logits=False, pool=None, add=None, post=None):  # fmt: skip
        layers = [call.layer] + [
            layer for layer in (bn, add, relu, pool, post) if layer is not None
        ]
        super().__init__(call, need_gx, layers)
        self.post = post  # a BatchNormalization after the ReLU (inference): its map on the output
        self.conv, self.bn, self.algo, self.logits = call.layer, bn, algorithm, logits
        self.pool = pool  # a 2x2 MaxPooling2D done in the output pass (inference): Plan._pools
        self.add = add  # an Add of a residual, its second input (inference): Plan._adds
        act = self.conv.activation
        self.relu = relu is not None or act.name == "relu"
        self.act = None if self.relu or act.name == "linear" or logits else act
        fused = (("batchnorm", bn), ("add", add), ("relu", self.relu), ("logits", logits), ("max_pooling", pool), ("batchnorm after", post))  # fmt: skip
        self.fused = tuple(x for x, on in fused if on)

    def take_prefix(self, call, layers) -> None:
        """Run from ``call`` (a BatchNormalization's, at inference) with its layers folded in:
        its map x * s + t goes into this convolution's kernel and bias; the Dropouts between
        them are identities there (``Plan._prefix`` checked the convolution reads no padding)."""
        self.call, self.inputs = call, [*call.inputs, *self.inputs[1:]]  # and a residual
        self.pre = layers[0]
        self.layers = (*layers, *self.layers)
        self.fused = ("batchnorm before", *self.fused)

    pre = None

    def forward(self, xs, mode, keep=None):
        training = mode if keep is None else keep
        x, conv = xs[0], self.conv
        kernel, bias = conv.params["kernel"], conv.params.get("bias")
        if self.pre is not None:  # conv(x * s + t) = conv_{k * s}(x) + sum over taps of k * t
            scale, shift = self.pre.inference_affine()
            taps = kernel.sum(axis=(0, 1))  # (C, F): sum over taps of k * t = t @ (sum of k)
            bias = (0 if bias is None else bias) + shift.astype(kernel.dtype) @ taps
            kernel = kernel * scale[:, None].astype(kernel.dtype)
        if self.bn is not None:  # inference: y = conv(x) * scale + shift, into kernel and bias
            scale, shift = self.bn.inference_affine()
            kernel = kernel * scale.astype(kernel.dtype)
            bias = (shift if bias is None else bias * scale + shift).astype(kernel.dtype)
        pads = conv.pads(*x.shape[1:3])
        if self.add is not None:  # inference alone: act(conv + bias + residual)
            y = maths.conv2d_residual(x, kernel, bias, conv.strides, pads, xs[1], self.relu, self.algo)  # fmt: skip
            return y, None
        if self.pool is not None:  # inference alone: nothing is kept
            return maths.conv2d_pooled(x, kernel, bias, conv.strides, pads, self.relu, self.algo), None  # fmt: skip
        y, cctx = maths.conv2d_forward(
            x, kernel, bias, conv.strides, pads, self.relu, self.algo, keep=training
        )
        if self.post is not None:  # inference alone: y * scale + shift per channel
            scale, shift = self.post.inference_affine()
            f = y.shape[-1]
            scale, shift = scale.astype(y.dtype, copy=False), shift.astype(y.dtype, copy=False)
            y = maths.channel_affine(y.reshape(-1, f), scale, shift).reshape(y.shape)
        kept = None
        if self.act is not None:
            y, kept = self.act.apply(y)
        return y, (ConvCtx(cctx, kept) if training else None)

    def backward(self, gy, ctx):
        if self.act is not None:
            gy = self.act.backward(gy, ctx.y)
        gx, gkernel, gbias = maths.conv2d_backward(gy, ctx.conv, self.need_gx)
        grads = [(self.conv, "kernel", gkernel)]
        if gbias is not None:
            grads.append((self.conv, "bias", gbias))
        return [gx], grads

    def algorithm(self) -> str:
        return self.algo

    def keeps(self) -> str:
        return CONV_KEEPS[self.algo]


class DenseStep(Step):
    def __init__(self, call, need_gx, relu=None, logits=False):
        super().__init__(call, need_gx, [call.layer] + ([relu] if relu is not None else []))
        act = call.layer.activation
        self.relu = relu is not None or act.name == "relu"
        self.act = None if self.relu or logits else act
        self.fused = tuple(x for x, on in (("relu", relu is not None), ("logits", logits)) if on)

    def forward(self, xs, mode, keep=None):
        training = mode if keep is None else keep
        x, dense = xs[0], self.layer
        z = maths.bias_relu(x @ dense.params["kernel"], dense.params.get("bias"), self.relu)
        y = z if self.act is None else self.act.forward(z)
        return y, ((x, y) if training else None)

    def backward(self, gy, ctx):
        x, y = ctx
        dense = self.layer
        gz = maths.relu_backward(gy, y) if self.relu else gy
        gz = gz if self.act is None else self.act.backward(gz, y)
        grads = [(dense, "kernel", maths.matmul_tn(x, gz))]
        if "bias" in dense.params:
            grads.append((dense, "bias", maths.sum_rows(gz)))
        return [gz @ dense.params["kernel"].T if self.need_gx else None], grads


class BatchNormStep(Step):
    """BatchNormalization, then the ReLU layer that follows, in one pass."""

    fused = ("relu",)

    def __init__(self, call, need_gx, relu):
        super().__init__(call, need_gx, [call.layer, relu])

    def forward(self, xs, mode, keep=None):
        keep = mode if keep is None else keep
        x, bn = xs[0], self.layer
        x2 = x.reshape(-1, x.shape[-1])
        gamma, beta = bn.params.get("gamma"), bn.params.get("beta")
        if bn.uses_batch_statistics(mode):
            y, mean, var, inv_std = maths.batchnorm_forward(x2, gamma, beta, bn.epsilon, relu=True)
            bn.update_moving(mean, var)
            return y.reshape(x.shape), ("batch", x2, mean, inv_std)
        if not keep:
            scale, shift = bn.inference_affine()
            return maths.channel_affine(x2, scale, shift, relu=True).reshape(x.shape), None
        y, bctx = bn.inference_forward(x, relu=True)
        return y, ("moving", bctx, y.reshape(x2.shape))

    def backward(self, gy, ctx):
        bn = self.layer
        g2 = gy.reshape(-1, gy.shape[-1])
        if ctx[0] == "moving":  # inference mode: a fixed affine map per channel, then ReLU
            _, bctx, y = ctx
            gx, grads = bn.inference_backward(maths.relu_backward(g2, y), bctx)
            return [gx.reshape(gy.shape)], [(bn, k, g) for k, g in grads.items()]
        _, x2, mean, inv_std = ctx
        gamma, beta = bn.params.get("gamma"), bn.params.get("beta")
        gx, ggamma, gbeta = maths.batchnorm_backward(g2, x2, mean, inv_std, gamma, beta, relu=True)
        return [gx.reshape(gy.shape)], [
            (bn, k, g) for k, g in bn.weight_grads(ggamma, gbeta).items()
        ]


class WeightStep(Step):
    """A traced call reading its own weight (``ops.core.WeightRead``): the value is the
    weight, and the gradient that reaches it is the owner layer's."""

    @property
    def trains(self) -> bool:
        op = self.layer
        return op.owner.trainable and op.weight in op.owner.params

    def forward(self, xs, mode, keep=None):
        return self.layer.value(), None

    def backward(self, gy, ctx):
        op = self.layer
        return [], [(op.owner, op.weight, gy)]


class SkipStep(Step):
    """A softmax layer ending a model whose loss takes the logits: its input passes through."""

    fused = ("logits",)

    def forward(self, xs, mode, keep=None):
        return xs[0], None

    def backward(self, gy, ctx):
        return [gy], []


def is_relu_layer(layer) -> bool:
    """A layer that is exactly a ReLU (``ReLU()`` or ``Activation("relu")``)."""
    return type(layer).__name__ in ("ReLU", "Activation") and isinstance(
        getattr(layer, "activation", None), activations.ReLU
    )
