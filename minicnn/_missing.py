"""What a module answers for a Keras name minicnn does not have: an AttributeError that names
it and says what there is, instead of a bare one from deep inside."""

from __future__ import annotations


def not_implemented(module: str, available: str):
    """A module ``__getattr__`` (PEP 562) for ``module``, listing ``available``."""

    def __getattr__(name: str):  # noqa: N807  (the name Python looks for)
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(f"{module} has no {name}: it is not implemented in minicnn. {available}")  # fmt: skip

    return __getattr__
