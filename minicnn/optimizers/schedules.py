"""Learning-rate schedules, Keras 3's: each maps the optimizer's step count (0 for the first
update) to a learning rate. Pass one as ``learning_rate=``; its position is the optimizer's
``iterations``, so a checkpoint resumes it where it was."""

from __future__ import annotations

import math


class LearningRateSchedule:
    def __call__(self, step: int) -> float:
        raise NotImplementedError

    def get_config(self) -> dict:
        return dict(vars(self))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class ExponentialDecay(LearningRateSchedule):
    """initial_learning_rate * decay_rate ** (step / decay_steps), the exponent floored with
    ``staircase``."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name=None):
        if decay_steps <= 0:
            raise ValueError(f"ExponentialDecay: decay_steps must be positive. Received: decay_steps={decay_steps!r}")  # fmt: skip
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps, self.decay_rate = decay_steps, float(decay_rate)
        self.staircase = bool(staircase)

    def __call__(self, step):
        p = step / self.decay_steps
        return self.initial_learning_rate * self.decay_rate ** (math.floor(p) if self.staircase else p)  # fmt: skip


class PiecewiseConstantDecay(LearningRateSchedule):
    """values[0] up to and including step boundaries[0], values[1] up to boundaries[1], ...,
    values[-1] after the last boundary."""

    def __init__(self, boundaries, values, name=None):
        if len(values) != len(boundaries) + 1:
            raise ValueError(
                "PiecewiseConstantDecay: values must have one more entry than boundaries. "
                f"Received: {len(boundaries)} boundaries and {len(values)} values"
            )
        self.boundaries, self.values = list(boundaries), [float(v) for v in values]

    def __call__(self, step):
        for boundary, value in zip(self.boundaries, self.values):
            if step <= boundary:
                return value
        return self.values[-1]


class CosineDecay(LearningRateSchedule):
    """An optional linear warm-up from ``initial_learning_rate`` to ``warmup_target`` over
    ``warmup_steps``, then a half cosine from there down to ``alpha`` times it over
    ``decay_steps`` (then flat)."""

    def __init__(
        self,
        initial_learning_rate,
        decay_steps,
        alpha=0.0,
        name=None,
        warmup_target=None,
        warmup_steps=0,
    ):
        if decay_steps <= 0:
            raise ValueError(f"CosineDecay: decay_steps must be positive. Received: decay_steps={decay_steps!r}")  # fmt: skip
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps, self.alpha = decay_steps, float(alpha)
        self.warmup_target = None if warmup_target is None else float(warmup_target)
        self.warmup_steps = warmup_steps

    def __call__(self, step):
        start = self.initial_learning_rate
        if self.warmup_target is not None:
            step = min(step, self.decay_steps + self.warmup_steps)
            if step < self.warmup_steps:
                return start + (self.warmup_target - start) * step / self.warmup_steps
            start, step = self.warmup_target, step - self.warmup_steps
        else:
            step = min(step, self.decay_steps)
        cosine = 0.5 * (1 + math.cos(math.pi * step / self.decay_steps))
        return start * ((1 - self.alpha) * cosine + self.alpha)


_ALL = {c.__name__: c for c in (ExponentialDecay, PiecewiseConstantDecay, CosineDecay)}


def serialize(schedule: LearningRateSchedule) -> dict:
    return {"class_name": type(schedule).__name__, "config": schedule.get_config()}


def deserialize(config: dict) -> LearningRateSchedule:
    name = config.get("class_name")
    if name not in _ALL:
        raise ValueError(f"Unknown learning-rate schedule {name!r}: expected one of {sorted(_ALL)}")
    return _ALL[name](**config["config"])
