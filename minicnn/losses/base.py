"""The Loss contract, and Keras 3's reductions of per-sample values to the one number trained on.

A loss is Keras's ``call(y_true, y_pred)``: one value per sample (per position, for outputs with
more axes), the last axis reduced. minicnn's built-in losses define it as a pair written by hand,

    forward(y_true, y_pred, logits) -> (values, ctx)      backward(ctx) -> g = d sum(values) / d y_pred

and the engine runs ``forward_backward(out, t, logits, sample_weight)``: forward, backward, then
the reduction (``reduce``), whose coefficients scale the gradient. ``logits`` is the activation
(``"softmax"``, ``"sigmoid"``) the plan left to this loss when the model ends in the one the loss
names in ``logits_of``; ``out`` is then that activation's input.

Keras's reductions (``keras/src/losses/loss.py``), with ``w`` the sample weights:

- ``"sum_over_batch_size"`` (default) and ``"mean"``: sum(w * values) / values.size, the batch
  size for one value per sample, whatever the weights sum to;
- ``"mean_with_sample_weight"``: sum(w * values) / sum(w) (0 where the weights sum to 0);
- ``"sum"``: sum(w * values);
- ``None``/``"none"``: the values themselves, for direct use only: Keras's torch and JAX trainers
  stop at the first step of such a loss (the gradient of a vector), so ``compile`` refuses it.

A ``Loss`` subclass that overrides ``call()`` is a user's loss, written with ``keras.ops``, and so
is a plain function ``fn(y_true, y_pred)`` (``LossFunctionWrapper``). On arrays ``call`` computes
at once; in training the engine traces it into keras.ops nodes and runs their hand-written
backward passes (``minicnn.ops.traced_loss``).
"""

from __future__ import annotations

import numpy as np

from minicnn.backend import floatx, get_array_module
from minicnn.configurable import Configurable

EPSILON = 1e-7  # Keras's backend.epsilon(), the clip of probabilities
REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", None, "none")
_MEANS = ("sum_over_batch_size", "mean", "mean_with_sample_weight")
_counters: dict[str, int] = {}


def auto_name(name: str) -> str:
    """Keras's default object names: ``name``, then ``name_1``, ``name_2``, ... per process."""
    k = _counters.get(name, 0)
    _counters[name] = k + 1
    return name if k == 0 else f"{name}_{k}"


def snake_case(name: str) -> str:
    """Keras's ``to_snake_case``: ``CategoricalTruePositives`` -> ``categorical_true_positives``."""
    import re

    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


