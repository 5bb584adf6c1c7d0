"""The Metric contract, Keras 3's: state in variables made by ``add_variable``/``add_weight``,
``update_state(y_true, y_pred, sample_weight=None)`` each batch, ``result()`` when read,
``reset_state()`` at the start of each epoch and evaluation.

The state lives on the device the model runs on: fit and evaluate move a metric's variables
there (``Metric.to``) before resetting it, ``update_state`` receives that device's arrays
(NumPy or CuPy) and adds to its variables without reading them, and the loop reads ``result()``
once per epoch (and when the progress bar redraws). A subclass written as the Keras guides write
them works on those arrays; what it calls on them is its own (NumPy functions, or ``keras.ops``
once minicnn has it).

``Mean``, ``Sum`` and ``MeanMetricWrapper`` (a per-sample function averaged over samples, the
base of the accuracies and of the losses used as metrics) follow ``reduction_metrics.py``.
"""

from __future__ import annotations

import operator

import numpy as np

from minicnn import initializers
from minicnn.backend import floatx, get_array_module
from minicnn.losses.base import auto_name, snake_case


class Variable:
    """A metric's state: an array on the device, with Keras's Variable methods (``assign``,
    ``assign_add``, ``assign_sub``, ``value``, ``numpy()``, ``shape``, ``dtype``, ``name``) and
    arithmetic, so ``self.total.assign(self.total + x)`` reads as in Keras."""

    def __init__(self, value, name: str, aggregation: str = "sum"):
        self.value = value
        self.name, self.aggregation = name, aggregation
        self.trainable = False

    @property
    def shape(self) -> tuple:
        return tuple(self.value.shape)

    @property
    def dtype(self) -> str:
        return np.dtype(self.value.dtype).name

    def assign(self, value) -> Variable:
        self.value[...] = _on(self.value, value)
        return self

    def assign_add(self, value) -> Variable:
        self.value += _on(self.value, value)
        return self

    def assign_sub(self, value) -> Variable:
        self.value -= _on(self.value, value)
        return self

    def numpy(self) -> np.ndarray:
        v = self.value
        return np.array(v) if isinstance(v, np.ndarray) else v.get()

    def to(self, xp) -> None:
        """Move the state to ``xp``'s device (NumPy or CuPy), if it is not there."""
        if get_array_module(self.value) is not xp:
            self.value = xp.asarray(self.numpy())

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def __float__(self) -> float:
        return float(self.numpy())

    def __int__(self) -> int:
        return int(self.numpy())

    def __len__(self) -> int:
        return len(self.value)

    def __getitem__(self, key):
        return self.value[key]

    def __repr__(self) -> str:
        return f"<Variable name={self.name} shape={self.shape} dtype={self.dtype}>"


def _on(target, value):
    """``value`` as an array of ``target``'s module (a Variable gives its array)."""
    value = value.value if isinstance(value, Variable) else value
    xp = get_array_module(target)
    return value if get_array_module(value) is xp or np.isscalar(value) else xp.asarray(value)


def _binary(op, reflected=False):
    def method(self, other):
        other = other.value if isinstance(other, Variable) else other
        return op(other, self.value) if reflected else op(self.value, other)

    return method


for _name, _op in [("add", operator.add), ("sub", operator.sub), ("mul", operator.mul), ("truediv", operator.truediv), ("floordiv", operator.floordiv), ("pow", operator.pow), ("matmul", operator.matmul), ("mod", operator.mod)]:  # fmt: skip
    setattr(Variable, f"__{_name}__", _binary(_op))
    setattr(Variable, f"__r{_name}__", _binary(_op, reflected=True))
for _name, _op in [("lt", operator.lt), ("le", operator.le), ("gt", operator.gt), ("ge", operator.ge), ("eq", operator.eq), ("ne", operator.ne)]:  # fmt: skip
    setattr(Variable, f"__{_name}__", _binary(_op))
Variable.__neg__ = lambda self: -self.value
Variable.__abs__ = lambda self: abs(self.value)
Variable.__hash__ = object.__hash__


