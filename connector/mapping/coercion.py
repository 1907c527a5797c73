"""Value rules of a mapping: the coercions of `metadata.<key>.type` and the wording of
values in error details.

Called by `routes` (a coercer per typed metadata field; `scalar_text` for customer ids
and event names). Pure; a coercer raises ValueError with a one-line reason, which the
route turns into a `coercion_failed` MappingError.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from connector.mapping_schema import MetadataField

_NUMBERS = (int, float)  # a tuple: `int | float` would build a union object per call


def kind(value: Any) -> str:
    """What a value is, for error details ("a string", "an object", "null"...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    return "a number"


def short(value: Any, limit: int = 60) -> str:
    """A value's repr, cut to `limit` characters, for error details."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def scalar_text(value: Any) -> str | None:
    """Strings as they are, numbers as their JSON text; None for anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return str(int(value)) if value.is_integer() and abs(value) < 2**63 else repr(value)
    return None


def _coerce_string(x: Any) -> Any:
    if isinstance(x, str):
        return x
    if isinstance(x, bool):
        return "true" if x else "false"
    text = scalar_text(x)
    if text is not None:
        return text
    return orjson.dumps(x).decode()


def _int_range(n: int) -> int:
    # JSON encoders (orjson, and Gameball's side) carry 64-bit integers at most.
    if -(2**63) <= n < 2**64:
        return n
    raise ValueError(f"{short(n)} is out of the 64-bit integer range")


_NUMBER_TEXT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", re.ASCII)


def _coerce_number(x: Any) -> Any:
    if isinstance(x, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(x, int):
        return _int_range(x)
    if isinstance(x, float):
        if not math.isfinite(x):
            raise ValueError(f"{x!r} is not a finite number")
        return x
    if isinstance(x, str):
        text = x.strip()
        # JSON-style numbers only: no "nan", "inf", "1_000" or non-ASCII digits.
        if not _NUMBER_TEXT.fullmatch(text):
            raise ValueError(f"{short(x)} is not a number")
        if text.lstrip("+-").isdigit():
            return _int_range(int(text))
        f = float(text)
        if not math.isfinite(f):
            raise ValueError(f"{short(x)} is not a finite number")
        return f
    raise ValueError(f"{kind(x)} is not a number")


def _coerce_integer(x: Any) -> Any:
    n = _coerce_number(x)
    if isinstance(n, float):
        if not n.is_integer():
            raise ValueError(f"{short(x)} is not a whole number")
        return _int_range(int(n))
    return n


_TRUE = frozenset({"true", "yes", "y", "1", "on"})
_FALSE = frozenset({"false", "no", "n", "0", "off", ""})


def _coerce_boolean(x: Any) -> Any:
    if isinstance(x, bool):
        return x
    if isinstance(x, _NUMBERS) and x in (0, 1):
        return bool(x)
    if isinstance(x, str):
        word = x.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise ValueError(f"{short(x)} is not a boolean")


_UNIT_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def _epoch_seconds(number: float, unit: str) -> float:
    if unit == "auto":
        # 1e11 s is the year 5138 and 1e11 ms is 1973: numbers above it are not seconds.
        size = abs(number)
        unit = "s" if size < 1e11 else "ms" if size < 1e14 else "us"
    return number * _UNIT_SECONDS[unit]


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _coerce_timestamp(unit: str) -> Callable[[Any], Any]:
    def coerce(x: Any) -> Any:
        try:
            if isinstance(x, bool):
                raise ValueError
            if isinstance(x, _NUMBERS):
                return _iso(datetime.fromtimestamp(_epoch_seconds(x, unit), UTC))
            if isinstance(x, str):
                text = x.strip()
                if _NUMBER_TEXT.fullmatch(text):
                    return _iso(datetime.fromtimestamp(_epoch_seconds(float(text), unit), UTC))
                dt = datetime.fromisoformat(text)
                return _iso(dt if dt.tzinfo else dt.replace(tzinfo=UTC))
        except (ValueError, OverflowError, OSError):
            pass
        raise ValueError(f"{short(x)} is not a timestamp (epoch number or ISO-8601 text)")

    return coerce


def coercer(field: MetadataField) -> Callable[[Any], Any] | None:
    """The coercion of a typed metadata field; None when it has no `type`."""
    if field.type is None:
        return None
    if field.type == "timestamp":
        return _coerce_timestamp(field.unit)
    return {
        "string": _coerce_string,
        "number": _coerce_number,
        "integer": _coerce_integer,
        "boolean": _coerce_boolean,
    }[field.type]
