"""The building blocks of config validation: typed specs and one checker.

Kept apart from ``fxnb.config`` so that feature modules (guards, alerts) can
declare their own config sections without importing the loader.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from fxnb.errors import ConfigError


@dataclass(frozen=True)
class Num:
    """A number in ``[lo, hi]``; ``integer`` refuses fractions."""

    lo: float = -math.inf
    hi: float = math.inf
    integer: bool = False
    lo_open: bool = False


@dataclass(frozen=True)
class Choice:
    options: tuple[str, ...]


@dataclass(frozen=True)
class Str:
    nullable: bool = False
    max_len: int = 256


@dataclass(frozen=True)
class Bool:
    pass


@dataclass(frozen=True)
class StrList:
    pass


@dataclass(frozen=True)
class Free:
    """A value validated by its owner (e.g. the simulator's position list)."""


Spec = Num | Choice | Str | Bool | StrList | Free | dict


def type_name(value: Any) -> str:
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)


def check_value(key: str, spec: Spec, value: Any) -> Any:
    """Validate one value; return it normalised or raise ConfigError naming ``key``."""
    if isinstance(spec, Free):
        return value
    if isinstance(spec, Bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {type_name(value)} {value!r}")
        return value
    if isinstance(spec, Num):
        return _check_num(key, spec, value)
    if isinstance(spec, Choice):
        if value not in spec.options:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(spec.options)}")
        return value
    if isinstance(spec, Str):
        if value is None and spec.nullable:
            return None
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{key}: expected a non-empty string, got {type_name(value)} {value!r}")
        if len(value) > spec.max_len:
            raise ConfigError(f"{key}: longer than {spec.max_len} characters")
        return value
    raise AssertionError(spec)  # pragma: no cover


def _check_num(key: str, spec: Num, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key}: expected a number, got {type_name(value)} {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{key}: expected a finite number, got {value!r}")
    if spec.integer and value != int(value):
        raise ConfigError(f"{key}: expected a whole number, got {value!r}")
    too_low = value <= spec.lo if spec.lo_open else value < spec.lo
    if too_low or value > spec.hi:
        lo = f"> {spec.lo:g}" if spec.lo_open else f">= {spec.lo:g}"
        raise ConfigError(f"{key}: {value!r} is out of range (must be {lo} and <= {spec.hi:g})")
    return int(value) if spec.integer else value
