"""What Keras's small configurable objects share (regularizers, constraints, initializers,
losses): ``get_config`` (the settings, none by default), ``from_config`` (the class made
with them) and a repr that shows them."""

from __future__ import annotations


class Configurable:
    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({settings})"
