"""The Optimizer every rule shares, in Keras 3's order for one step:

    learning rate (a number, or a schedule read at the step count before this step)
    -> clip the gradients (clipnorm per array, or global_clipnorm, or clipvalue: one of them)
    -> weight decay: w -= w * weight_decay * lr (decoupled, before the rule, as Keras)
    -> the rule's own update (``update``, written by each subclass)
    -> the weights' moving average, with use_ema: ema = m * ema + (1 - m) * w, m = 0 at step 0

A subclass writes only ``build_slots`` (its per-parameter state) and ``update`` (its rule). The
EMA is one more slot, "ema", so checkpoints carry it like the rule's own state; ``fit`` swaps
it into the model at the end (``finalize``), as Keras does.
"""

from __future__ import annotations

import numpy as np

from minicnn import maths
from minicnn.backend import get_array_module
from minicnn.optimizers import schedules


class Optimizer:
    name = "optimizer"

    def __init__(
        self,
        learning_rate=0.01,
        weight_decay=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency=None,
    ):
        owner = type(self).__name__
        if isinstance(learning_rate, dict):
            learning_rate = schedules.deserialize(learning_rate)
        if not isinstance(learning_rate, schedules.LearningRateSchedule) and not (
            isinstance(learning_rate, (int, float)) and learning_rate > 0
        ):
            raise ValueError(
                f"{owner}: learning_rate must be a positive number or a schedule. "
                f"Received: learning_rate={learning_rate!r}"
            )
        if sum(v is not None for v in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(
                f"{owner}: only one of clipnorm, clipvalue and global_clipnorm can be set. "
                f"Received: clipnorm={clipnorm}, clipvalue={clipvalue}, global_clipnorm={global_clipnorm}"
            )
        for what, v in (("clipnorm", clipnorm), ("clipvalue", clipvalue), ("global_clipnorm", global_clipnorm), ("weight_decay", weight_decay)):  # fmt: skip
            if v is not None and not (isinstance(v, (int, float)) and v >= 0):
                raise ValueError(f"{owner}: {what} must be a non-negative number. Received: {what}={v!r}")  # fmt: skip
        if use_ema and not 0 <= ema_momentum <= 1:
            raise ValueError(f"{owner}: ema_momentum must be in [0, 1]. Received: ema_momentum={ema_momentum!r}")  # fmt: skip
        self._learning_rate = learning_rate if not isinstance(learning_rate, (int, float)) else float(learning_rate)  # fmt: skip
        self.weight_decay = weight_decay
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        self.use_ema, self.ema_momentum = bool(use_ema), float(ema_momentum)
        self.ema_overwrite_frequency = ema_overwrite_frequency
        self.iterations = 0  # steps taken: Adam's bias correction and schedules count them
        self.slots: list[dict] | None = None

    # -- the learning rate ---------------------------------------------------------------------

    @property
    def learning_rate(self) -> float:
        """The rate the next step uses (a schedule's value at the current step count)."""
        lr = self._learning_rate
        return float(lr(self.iterations)) if callable(lr) else lr

    @learning_rate.setter
    def learning_rate(self, value) -> None:
        if callable(self._learning_rate):
            raise TypeError(
                f"{type(self).__name__}'s learning rate is a schedule "
                f"({self._learning_rate!r}); it cannot be set to a number"
            )
        self._learning_rate = float(value)

    # -- one step ------------------------------------------------------------------------------

    def build_slots(self, p) -> dict:
        return {}

    def _all_slots(self, p) -> dict:
        slots = self.build_slots(p)
        if self.use_ema:
            slots["ema"] = p.copy()
        return slots

    def apply(self, params: list, grads: list) -> None:
        if self.slots is None:
            self.slots = [self._all_slots(p) for p in params]
        if (
            params
            and self.slots[0]
            and get_array_module(params[0])
            is not get_array_module(next(iter(self.slots[0].values())))
        ):
            raise ValueError(
                f"This {type(self).__name__} holds state for arrays on another device; "
                "give each model its own optimizer"
            )
        if len(params) != len(self.slots):
            raise ValueError(
                f"{type(self).__name__} was built for {len(self.slots)} parameters. "
                f"Received: {len(params)}"
            )
        lr = self.learning_rate  # at the step count before this step, as Keras reads it
        first = self.iterations == 0
        grads = self.clip(grads)
        self.iterations += 1
        for p, g, slots in zip(params, grads, self.slots):
            if g is None:  # no loss reaches this weight: Keras leaves it, and its slots, alone
                continue
            if self.weight_decay:
                p -= p * p.dtype.type(self.weight_decay * lr)
            self.update(p, g, slots, lr)
        if self.use_ema:
            m = 0.0 if first else self.ema_momentum
            for p, slots in zip(params, self.slots):
                maths.ema_update(slots["ema"], p, m)
            every = self.ema_overwrite_frequency
            if every and self.iterations % every == 0:
                self.finalize(params)

    def clip(self, grads: list) -> list:
        """Clipped gradients (None stays None: a weight no loss reaches)."""
        if self.clipnorm:
            return [None if g is None else g * _clip_scale(_norm(g), self.clipnorm, g.dtype) for g in grads]  # fmt: skip
        if self.global_clipnorm:
            norm = float(np.sqrt(sum(float((g * g).sum()) for g in grads if g is not None)))
            return [None if g is None else g * _clip_scale(norm, self.global_clipnorm, g.dtype) for g in grads]  # fmt: skip
        if self.clipvalue:
            v = self.clipvalue
            return [None if g is None else get_array_module(g).clip(g, -v, v) for g in grads]
        return grads

    def update(self, p, g, slots: dict, lr: float) -> None:
        raise NotImplementedError

    def finalize(self, params: list) -> None:
        """With use_ema: the weights become their moving average (Keras's
        finalize_variable_values, which fit calls at the end)."""
        if self.use_ema and self.slots is not None:
            for p, slots in zip(params, self.slots):
                p[...] = slots["ema"]

    # -- state ---------------------------------------------------------------------------------

    def slot_names(self) -> tuple[str, ...]:
        """The keys of each parameter's slots (asked of a one-element stand-in), so a saved
        state can be checked against them."""
        return tuple(self._all_slots(np.zeros(1, dtype=np.float32)))

    def set_state(self, iterations: int, slots: list[dict]) -> None:
        """Take up a saved state: the step count and each parameter's slot arrays."""
        if not isinstance(iterations, int) or iterations < 0:
            raise ValueError(
                f"iterations must be a non-negative int. Received: iterations={iterations!r}"
            )
        self.iterations = iterations
        self.slots = slots

    def get_config(self) -> dict:
        lr = self._learning_rate
        config = {
            "name": self.name,
            "learning_rate": schedules.serialize(lr) if callable(lr) else lr,
        }
        for k in ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm"):
            if getattr(self, k) is not None:
                config[k] = getattr(self, k)
        if self.use_ema:
            config.update(use_ema=True, ema_momentum=self.ema_momentum)
            if self.ema_overwrite_frequency:
                config["ema_overwrite_frequency"] = self.ema_overwrite_frequency
        return config

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


def _norm(g) -> float:
    return float(get_array_module(g).sqrt((g * g).sum()))


def _clip_scale(norm: float, limit: float, dtype):
    """limit / norm where the norm is over the limit, else 1 (NaN for a non-finite norm)."""
    if not np.isfinite(norm):
        return dtype.type(np.nan)
    return dtype.type(1.0 if norm <= limit else limit / norm)
