"""BatchNormalization, channels-last."""

from __future__ import annotations

from typing import NamedTuple

from minicnn import initializers, maths
from minicnn.layers.base import Layer


class BatchNormCtx(NamedTuple):
    x2: object  # training: the input as (M, C), its batch mean and 1/std
    mean: object
    inv_std: object
    scale: object  # frozen (moving statistics while training): the per-channel scale; else None


class BatchNormalization(Layer):
    """Normalise each channel (the last axis) to zero mean and unit variance, then scale by
    ``gamma`` and shift by ``beta``.

    Training (``training=True`` and ``trainable``): the batch's mean and biased variance, and
    ``moving = moving * momentum + batch * (1 - momentum)`` for both statistics, as Keras does.
    Inference, or a frozen layer: the moving statistics. Weights in Keras's order: gamma, beta,
    moving_mean, moving_variance (the last two not trained). Works after Conv2D (N, H, W, C) and
    after Dense (N, C).
    """

    def __init__(
        self,
        axis: int = -1,
        momentum: float = 0.99,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        moving_mean_initializer="zeros",
        moving_variance_initializer="ones",
        **kwargs,
    ):
        super().__init__(**kwargs)
        owner = f'Layer "{self.name}" (BatchNormalization)'
        if not isinstance(axis, int):
            raise ValueError(f"{owner}: axis must be an int. Received: axis={axis!r}")
        if not 0 <= momentum < 1:
            raise ValueError(f"{owner}: momentum must be in [0, 1). Received: momentum={momentum!r}")  # fmt: skip
        if not epsilon > 0:
            raise ValueError(f"{owner}: epsilon must be positive. Received: epsilon={epsilon!r}")
        self.axis, self.momentum, self.epsilon = axis, float(momentum), float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.initializers = {
            "gamma": initializers.get(gamma_initializer, owner),
            "beta": initializers.get(beta_initializer, owner),
            "moving_mean": initializers.get(moving_mean_initializer, owner),
            "moving_variance": initializers.get(moving_variance_initializer, owner),
        }

    def compute_output_shape(self, input_shape):
        if self.axis not in (-1, len(input_shape) - 1):
            raise ValueError(
                f'Layer "{self.name}" (BatchNormalization): minicnn normalises the last axis '
                f"(channels-last) only. Received: axis={self.axis} for input shape {input_shape}"
            )
        self.check_channels(input_shape)
        return tuple(input_shape)

    def build(self, input_shape):
        for name, shape in self.weight_shapes(input_shape).items():
            trainable = name in ("gamma", "beta")
            self.add_weight(shape=shape, initializer=self.initializers[name], trainable=trainable, name=name)  # fmt: skip

    def weight_shapes(self, input_shape):
        c = (input_shape[-1],)
        shapes = {"gamma": c} if self.scale else {}
        if self.center:
            shapes["beta"] = c
        return {**shapes, "moving_mean": c, "moving_variance": c}

    def uses_batch_statistics(self, training: bool) -> bool:
        """Keras's rule: the batch's statistics when training a trainable layer; else the moving
        ones (a frozen BatchNormalization runs in inference mode)."""
        return bool(training) and self.trainable

    def forward(self, x, training=False):
        c = x.shape[-1]
        x2 = x.reshape(-1, c)  # (M, C): every position of every image
        gamma, beta = self.params.get("gamma"), self.params.get("beta")
        if self.uses_batch_statistics(training):
            y, mean, var, inv_std = maths.batchnorm_forward(x2, gamma, beta, self.epsilon)
            self.update_moving(mean, var)
            return y.reshape(x.shape), BatchNormCtx(x2, mean, inv_std, None)
        scale, shift = self.inference_affine()
        y = maths.channel_affine(x2, scale, shift).reshape(x.shape)
        return y, (BatchNormCtx(None, None, None, scale) if training else None)

    def backward(self, gy, ctx, need_gx=True):
        g2 = gy.reshape(-1, gy.shape[-1])
        if ctx.scale is not None:  # frozen: a fixed affine map per channel, nothing trains
            return (g2 * ctx.scale).reshape(gy.shape), {}
        gamma, beta = self.params.get("gamma"), self.params.get("beta")
        gx, ggamma, gbeta = maths.batchnorm_backward(g2, ctx.x2, ctx.mean, ctx.inv_std, gamma, beta)
        return gx.reshape(gy.shape), self.weight_grads(ggamma, gbeta)

    def update_moving(self, mean, var) -> None:
        """moving = moving * momentum + batch * (1 - momentum), for both statistics."""
        m = self.momentum
        for name, batch in (("moving_mean", mean), ("moving_variance", var)):
            moving = self.state[name]
            moving[...] = moving * m + batch * (1 - m)

    def weight_grads(self, ggamma, gbeta) -> dict:
        grads = {"gamma": ggamma} if self.scale else {}
        return {**grads, "beta": gbeta} if self.center else grads

    def inference_affine(self):
        """(scale, shift) per channel: this layer at inference is x * scale + shift (what a
        plan folds into the convolution before it when predicting)."""
        mm, mv = self.state["moving_mean"], self.state["moving_variance"]
        gamma, beta = self.params.get("gamma"), self.params.get("beta")
        return maths.batchnorm_affine(gamma, beta, mm, mv, self.epsilon)

    def get_config(self):
        return {
            **super().get_config(),
            "axis": self.axis,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
        }
