"""The record's envelope (`@key`, `@headers`, `@topic`, `@partition`, `@offset`,
`@timestamp`) as values, and as getters for paths that start with it.

Called by the expression compilers (`paths`, `closures`, `expressions`). Pure; a key
that cannot be decoded raises `DecodeError` (the record's fault, caught per route).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from jmespath.functions import Functions, signature

from connector.decode import Decoder
from connector.records import DecodeError, RecordLike

# Compiled expression: (decoded value, record) -> result; None when absent, as in JMESPath.
Getter = Callable[[Any, RecordLike], Any]

LOOKUP_ERRORS = (KeyError, TypeError, IndexError)


def walk(v: Any, keys: Sequence[str]) -> Any:
    """`v[k1][k2]...`, None when any step is absent, as JMESPath has it."""
    try:
        for k in keys:
            v = v[k]
    except LOOKUP_ERRORS:
        return None
    # A list/str indexed by a name raises TypeError above; a dict miss is None, as in JMESPath.
    return v


def _header_text(raw: bytes | str | None) -> str | None:
    # Header values are bytes; unrelated binary headers must not fail a record.
    if raw is None or isinstance(raw, str):
        return raw
    return raw.decode("utf-8", "replace")


def header(record: RecordLike, name: str) -> str | None:
    """The last header of that name, as text (None when absent)."""
    headers = record.headers()
    if headers:
        for key, raw in reversed(headers):  # the last header of a name wins
            if key == name:
                return _header_text(raw)
    return None


def _all_headers(record: RecordLike) -> dict[str, str | None]:
    return {key: _header_text(raw) for key, raw in record.headers() or ()}


def key(record: RecordLike, decode: Decoder) -> Any:
    """The decoded record key; DecodeError("invalid_key") when it does not decode."""
    raw = record.key()
    if raw is None:
        return None
    try:
        return decode(raw)
    except DecodeError as err:
        raise DecodeError("invalid_key", f"record key: {err.detail}") from None


def timestamp(record: RecordLike) -> int | None:
    kind, ms = record.timestamp()
    return ms if kind != 0 else None  # 0 = TIMESTAMP_NOT_AVAILABLE


def envelope_value(record: RecordLike, name: str, key_decoder: Decoder) -> Any:
    """The value of `@name` for one record (see ENVELOPE_FIELDS)."""
    if name == "key":
        return key(record, key_decoder)
    if name == "headers":
        return _all_headers(record)
    if name == "timestamp":
        return timestamp(record)
    if name == "topic":
        return record.topic()
    if name == "partition":
        return record.partition()
    if name == "offset":
        return record.offset()
    raise ValueError(f"unknown envelope field {name!r}")  # parse_expression rules it out


class EnvelopeFunctions(Functions):
    """Gives interpreted JMESPath the envelope; `record` is set before each search."""

    def __init__(self, key_decoder: Decoder) -> None:
        super().__init__()
        self.key_decoder = key_decoder
        self.record: RecordLike | None = None

    @signature({"types": ["string"]})
    def _func__gb_envelope(self, name: str) -> Any:
        assert self.record is not None
        return envelope_value(self.record, name, self.key_decoder)


def envelope_path(root: str, keys: list[str], key_decoder: Decoder) -> Getter:
    """A getter for `@root.k1.k2...`, direct for the common envelope reads."""
    if root == "headers" and keys:
        name, rest = keys[0], keys[1:]
        if not rest:
            return lambda v, r: header(r, name)
        return lambda v, r: walk(header(r, name), rest)
    if root == "key":
        if not keys:
            return lambda v, r: key(r, key_decoder)
        return lambda v, r: walk(key(r, key_decoder), keys)
    if root == "topic" and not keys:
        return lambda v, r: r.topic()
    if root == "partition" and not keys:
        return lambda v, r: r.partition()
    if root == "offset" and not keys:
        return lambda v, r: r.offset()
    if root == "timestamp" and not keys:
        return lambda v, r: timestamp(r)
    return lambda v, r: walk(envelope_value(r, root, key_decoder), keys)