class Loss(Configurable):
    """Keras's ``keras.losses.Loss(name=None, reduction="sum_over_batch_size", dtype=None)``.

    ``logits_of``: the activation whose input this loss may take instead of its output (a
    softmax for the categorical cross-entropies, a sigmoid for the binary ones), or None.
    ``sparse``: the targets are class indices, not values of the output's shape."""

    logits_of: str | None = None
    sparse = False

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        if reduction not in REDUCTIONS:
            raise ValueError(
                "Invalid value for argument `reduction`. Expected one of "
                f"{set(REDUCTIONS)}. Received: reduction={reduction!r}"
            )
        if dtype is not None and np.dtype(dtype) not in (np.float32, np.float64):
            raise ValueError(f"{type(self).__name__}: dtype must be float32 or float64. Received: dtype={dtype!r}")  # fmt: skip
        self.name = name or auto_name(snake_case(type(self).__name__))
        self.reduction = reduction
        self._dtype = None if dtype is None else np.dtype(dtype).name

    @property
    def dtype(self) -> str:
        """The float type the loss computes in: the one given, else floatx (the model's)."""
        return self._dtype or floatx()

    # -- the definition ----------------------------------------------------------------------

    def call(self, y_true, y_pred):
        """Keras's definition of a loss: its per-sample values (the last axis reduced)."""
        return self.forward(y_true, y_pred, None)[0]

    def forward(self, y_true, y_pred, logits):
        """(per-sample values, what ``backward`` needs); ``logits``: see the module docstring."""
        raise NotImplementedError(f"{type(self).__name__} defines no forward()")

    def backward(self, ctx):
        """The gradient of sum(values) with respect to y_pred (or its logits)."""
        raise NotImplementedError(f"{type(self).__name__} defines no backward()")

    @property
    def defines_call(self) -> bool:
        """A subclass that writes its own ``call()`` (Keras's way of defining a loss)."""
        return type(self).call is not Loss.call

    def align_ranks(self, y_true, y_pred):
        """The arrays ``call`` gets: as they are (Keras's Loss.__call__ leaves them)."""
        return y_true, y_pred

    def check_trainable(self) -> None:
        """Raise, naming the loss, if the engine cannot train on it (compile asks first)."""
        if self.reduction in (None, "none"):
            raise ValueError(
                f"{type(self).__name__}(reduction={self.reduction!r}) leaves one value per sample, "
                "and training needs one number: Keras 3's torch and JAX trainers fail at the first "
                'step of such a loss. Use reduction="sum_over_batch_size" (the default), "sum", '
                '"mean" or "mean_with_sample_weight"'
            )

    # -- what the engine runs ----------------------------------------------------------------

    def forward_backward(self, out, t, logits=None, sample_weight=None):
        """(the reduced loss as a 0-d array, its gradient with respect to ``out``), for a batch
        of outputs ``out``, targets ``t`` and optional sample weights."""
        dtype = out.dtype  # the model's float type, unless the loss was given its own
        x = out if self._dtype in (None, dtype) else out.astype(self._dtype)
        fast = None
        if sample_weight is None and self.reduction in _MEANS:
            fast = self.mean_forward_backward(t, x, logits)
        if fast is not None:
            loss, g = fast
        else:
            values, ctx = self.forward(t, x, logits)
            g = self.backward(ctx)
            loss, coef = reduce(values, sample_weight, self.reduction)
            if np.ndim(coef):
                coef = coef.reshape(coef.shape + (1,) * (g.ndim - coef.ndim))
            g = g * coef
        return loss, g.astype(dtype, copy=False)

    def mean_forward_backward(self, y_true, y_pred, logits):
        """Optional fast path of the unweighted mean: (loss, gradient), or None."""
        return None

    # -- targets -------------------------------------------------------------------------------

    def check_target(self, y: np.ndarray, shape: tuple) -> None:
        """Raise a ValueError if ``y`` (host array) cannot be the targets of an output of
        ``shape`` (batch axis first): here, the output's own shape (Keras squeezes or adds a
        last axis of 1)."""
        want = (y.shape[0], *shape[1:])
        if self.defines_call:  # the user's call reads the targets: any shape of this batch
            check_numbers(y, self.name)
            return
        if not aligned_shape(y.shape, want):
            raise ValueError(
                f"{self.name} expects targets of the output's shape {batch_shape(shape)}. "
                f"Received: y shape {tuple(y.shape)}"
            )
        check_numbers(y, self.name)

    def target(self, y, units, xp, dtype):
        """The targets on ``xp`` as the loss and metrics see them: floats as ``dtype``
        (Keras casts them to floatx), integers as they are."""
        y = xp.asarray(y)
        return y.astype(dtype) if y.dtype.kind == "f" and y.dtype != dtype else y

    # -- direct use ----------------------------------------------------------------------------

    def __call__(self, y_true, y_pred, sample_weight=None):
        """Keras's direct use: the reduced loss of arrays (a 0-d array; the values for
        reduction=None)."""
        xp = get_array_module(y_pred)
        y_pred = xp.asarray(y_pred, dtype=self.dtype)
        y_true = xp.asarray(y_true).astype(self.dtype)  # Keras casts both to the loss's dtype
        values = self.call(y_true, y_pred)
        if sample_weight is not None:
            sample_weight = xp.asarray(sample_weight, dtype=self.dtype)
        return reduce(values, sample_weight, self.reduction)[0]

    def get_config(self) -> dict:
        return {"name": self.name, "reduction": self.reduction}


class LossFunctionWrapper(Loss):
    """Keras's ``keras.losses.LossFunctionWrapper(fn, reduction, name, dtype, **kwargs)``: a
    function ``fn(y_true, y_pred, **kwargs)`` of per-sample values, written with keras.ops, as a
    Loss; what compile makes of ``loss=fn``. Ranks one apart with a last axis of 1 meet first
    (Keras's squeeze_or_expand_to_same_rank)."""

    def __init__(self, fn, reduction="sum_over_batch_size", name=None, dtype=None, **kwargs):
        if not callable(fn):
            raise TypeError(f"LossFunctionWrapper: fn must be a function fn(y_true, y_pred). Received: fn={fn!r}")  # fmt: skip
        super().__init__(name=name or getattr(fn, "__name__", None), reduction=reduction, dtype=dtype)  # fmt: skip
        self.fn, self._fn_kwargs = fn, kwargs

    def align_ranks(self, y_true, y_pred):
        r1, r2 = len(y_true.shape), len(y_pred.shape)
        if r1 == r2 + 1 and y_true.shape[-1] == 1:
            if r2 == 1:
                y_pred = y_pred[..., None]
            else:
                y_true = y_true[..., 0]
        if r2 == r1 + 1 and y_pred.shape[-1] == 1:
            if r1 == 1:
                y_true = y_true[..., None]
            else:
                y_pred = y_pred[..., 0]
        return y_true, y_pred

    def call(self, y_true, y_pred):
        return self.fn(*self.align_ranks(y_true, y_pred), **self._fn_kwargs)

    def get_config(self) -> dict:
        return {**super().get_config(), "fn": getattr(self.fn, "__name__", repr(self.fn)), **self._fn_kwargs}  # fmt: skip

    def __repr__(self) -> str:
        return f"<LossFunctionWrapper({self.fn}, kwargs={self._fn_kwargs})>"


