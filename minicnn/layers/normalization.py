"""BatchNormalization (channels-last) and LayerNormalization."""

from __future__ import annotations

from typing import NamedTuple

from minicnn import initializers, maths
from minicnn.backend import get_array_module
from minicnn.layers.base import Layer
from minicnn.layers.options import WeightOptions, only_default


class BatchNormCtx(NamedTuple):
    x2: object  # the input as (M, C) and the statistics it was normalised by, 1/std as inv_std
    mean: object  # (None when nothing trains)
    inv_std: object
    scale: object  # the moving statistics' per-channel scale (inference mode); else None


class BatchNormalization(WeightOptions, Layer):
    """Normalise each channel (the last axis) to zero mean and unit variance, then scale by
    ``gamma`` and shift by ``beta``.

    Training (``training=True`` and ``trainable``): the batch's mean and biased variance, and
    ``moving = moving * momentum + batch * (1 - momentum)`` for both statistics, as Keras does.
    Inference, or a frozen layer: the moving statistics. Weights in Keras's order: gamma, beta,
    moving_mean, moving_variance (the last two not trained). Works after Conv2D (N, H, W, C) and
    after Dense (N, C). Keras's renorm and synchronized only at their defaults.
    """

    WEIGHTS = ("gamma", "beta")

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
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        renorm=False,
        renorm_clipping=None,
        renorm_momentum=0.99,
        synchronized=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        owner = f'Layer "{self.name}" (BatchNormalization)'
        only_default(owner, renorm=(renorm, False), renorm_clipping=(renorm_clipping, None),
                     renorm_momentum=(renorm_momentum, 0.99), synchronized=(synchronized, False))  # fmt: skip
        self._init_weight_options(owner, locals())
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
            options = self.weight_options(name) if name in self.WEIGHTS else {}
            self.add_weight(shape=shape, initializer=self.initializers[name], trainable=name in self.WEIGHTS, name=name, **options)  # fmt: skip

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

    mode_dependent = True

    def inference_forward(self, x, relu=False):
        """The moving statistics, keeping what backward needs: a trainable layer called with
        ``training=False`` inside a model being trained still trains gamma and beta, as Keras's
        does (a base model fine-tuned in inference mode)."""
        x2 = x.reshape(-1, x.shape[-1])
        scale, shift = self.inference_affine()
        y = maths.channel_affine(x2, scale, shift, relu=relu).reshape(x.shape)
        if not (self.trainable and self.params):
            return y, BatchNormCtx(None, None, None, scale)
        xp = get_array_module(x)
        mean, var = self.state["moving_mean"], self.state["moving_variance"]
        inv_std = (1 / xp.sqrt(var + self.epsilon)).astype(x.dtype)
        return y, BatchNormCtx(x2, mean.astype(x.dtype), inv_std, scale)

    def inference_backward(self, g2, ctx) -> tuple:
        """Backward of x * scale + shift with fixed statistics, on (M, C) gradients: -> (gx,
        {gamma, beta gradients} when they train)."""
        if ctx.x2 is None:
            return g2 * ctx.scale, {}
        xhat = (ctx.x2 - ctx.mean) * ctx.inv_std
        return g2 * ctx.scale, self.weight_grads(maths.sum_rows(g2 * xhat), maths.sum_rows(g2))

    def backward(self, gy, ctx, need_gx=True):
        g2 = gy.reshape(-1, gy.shape[-1])
        if ctx.scale is not None:  # inference mode: a fixed affine map per channel
            gx, grads = self.inference_backward(g2, ctx)
            return gx.reshape(gy.shape), grads
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
            **self.weight_options_config(),
        }


