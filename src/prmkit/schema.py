"""Stage configs read back from JSON, checked field by field before anything is built.

A model folder's ``config.json`` is data from wherever the folder came from. ``from_dict`` builds
a config dataclass only from known keys holding values of the declared types: ``"false"`` is not
a bool, ``2.5`` is not an int, ``true`` is not an int, and an unknown key is an error, never
ignored. Range checks stay in each dataclass's ``__post_init__``.

>>> from dataclasses import dataclass
>>> @dataclass
... class Head:
...     hidden_size: int = 8
...     causal: bool = True
>>> from_dict(Head, {"causal": "false"}, "head")
Traceback (most recent call last):
...
prmkit.errors.PrmkitError: head.causal: expected a bool, got str 'false'
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import MISSING, fields
from typing import Any, TypeVar

from prmkit.errors import PrmkitError

T = TypeVar("T")

_NAMES = {bool: "a bool", int: "an int", float: "a number", str: "a string", dict: "an object",
          list: "a list", type(None): "null"}


def from_dict(cls: type[T], data: Any, where: str) -> T:
    """``cls(**data)`` after checking keys and types; errors name ``where.key``."""
    if not isinstance(data, dict):
        raise PrmkitError(f"{where}: expected an object, got {_typename(data)}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise PrmkitError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(known)})")
    for f in fields(cls):
        if f.name not in data and f.default is MISSING and f.default_factory is MISSING:
            raise PrmkitError(f"{where}.{f.name}: missing")
    values = {}
    for key, value in data.items():
        ok, value = _check(value, hints[key])
        if not ok:
            raise PrmkitError(f"{where}.{key}: expected {_describe(hints[key])}, got "
                              f"{_typename(value)} {_short(value)}")
        values[key] = value
    try:
        return cls(**values)
    except (ValueError, TypeError) as e:
        raise PrmkitError(f"{where}: {e}") from None


def _check(value: Any, tp: Any) -> tuple[bool, Any]:
    """(whether ``value`` has type ``tp``, the value converted: JSON lists become tuples)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            ok, converted = _check(value, option)
            if ok:
                return True, converted
        return False, value
    if origin is tuple:
        item = typing.get_args(tp)[0]
        if isinstance(value, list) and all(_check(v, item)[0] for v in value):
            return True, tuple(value)
        return False, value
    if origin is not None:  # dict[str, X], list[X]: the container is checked
        return isinstance(value, origin), value
    if tp is type(None):
        return value is None, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and \
            math.isfinite(value)
        return ok, float(value) if ok else value
    return isinstance(value, tp), value


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(t) for t in typing.get_args(tp))
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(tp)[0]).split(' ', 1)[1]}s"
    return _NAMES.get(origin or tp, getattr(tp, "__name__", str(tp)))


def _typename(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
