"""Values decoded from Avro or Protobuf -> the JSON values expressions and Gameball see.

Called by `connector.registry`'s decoders after confluent-kafka's deserializers (pure: no
I/O). The conversions (docs/mapping.md, "Values from Avro, Protobuf and JSON Schema"):
timestamps -> ISO-8601 UTC strings, dates -> `YYYY-MM-DD`, decimals -> JSON numbers
(exact integers when integral and within 64 bits, else the nearest float64: exact up to 15
significant digits), bytes -> base64, enums -> their symbol names, 64-bit integers ->
numbers, maps and repeated fields -> objects and arrays.
"""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID

_INT64_MIN, _UINT64_MAX = -(1 << 63), (1 << 64) - 1  # what orjson (and JSON readers) carry


def iso_timestamp(dt: datetime) -> str:
    """An aware datetime -> `2024-01-02T03:04:05.678Z` (microseconds only when present);
    a naive one (Avro `local-timestamp-*`) keeps its wall time, without a zone."""
    spec = "milliseconds" if dt.microsecond % 1000 == 0 else "microseconds"
    if dt.tzinfo is None:
        return dt.isoformat(timespec=spec)
    return dt.astimezone(UTC).isoformat(timespec=spec).replace("+00:00", "Z")


def decimal_number(value: Decimal) -> int | float:
    """A decimal as a JSON number: an exact int when integral and within 64 bits, else
    the nearest float64 (exact up to 15 significant digits; docs/mapping.md)."""
    if value == value.to_integral_value():
        as_int = int(value)
        if _INT64_MIN <= as_int <= _UINT64_MAX:
            return as_int
    return float(value)


def plain(value: Any) -> Any:
    """fastavro's (or any decoded) Python value -> JSON data, recursively."""
    cls = value.__class__
    if cls is str or cls is int or cls is float or cls is bool or value is None:
        return value
    if cls is dict:
        return {str(k): plain(v) for k, v in value.items()}
    if cls is list or cls is tuple:
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return iso_timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return decimal_number(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, int):  # bool handled above; IntEnum and the like
        return int(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return str(value)


# --- Protobuf -----------------------------------------------------------------------------
# Field type numbers of google.protobuf.descriptor.FieldDescriptor (stable wire constants).
_TYPE_MESSAGE, _TYPE_BYTES, _TYPE_ENUM = 11, 12, 14
_STRUCTS = ("google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue")
_WRAPPERS = {
    f"google.protobuf.{n}Value"
    for n in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
}


def message_to_plain(msg: Any) -> dict[str, Any]:
    """A Protobuf message (any generated or dynamic class) -> a dict by proto field name.

    Fields without presence carry their default when unset (proto3 reads them so); message
    fields, `optional` and oneof members appear only when set. Well-known types:
    Timestamp -> ISO-8601 UTC, Duration -> seconds (a number), wrappers -> their value,
    Struct/Value/ListValue -> their JSON.
    """
    desc = msg.DESCRIPTOR
    plan = _PLANS.get(desc)
    if plan is None:
        plan = _PLANS[desc] = _plan(desc)
    out: dict[str, Any] = {}
    for name, mode, convert in plan:
        value = getattr(msg, name)
        if mode == _SCALAR:
            out[name] = value if convert is None else convert(value)
        elif mode == _PRESENCE:
            if msg.HasField(name):
                out[name] = value if convert is None else convert(value)
        elif mode == _REPEATED:
            out[name] = list(value) if convert is None else [convert(v) for v in value]
        else:  # map
            if convert is None:
                out[name] = {str(k): v for k, v in value.items()}
            else:
                out[name] = {str(k): convert(v) for k, v in value.items()}
    return out


_SPECIAL_MESSAGES = {"google.protobuf.Timestamp", "google.protobuf.Duration", *_WRAPPERS, *_STRUCTS}
# How each field is read, worked out once per message type (the per-record walk then
# does no descriptor lookups): (name, mode, converter or None for values as they are).
_SCALAR, _PRESENCE, _REPEATED, _MAP = range(4)
_PLANS: dict[Any, list[tuple[str, int, Any]]] = {}


def _converter(field: Any) -> Any:
    if field.type == _TYPE_ENUM:
        names = {v.number: v.name for v in field.enum_type.values}
        return lambda number: names.get(number, number)
    if field.type == _TYPE_BYTES:
        return _base64
    if field.type == _TYPE_MESSAGE:
        if field.message_type.full_name in _SPECIAL_MESSAGES:
            return _message_value
        return message_to_plain
    return None


def _base64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _plan(desc: Any) -> list[tuple[str, int, Any]]:
    plan: list[tuple[str, int, Any]] = []
    for field in desc.fields:
        if field.is_repeated:
            entry = field.message_type
            if entry is not None and entry.GetOptions().map_entry:
                plan.append((field.name, _MAP, _converter(entry.fields_by_name["value"])))
            else:
                plan.append((field.name, _REPEATED, _converter(field)))
        elif field.has_presence:
            plan.append((field.name, _PRESENCE, _converter(field)))
        else:
            plan.append((field.name, _SCALAR, _converter(field)))
    return plan


def _field_value(field: Any, value: Any) -> Any:
    kind = field.type
    if kind == _TYPE_ENUM:
        symbol = field.enum_type.values_by_number.get(value)
        return symbol.name if symbol is not None else value
    if kind == _TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    if kind == _TYPE_MESSAGE:
        return _message_value(value)
    return value  # numbers (int64 too: a JSON number), str, bool


def _message_value(msg: Any) -> Any:
    name = msg.DESCRIPTOR.full_name
    if name == "google.protobuf.Timestamp":
        return iso_timestamp(msg.ToDatetime(tzinfo=UTC))
    if name == "google.protobuf.Duration":
        return msg.seconds + msg.nanos / 1e9
    if name in _WRAPPERS:
        field = msg.DESCRIPTOR.fields_by_name["value"]
        return _field_value(field, msg.value)
    if name in _STRUCTS:
        from google.protobuf import json_format  # not I/O; only these types need it

        return json_format.MessageToDict(msg)
    return message_to_plain(msg)
