"""BatchNormalization, channels-last."""

from __future__ import annotations

from minicnn import initializers, ops
from minicnn.layers.base import Layer


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
        self.relu_y = None  # a frozen layer's output, for a fused ReLU's mask (Sequential._steps)
        self.initializers = {
            "gamma": initializers.get(gamma_initializer, owner),
            "beta": initializers.get(beta_initializer, owner),
            "moving_mean": initializers.get(moving_mean_initializer, owner),
            "moving_variance": initializers.get(moving_variance_initializer, owner),
        }

    def build(self, input_shape, backend=None):
        input_shape = tuple(input_shape)
        if self.axis not in (-1, len(input_shape)):  # the batch axis is 0: the last is len(shape)
            raise ValueError(
                f'Layer "{self.name}" (BatchNormalization): minicnn normalises the last axis '
                f"(channels-last) only. Received: axis={self.axis} for input shape {(None, *input_shape)}"
            )
        super().build(input_shape, backend)
        for name, shape in self.weight_shapes(input_shape).items():
            trainable = name in ("gamma", "beta")
            self.add_weight(name, shape, self.initializers[name], trainable=trainable)

    def weight_shapes(self, input_shape):
        c = (input_shape[-1],)
        shapes = {"gamma": c} if self.scale else {}
        if self.center:
            shapes["beta"] = c
        return {**shapes, "moving_mean": c, "moving_variance": c}

    def forward(self, x, training=False, relu=False):
        """``relu``: also apply a ReLU in the same pass, and mask the gradient by it in
        ``backward``: how a Sequential runs a BatchNormalization that a ReLU layer follows."""
        self.check_input_shape(x.shape[1:])
        c = x.shape[-1]
        x2 = x.reshape(-1, c)  # (M, C): every position of every image
        gamma, beta = self.params.get("gamma"), self.params.get("beta")
        if training and self.trainable:
            y, mean, var, inv_std = ops.batchnorm_forward(x2, gamma, beta, self.epsilon, relu)
            m = self.momentum
            for name, batch in (("moving_mean", mean), ("moving_variance", var)):
                moving = self.state[name]
                moving[...] = moving * m + batch * (1 - m)
            self.cache, self.relu_y = (x2, mean, inv_std, relu), None
        else:
            mm, mv = self.state["moving_mean"], self.state["moving_variance"]
            y, scale = ops.batchnorm_inference(x2, gamma, beta, mm, mv, self.epsilon, relu)
            self.cache = scale if training else None  # frozen: a fixed affine map per channel
            self.relu_y = y if relu and training else None  # for the fused ReLU's mask
        return y.reshape(x.shape)

    def inference_affine(self):
        """(scale, shift) per channel: this layer at inference is x * scale + shift (what a
        Sequential folds into the convolution before it when predicting)."""
        mm, mv = self.state["moving_mean"], self.state["moving_variance"]
        gamma, beta = self.params.get("gamma"), self.params.get("beta")
        return ops.batchnorm_affine(gamma, beta, mm, mv, self.epsilon)

    def backward(self, gy):
        c = gy.shape[-1]
        g2 = gy.reshape(-1, c)
        y, self.relu_y = self.relu_y, None
        if not isinstance(self.cache, tuple):
            g2 = g2 if y is None else ops.relu_backward(g2, y)
            return (g2 * self.cache).reshape(gy.shape)
        x2, mean, inv_std, relu = self.cache
        gamma, beta = self.params.get("gamma"), self.params.get("beta")
        gx, ggamma, gbeta = ops.batchnorm_backward(g2, x2, mean, inv_std, gamma, beta, relu)
        if self.scale:
            self.grads["gamma"] = ggamma
        if self.center:
            self.grads["beta"] = gbeta
        self.cache = None
        return gx.reshape(gy.shape)

    def get_config(self):
        return {
            **super().get_config(),
            "axis": self.axis,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
        }