class LayerNormalization(WeightOptions, Layer):
    """Normalise each sample over ``axis`` (an int or a list; Keras's default -1, the features
    or channels) to zero mean and unit variance, then scale by ``gamma`` and shift by ``beta``,
    which have the shape of those axes (``minicnn.maths.layernorm``). No moving statistics:
    training and inference compute the same. Keras's deprecated ``rms_scaling`` is refused."""

    WEIGHTS = ("gamma", "beta")

    def __init__(
        self,
        axis=-1,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        **kwargs,
    ):
        rms = kwargs.pop("rms_scaling", False)
        super().__init__(**kwargs)
        owner = f'Layer "{self.name}" (LayerNormalization)'
        if rms:
            raise ValueError(
                f"{owner}: rms_scaling=True is not supported (Keras deprecates it: it scales by "
                "the variance, not the root mean square). Received: rms_scaling=True"
            )
        axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
        if not axes or not all(isinstance(a, int) and not isinstance(a, bool) for a in axes):
            raise TypeError(f"{owner}: axis must be an int or a list of ints. Received: axis={axis!r}")  # fmt: skip
        if not epsilon > 0:
            raise ValueError(f"{owner}: epsilon must be positive. Received: epsilon={epsilon!r}")
        self.axis = axis if isinstance(axis, int) else axes
        self.epsilon, self.center, self.scale = float(epsilon), bool(center), bool(scale)
        self.initializers = {
            "gamma": initializers.get(gamma_initializer, owner),
            "beta": initializers.get(beta_initializer, owner),
        }
        self._init_weight_options(owner, locals())

    def axes(self, rank: int) -> tuple:
        """The normalised axes of an input of ``rank``, sorted, each in 1..rank-1."""
        axes = [self.axis] if isinstance(self.axis, int) else self.axis
        out = sorted(a + rank if a < 0 else a for a in axes)
        if len(set(out)) != len(out) or not all(1 <= a < rank for a in out):
            raise ValueError(
                f'Layer "{self.name}" (LayerNormalization): axis must name distinct axes of the '
                f"input other than the batch. Received: axis={self.axis} for input rank {rank}"
            )
        return tuple(out)

    def compute_output_shape(self, input_shape):
        axes = self.axes(len(input_shape))
        if self.built and [input_shape[a] for a in axes] != [self.build_shape[a] for a in axes]:
            raise ValueError(
                f'Layer "{self.name}" (LayerNormalization) was built for inputs of shape '
                f"{self.build_shape} along axis {self.axis}. Received: input shape {input_shape}"
            )
        return tuple(input_shape)

    def weight_shapes(self, input_shape):
        shape = tuple(input_shape[a] for a in self.axes(len(input_shape)))
        shapes = {"gamma": shape} if self.scale else {}
        return {**shapes, "beta": shape} if self.center else shapes

    def build(self, input_shape):
        for name, shape in self.weight_shapes(input_shape).items():
            self.add_weight(shape=shape, initializer=self.initializers[name], name=name, **self.weight_options(name))  # fmt: skip
        self.axis = (
            [self.axis] if isinstance(self.axis, int) else self.axis
        )  # Keras's build does so

    def _broadcast(self, name, x):
        """gamma or beta shaped to broadcast over an input like ``x`` (batch axis left out)."""
        w = self.params.get(name)
        if w is None:
            return None
        axes = self.axes(x.ndim)
        return w.reshape([x.shape[a] if a in axes else 1 for a in range(1, x.ndim)])

    def forward(self, x, training=False):
        gamma, beta = self._broadcast("gamma", x), self._broadcast("beta", x)
        y, xhat, inv_std = maths.layernorm_forward(x, gamma, beta, self.axes(x.ndim), self.epsilon)
        return y, ((xhat, inv_std) if training else None)

    def backward(self, gy, ctx, need_gx=True):
        xhat, inv_std = ctx
        gamma = self._broadcast("gamma", gy)
        gx, ggamma, gbeta = maths.layernorm_backward(gy, xhat, inv_std, gamma, self.axes(gy.ndim))
        grads = {"gamma": ggamma.reshape(self.params["gamma"].shape)} if self.scale else {}
        if self.center:
            grads["beta"] = gbeta.reshape(self.params["beta"].shape)
        return gx, grads

    def get_config(self):
        return {
            **super().get_config(),
            "axis": self.axis,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            **self.weight_options_config(),
        }


class UnitNormalization(Layer):
    """Keras's: each vector along ``axis`` (an int or a list) scaled to unit L2 norm,
    y = x * r with r = 1 / sqrt(max(sum(x^2), 1e-24)) (Keras's epsilon 1e-12, squared). Where the
    sum exceeds 1e-24, gx = r * g - r^3 * x * sum(g * x); below it r is a constant."""

    _EPS2 = 1e-24

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        ints = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
        if not (ints(axis) or (isinstance(axis, (list, tuple)) and axis and all(ints(a) for a in axis))):  # fmt: skip
            raise TypeError(f'Layer "{self.name}" (UnitNormalization): axis must be an int or a list of ints. Received: axis={axis!r}')  # fmt: skip
        self.axis = list(axis) if isinstance(axis, (list, tuple)) else axis

    def _axes(self, rank: int) -> tuple:
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        if any(not -rank < a < rank or a % rank == 0 for a in axes):
            raise ValueError(f'Layer "{self.name}" (UnitNormalization): axis={self.axis!r} must name axes other than the batch\'s of an input of rank {rank}')  # fmt: skip
        return tuple(sorted(a % rank for a in axes))

    def compute_output_shape(self, input_shape):
        self._axes(len(input_shape))
        return tuple(input_shape)

    def forward(self, x, training=False):
        xp, axes = get_array_module(x), self._axes(x.ndim)
        s = (x * x).sum(axis=axes, keepdims=True)
        r = 1 / xp.sqrt(xp.maximum(s, x.dtype.type(self._EPS2)))
        return x * r, (x, r, s > self._EPS2)

    def backward(self, gy, ctx, need_gx=True):
        if not need_gx:
            return None, {}
        x, r, live = ctx
        axes = self._axes(x.ndim)
        return r * gy - (r**3 * live) * x * (gy * x).sum(axis=axes, keepdims=True), {}

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}
