"""Values decoded from Avro and Protobuf become the JSON values Gameball takes."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
import pytest

from connector.wire_values import decimal_number, iso_timestamp, message_to_plain, plain
from tests.schema_records import order_message_class


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2024, 5, 1, 10, 0, 0, 123_000, tzinfo=UTC), "2024-05-01T10:00:00.123Z"),
        (datetime(2024, 5, 1, 10, 0, 0, 123_456, tzinfo=UTC), "2024-05-01T10:00:00.123456Z"),
        # another zone is shown in UTC
        (
            datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))),
            "2024-05-01T10:00:00.000Z",
        ),
        # Avro local-timestamp-*: wall time, no zone invented
        (datetime(2024, 5, 1, 10, 0), "2024-05-01T10:00:00.000"),
    ],
)
def test_timestamps_become_iso_8601_utc(value: datetime, expected: str) -> None:
    assert iso_timestamp(value) == expected
    assert plain(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("12.50"), 12.5),
        (Decimal("100"), 100),
        (Decimal("100.00"), 100),  # integral: an exact int
        (Decimal("-7"), -7),
        (Decimal("123456789012345.67"), 123456789012345.67),  # 17 digits: nearest float
        (Decimal("9" * 30), float("9" * 30)),  # beyond 64 bits: a float, not an error
    ],
)
def test_decimals_become_json_numbers(value: Decimal, expected: float) -> None:
    out = decimal_number(value)
    assert out == expected
    assert type(out) is type(expected)
    orjson.dumps(out)  # always encodable


def test_decimal_precision_rule_exact_to_15_digits() -> None:
    value = Decimal("1234567890123.45")  # 15 significant digits
    assert Decimal(repr(decimal_number(value))) == value


def test_plain_converts_nested_avro_values() -> None:
    value = {
        "customer": {"id": "c1"},
        "status": "PAID",  # fastavro reads enums as their symbol
        "at": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        "day": date(2024, 1, 2),
        "clock": time(10, 30),
        "amount": Decimal("9.99"),
        "raw": b"\x00\xffok",
        "id": UUID("12345678-1234-5678-1234-567812345678"),
        "count": 1 << 40,
        "tags": ["a", "b"],
        "attrs": {"x": [Decimal("1"), b"\x01"]},
        "none": None,
        "flag": True,
    }
    assert plain(value) == {
        "customer": {"id": "c1"},
        "status": "PAID",
        "at": "2024-01-02T03:04:05.000Z",
        "day": "2024-01-02",
        "clock": "10:30:00",
        "amount": 9.99,
        "raw": "AP9vaw==",
        "id": "12345678-1234-5678-1234-567812345678",
        "count": 1 << 40,
        "tags": ["a", "b"],
        "attrs": {"x": [1, "AQ=="]},
        "none": None,
        "flag": True,
    }
    orjson.dumps(plain(value))


def order(**fields: Any) -> Any:
    return order_message_class()(**fields)


def test_protobuf_message_fields_enums_int64_maps_repeated_timestamp() -> None:
    msg = order(status="REFUNDED", amount=4.25, items=5_000_000_004, payload=b"\x00\xffok")
    msg.customer.id = "c2"
    msg.placed_at.FromDatetime(datetime(2024, 5, 1, 10, 0, 4, 123_000, tzinfo=UTC))
    msg.tags.extend(["a", "b"])
    msg.attrs["big"] = 1 << 40
    assert message_to_plain(msg) == {
        "customer": {"id": "c2"},
        "status": "REFUNDED",  # the symbol, not 2
        "placed_at": "2024-05-01T10:00:04.123Z",
        "amount": 4.25,
        "items": 5_000_000_004,  # int64: a JSON number, not a string
        "payload": "AP9vaw==",
        "tags": ["a", "b"],
        "attrs": {"big": 1 << 40},
    }


def test_protobuf_unset_fields_defaults_and_presence() -> None:
    # proto3: scalars and enums read as their defaults; unset messages are absent
    assert message_to_plain(order()) == {
        "status": "NEW",
        "amount": 0.0,
        "items": 0,
        "payload": "",
        "tags": [],
        "attrs": {},
    }


def test_protobuf_unknown_enum_number_kept_as_number() -> None:
    msg = order()
    msg.ParseFromString(b"\x10\x09")  # field 2 (status) = 9: not a symbol of this schema
    assert message_to_plain(msg)["status"] == 9
