"""Custom objects by name, as Keras's ``keras.saving`` keeps them: a class registered with
``register_keras_serializable(package, name)`` (under "package>name"), or named for one load by
``custom_objects=`` or a ``custom_object_scope``.

A config can name only what is found here or among minicnn's built-ins: nothing named by a file
is ever imported or executed.
"""

from __future__ import annotations

import contextlib
import threading

_REGISTERED: dict[str, type] = {}  # "package>name" -> class
_NAMES: dict[type, str] = {}  # class -> "package>name"
_scopes = threading.local()


def register_keras_serializable(package: str = "Custom", name: str | None = None):
    """Keras's decorator: register a class (a Layer subclass with ``get_config``) so that files
    naming it as "package>name" load it."""
    if not isinstance(package, str) or ">" in package:
        raise ValueError(f"package must be a string without '>'. Received: package={package!r}")

    def decorator(cls):
        key = f"{package}>{name or cls.__name__}"
        if not hasattr(cls, "get_config"):
            raise ValueError(f"Cannot register a class that does not have a get_config() method. Received: {cls!r}")  # fmt: skip
        if key in _REGISTERED and _REGISTERED[key] is not cls:
            raise ValueError(f"{key} has already been registered to {_REGISTERED[key]}")
        _REGISTERED[key] = cls
        _NAMES[cls] = key
        return cls

    return decorator


def get_registered_name(cls) -> str:
    """ "package>name" for a registered class, else its class name (as Keras)."""
    return _NAMES.get(cls, cls.__name__)


def get_registered_object(name: str, custom_objects: dict | None = None):
    """The class a file names (by its registered name or its class name): from
    ``custom_objects``, the innermost scopes, then the registry; None if none has it."""
    for objects in [custom_objects or {}, *reversed(_stack())]:
        if name in objects:
            return objects[name]
    return _REGISTERED.get(name)


def get_custom_objects() -> dict:
    """The registry itself (Keras's ``get_custom_objects``): "package>name" -> class."""
    return _REGISTERED


def _stack() -> list:
    if not hasattr(_scopes, "stack"):
        _scopes.stack = []
    return _scopes.stack


@contextlib.contextmanager
def custom_object_scope(*objects: dict):
    """``with custom_object_scope({"MyLayer": MyLayer}): load_model(...)``: the names known
    inside the block, gone after it."""
    merged = {}
    for o in objects:
        if not isinstance(o, dict):
            raise TypeError(f"custom_object_scope takes dicts of name -> class. Received: {o!r}")
        merged.update(o)
    _stack().append(merged)
    try:
        yield merged
    finally:
        _stack().pop()


CustomObjectScope = custom_object_scope
