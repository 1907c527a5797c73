"""Bytes of a Kafka value or key -> the value expressions see (`value_format`/`key_format`).

Called by `connector.mapping` once per record and format; a decoder raises `DecodeError`
(reason `invalid_json`, `invalid_utf8`) and nothing else. Decoders are plain callables
looked up by format name, so a later stateful one (avro with a schema registry, which does
I/O and so lives outside this pure module) is passed to the `Mapper` in `decoders=`.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from connector.records import DecodeError

Decoder = Callable[[bytes | str], Any]


def decode_json(data: bytes | str) -> Any:
    """JSON text -> Python value (orjson: objects, arrays, str, int, float, bool, None)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("invalid_json", f"value is not JSON: {exc}") from None


def decode_string(data: bytes | str) -> Any:
    """UTF-8 text -> str (expressions then see a string; `@` is the whole text)."""
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError("invalid_utf8", f"value is not UTF-8 text: {exc}") from None


def decode_base64(data: bytes | str) -> Any:
    """Any bytes -> their base64 text, so binary values can be carried in metadata."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


DECODERS: Mapping[str, Decoder] = {
    "json": decode_json,
    "string": decode_string,
    "bytes-base64": decode_base64,
}


def decoder_for(fmt: str, extra: Mapping[str, Decoder] | None = None) -> Decoder:
    """The decoder for a format name; KeyError if none is known (a config error upstream)."""
    if extra and fmt in extra:
        return extra[fmt]
    return DECODERS[fmt]