def reduce(values, sample_weight, reduction):
    """Keras's ``reduce_weighted_values``: (the loss, the coefficient each value got), the
    coefficient a number or an array of the values' shape; for reduction None, (values, 1)."""
    xp = get_array_module(values)
    w = None
    if sample_weight is not None:
        w = sample_weight.reshape(weight_shape(sample_weight.shape, values.shape))
        w = w.astype(values.dtype, copy=False)
    if reduction in (None, "none") or values.ndim == 0:
        return (values if w is None else values * w), 1
    total = (values if w is None else values * w).sum()
    one = values.dtype.type(1)
    if reduction == "sum":
        return total, (one if w is None else xp.broadcast_to(w, values.shape))
    if reduction == "mean_with_sample_weight" and w is not None:
        d = xp.broadcast_to(w, values.shape).sum()
        d = xp.where(d == 0, one, d)  # Keras's divide_no_nan: all-zero weights give 0
        return total / d, xp.broadcast_to(w, values.shape) / d
    n = values.dtype.type(max(values.size, 1))
    return total / n, (one / n if w is None else xp.broadcast_to(w, values.shape) / n)


def weight_shape(w_shape: tuple, v_shape: tuple) -> tuple:
    """The shape sample weights of ``w_shape`` take against values of ``v_shape``, as Keras's
    ``squeeze_or_expand_to_same_rank`` aligns them (a last axis of 1 squeezed or added); a
    ValueError unless they then broadcast to the values, sample by sample."""
    w_shape, v_shape = tuple(w_shape), tuple(v_shape)
    if len(w_shape) == len(v_shape) + 1 and w_shape[-1] == 1:
        w_shape = w_shape[:-1]
    elif len(v_shape) == len(w_shape) + 1 and v_shape[-1] == 1:
        w_shape = (*w_shape, 1)
    ok = len(w_shape) == len(v_shape) and w_shape[:1] == v_shape[:1]
    ok = ok and all(a in (1, b) for a, b in zip(w_shape, v_shape))
    if not ok:
        raise ValueError(
            f"sample_weight of shape {w_shape} cannot weight loss values of shape {v_shape}: "
            f"Keras multiplies them after squeezing or adding a last axis of 1, so give one "
            f"weight per value, shape {v_shape} (per sample: {(v_shape[0],) + (1,) * (len(v_shape) - 1)})"
        )
    return w_shape


def batch_shape(shape) -> str:
    """An output's shape with its batch axis as N: "(N, 28, 28, 1)"."""
    return "(N,)" if len(shape) == 1 else "(" + ", ".join(["N", *map(str, shape[1:])]) + ")"


def aligned_shape(y_shape: tuple, want: tuple) -> bool:
    """Whether targets of ``y_shape`` meet an output of shape ``want`` once Keras squeezes or
    adds a last axis of 1."""
    y_shape, want = tuple(y_shape), tuple(want)
    return y_shape == want or y_shape + (1,) == want or y_shape == want + (1,)


def align(y_true, y_pred):
    """y_true cast to y_pred's dtype, a last axis of 1 squeezed or added to meet y_pred's rank
    (Keras's squeeze_or_expand_to_same_rank); other shapes broadcast as they do in Keras."""
    t = y_true.astype(y_pred.dtype, copy=False)
    if t.ndim == y_pred.ndim - 1 and y_pred.shape[-1] == 1:
        return t[..., None]
    if t.ndim == y_pred.ndim + 1 and t.shape[-1] == 1:
        return t[..., 0]
    return t


def check_numbers(y: np.ndarray, name: str) -> None:
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        raise ValueError(f"{name}: targets must be numbers. Received: dtype {y.dtype}")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError(f"{name}: targets contain NaN or inf")


def softplus(x):
    """log(1 + exp(x)) without overflow."""
    xp = get_array_module(x)
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


def sigmoid(x):
    """1 / (1 + exp(-x)) in its tanh form, which never overflows (as minicnn's activation)."""
    xp = get_array_module(x)
    return x.dtype.type(0.5) * (xp.tanh(x.dtype.type(0.5) * x) + 1)