class Metric:
    """Keras's ``keras.metrics.Metric(dtype=None, name=None)``: subclasses make their state
    with ``add_variable`` in ``__init__`` and write ``update_state`` and ``result``."""

    def __init__(self, dtype=None, name=None):
        self.name = name or auto_name(snake_case(type(self).__name__))
        self._dtype = None if dtype is None else np.dtype(dtype).name
        self._variables: list[Variable] = []

    @property
    def dtype(self) -> str:
        return self._dtype or floatx()

    def add_variable(self, shape, initializer, dtype=None, aggregation="sum", name=None):
        """A state variable of ``shape``, on the host until fit or evaluate moves it."""
        if not hasattr(self, "_variables"):
            raise RuntimeError("You forgot to call `super().__init__()` in the `__init__()` method. Go add it!")  # fmt: skip
        if aggregation not in ("sum", "mean", "none", "only_first_replica"):
            raise ValueError(f"add_variable: aggregation must be one of 'sum', 'mean', 'none', 'only_first_replica'. Received: aggregation={aggregation!r}")  # fmt: skip
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape or ())
        dtype = np.dtype(dtype or self.dtype).name
        if isinstance(initializer, (int, float)) and not isinstance(initializer, bool):
            value = np.full(shape, initializer, dtype)
        else:
            init = initializers.get(initializer or "zeros", owner=f'metric "{self.name}"')
            value = np.asarray(init(shape, dtype), dtype=dtype).reshape(shape)
        v = Variable(value, name or f"variable_{len(self._variables)}", aggregation)
        self._variables.append(v)
        return v

    def add_weight(self, shape=(), initializer=None, dtype=None, name=None):
        return self.add_variable(shape, initializer, dtype=dtype, name=name)

    @property
    def variables(self) -> list[Variable]:
        """Its own state, then that of the metrics it holds as attributes."""
        out = list(getattr(self, "_variables", []))
        for value in vars(self).values():
            if isinstance(value, Metric) and value is not self:
                out += value.variables
        return out

    def to(self, xp) -> None:
        for v in self.variables:
            v.to(xp)

    def reset_state(self) -> None:
        for v in self.variables:
            v.assign(0)

    def update_state(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} defines no update_state()")

    def result(self):
        raise NotImplementedError(f"{type(self).__name__} defines no result()")

    def __call__(self, *args, **kwargs):
        self.update_state(*args, **kwargs)
        return self.result()

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name}>"


def squeeze_or_expand(x1, x2, expand_rank_1=True):
    """Keras's ``squeeze_or_expand_to_same_rank``: ranks one apart with a last axis of 1 meet."""
    r1, r2 = x1.ndim, x2.ndim
    if r1 == r2 + 1 and x1.shape[-1] == 1:
        if r2 == 1 and expand_rank_1:
            x2 = x2[..., None]
        else:
            x1 = x1[..., 0]
    if r2 == r1 + 1 and x2.shape[-1] == 1:
        if r1 == 1 and expand_rank_1:
            x1 = x1[..., None]
        else:
            x2 = x2[..., 0]
    return x1, x2


def samplewise(values, sample_weight, reduce_fn):
    """Keras's ``reduce_to_samplewise_values``: (values reduced to one per sample, weights)."""
    xp = get_array_module(values)
    if sample_weight is not None:
        values, sample_weight = squeeze_or_expand(values, sample_weight)
        wn, vn = sample_weight.ndim, values.ndim
        if vn > wn:
            values = reduce_fn(values, axis=tuple(range(wn, vn)))
        sample_weight = xp.broadcast_to(sample_weight, values.shape)
        values = values * sample_weight
        if wn > 1:
            sample_weight = reduce_fn(sample_weight, axis=tuple(range(1, wn)))
    if values.ndim > 1:
        values = reduce_fn(values, axis=tuple(range(1, values.ndim)))
    return values, sample_weight


def _mean(x, axis):
    return x.mean(axis=axis)


def _sum(x, axis):
    return x.sum(axis=axis)


def as_array(x, like=None, dtype=None):
    """``x`` as an array of the module of ``like`` (or its own), optionally cast."""
    xp = get_array_module(like if like is not None else x)
    a = x.value if isinstance(x, Variable) else x
    a = xp.asarray(a)
    return a if dtype is None or a.dtype == dtype else a.astype(dtype)


class Sum(Metric):
    """The (weighted) sum of the values given."""

    def __init__(self, name="sum", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable((), "zeros", name="total")

    def update_state(self, values, sample_weight=None):
        values = as_array(values, self.total.value, self.total.dtype)
        w = None if sample_weight is None else as_array(sample_weight, values, values.dtype)
        values, _ = samplewise(values, w, _sum)
        self.total.assign_add(values.sum())

    def result(self):
        return self.total.value


class Mean(Metric):
    """The (weighted) mean of the values given: total / count."""

    def __init__(self, name="mean", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable((), "zeros", name="total")
        self.count = self.add_variable((), "zeros", name="count")

    def update_state(self, values, sample_weight=None):
        values = as_array(values, self.total.value, self.total.dtype)
        w = None if sample_weight is None else as_array(sample_weight, values, values.dtype)
        values, w = samplewise(values, w, _mean)
        self.total.assign_add(values.sum())
        if w is not None:
            self.count.assign_add(w.sum())
        else:
            self.count.assign_add(values.shape[0] if values.ndim >= 1 else 1)

    def result(self):
        xp = get_array_module(self.total.value)
        count = self.count.value
        return xp.where(count == 0, 0, self.total.value / xp.where(count == 0, 1, count))


class MeanMetricWrapper(Mean):
    """A per-sample function ``fn(y_true, y_pred, **kwargs)`` averaged over the samples seen."""

    def __init__(self, fn, name=None, dtype=None, **kwargs):
        super().__init__(name=name or getattr(fn, "__name__", None) or "mean_metric_wrapper", dtype=dtype)  # fmt: skip
        self._fn, self._fn_kwargs = fn, kwargs

    def update_state(self, y_true, y_pred, sample_weight=None):
        values = self._fn(y_true, y_pred, **self._fn_kwargs)
        super().update_state(values, sample_weight=sample_weight)

    def get_config(self) -> dict:
        return {**super().get_config(), **self._fn_kwargs}
