"""The mapper, feature by feature: routes, envelope, event names, customer ids, metadata.

Each table row is a route config (as in YAML), a record, and what a user would see
(the events, or the skip/error reason).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from connector.decode import decode_string
from connector.event_json import item_json
from connector.mapping import Mapper, envelope_value
from connector.mapping_schema import RouteSettings, TopicSettings
from connector.records import DecodeError, Event, MappingError, RecordError, Skip, SourceRecord

BASE = {"topic": "t", "customer_id": "cid", "event": "e"}


def route(**changes: Any) -> dict[str, Any]:
    out = dict(BASE)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def build(
    *routes: dict[str, Any], topics: dict[str, Any] | None = None, fast: bool = True
) -> Mapper:
    settings = [RouteSettings.model_validate(r) for r in routes]
    topic_settings = {k: TopicSettings.model_validate(v) for k, v in (topics or {}).items()}
    return Mapper(settings, topic_settings, fast_paths=fast)


def rec(value: Any, topic: str = "t", **kw: Any) -> SourceRecord:
    raw = value if value is None or isinstance(value, bytes) else orjson.dumps(value)
    return SourceRecord(topic, raw, **kw)


def outcome(result: list[Event] | Skip | RecordError) -> Any:
    """What a user sees: [(customerId, name, metadata)], ("skip", reason) or (stage, reason)."""
    if isinstance(result, list):
        return [(e.customer_id, e.name, e.metadata) for e in result]
    if isinstance(result, Skip):
        return ("skip", result.reason)
    return (result.stage, result.reason)


def run(routes: list[dict[str, Any]] | dict[str, Any], record: SourceRecord, **kw: Any) -> Any:
    mapper = build(*(routes if isinstance(routes, list) else [routes]), **kw)
    mapped = mapper.map(record)
    result = outcome(mapped)
    # The slow, explaining path and the pure-JMESPath build must agree with the fast one,
    # errors down to their wording and route.
    explained = mapper.explain(record)[0]
    assert outcome(explained) == result
    if isinstance(mapped, RecordError):
        assert isinstance(explained, RecordError)
        assert (mapped.detail, mapped.route) == (explained.detail, explained.route)
    slow = build(*(routes if isinstance(routes, list) else [routes]), fast=False, **kw)
    assert outcome(slow.map(record)) == result
    # So must the pipeline's per-topic function (which returns a single event bare, or
    # a generated route's core row with the event encoded).
    hot = mapper.for_topic(record.topic())(record)
    if isinstance(hot, tuple):
        assert isinstance(mapped, list) and len(mapped) == 1
        assert hot == row_of(mapped[0], record)
        hot = mapped[0]
    assert outcome([hot] if isinstance(hot, Event) else hot) == result
    return result


def row_of(event: Event, record: SourceRecord) -> tuple[int, str, str, bytes]:
    """The core row the pipeline expects of `event`: bytes as `item_json` writes them."""
    return (record.offset(), event.customer_id, event.name,
            item_json(event.customer_id, event.name, event.metadata))


# --- routes ---------------------------------------------------------------------------

ROUTES: list[tuple[Any, ...]] = [
    # (id, routes, record, expected)
    ("exact topic", route(), rec({"cid": "c1"}), [("c1", "e", {})]),
    ("other topic unmatched", route(), rec({"cid": "c1"}, topic="u"), ("skip", "unmatched")),
    (
        "pattern full match",
        route(topic=None, topic_pattern=r"shop\.(orders|returns)"),
        rec({"cid": "c1"}, topic="shop.returns"),
        [("c1", "e", {})],
    ),
    (
        "pattern must match the whole name",
        route(topic=None, topic_pattern=r"shop\.orders"),
        rec({"cid": "c1"}, topic="shop.orders.v2"),
        ("skip", "unmatched"),
    ),
    ("when true", route(when="kind == 'a'"), rec({"cid": "c1", "kind": "a"}), [("c1", "e", {})]),
    (
        "when false",
        route(when="kind == 'a'"),
        rec({"cid": "c1", "kind": "b"}),
        ("skip", "unmatched"),
    ),
    ("when truthy value", route(when="flag"), rec({"cid": "c1", "flag": "x"}), [("c1", "e", {})]),
    (
        "when empty list is false",
        route(when="tags"),
        rec({"cid": "c", "tags": []}),
        ("skip", "unmatched"),
    ),
    (
        "several routes, several events in route order",
        [route(event="a"), route(event="b", when="n > `1`"), route(event="c", when="n > `5`")],
        rec({"cid": "c1", "n": 3}),
        [("c1", "a", {}), ("c1", "b", {})],
    ),
    (
        "one failing route fails the whole record",
        [route(event="a"), route(event="b", customer_id="other")],
        rec({"cid": "c1"}),
        ("mapping", "missing_customer_id"),
    ),
    ("tombstone", route(), rec(None), ("skip", "tombstone")),
    ("tombstone on an unrouted topic", route(), rec(None, topic="u"), ("skip", "tombstone")),
]


@pytest.mark.parametrize(
    ("routes", "record", "expected"), [c[1:] for c in ROUTES], ids=[c[0] for c in ROUTES]
)
def test_routes(routes: Any, record: SourceRecord, expected: Any) -> None:
    assert run(routes, record) == expected


UNMATCHED = [
    ("default skips", {}, "t", ("skip", "unmatched")),
    ("topic dead-letters", {"t": {"unmatched": "dead_letter"}}, "t", ("mapping", "unmatched")),
    ("star dead-letters", {"*": {"unmatched": "dead_letter"}}, "t", ("mapping", "unmatched")),
    (
        "topic setting beats star",
        {"*": {"unmatched": "dead_letter"}, "t": {"unmatched": "skip"}},
        "t",
        ("skip", "unmatched"),
    ),
    (
        "unrouted topic under star",
        {"*": {"unmatched": "dead_letter"}},
        "u",
        ("mapping", "unmatched"),
    ),
]


@pytest.mark.parametrize(
    ("topics", "topic", "expected"), [c[1:] for c in UNMATCHED], ids=[c[0] for c in UNMATCHED]
)
def test_unmatched_policy(topics: dict[str, Any], topic: str, expected: Any) -> None:
    record = rec({"cid": "c1", "kind": "other"}, topic=topic)
    assert run(route(when="kind == 'a'"), record, topics=topics) == expected


def test_unmatched_error_says_why() -> None:
    mapper = build(route(when="kind == 'a'"), topics={"*": {"unmatched": "dead_letter"}})
    err = mapper.map(rec({"kind": "b"}))
    assert isinstance(err, MappingError)
    assert "every 'when' was false" in err.detail
    err = mapper.map(rec({"kind": "b"}, topic="nowhere"))
    assert isinstance(err, MappingError)
    assert "no route is configured for topic 'nowhere'" in err.detail


def test_errors_name_their_route() -> None:
    mapper = build(route(name="orders"), route(name="bad", event="x", customer_id="nope"))
    err = mapper.map(rec({"cid": "c"}))
    assert isinstance(err, MappingError) and err.route == "bad"
    err = mapper.map(rec(b"{not json"))
    assert isinstance(err, DecodeError) and err.route == "orders" and err.stage == "decode"


def test_a_decode_error_on_the_fast_path_is_not_decoded_again() -> None:
    calls: list[bytes | str] = []

    def failing(data: bytes | str) -> Any:
        calls.append(data)
        raise DecodeError("invalid_json", "not today")

    mapper = Mapper([RouteSettings.model_validate(route())], decoders={"json": failing})
    err = mapper.map(rec(b"{}"))
    assert isinstance(err, DecodeError) and err.detail == "not today" and err.route == "t/e"
    assert calls == [b"{}"]
    again = mapper.for_topic("t")(rec(b"[]"))  # the pipeline's path: the same, once
    assert isinstance(again, DecodeError) and again.detail == "not today"
    assert again.route == "t/e" and calls == [b"{}", b"[]"]


def test_route_names_derived_and_deduplicated() -> None:
    mapper = build(
        route(event="a"),
        route(event="a", when="x"),
        route(topic=None, topic_pattern="s.*", event_from="kind", event=None),
        route(name="mine"),
    )
    assert mapper.route_names == ["t/a#0", "t/a#1", "s.*/kind", "mine"]


def test_explain_tells_why_each_route_did_or_did_not_take_the_record() -> None:
    mapper = build(
        route(name="a", when="kind == 'a'"),
        route(name="b", event_from="kind", event=None, event_map={"x": None}),
        route(name="c", topic="other"),
        route(name="d", event="d"),
    )
    result, trace = mapper.explain(rec({"cid": "c1", "kind": "x"}))
    assert outcome(result) == [("c1", "d", {})]
    got = {t.route: (t.outcome, t.detail) for t in trace}
    assert got["a"] == ("when_false", "when \"kind == 'a'\" gave False")
    assert got["b"][0] == "filtered"
    assert got["c"] == ("topic", "topic 't' is not 'other'")
    assert got["d"] == ("event", "d")
    assert [t.route for t in trace] == ["a", "b", "c", "d"]


# --- envelope ---------------------------------------------------------------------------

HEADERS = (
    ("trace-id", b"tr-1"),
    ("kind", b"old"),
    ("kind", b"new"),
    ("bin", b"\xff\xfe"),
    ("nil", None),
)
ENVELOPE = [
    ("key as customer id", {"customer_id": "@key"}, {}, [("k-1", "e", {})]),
    ("header field", {"metadata": {"h": "@headers.kind"}}, {}, [("c", "e", {"h": "new"})]),
    (
        "quoted header name",
        {"metadata": {"h": '@headers."trace-id"'}},
        {},
        [("c", "e", {"h": "tr-1"})],
    ),
    ("missing header", {"metadata": {"h": "@headers.nope"}}, {}, [("c", "e", {"h": None})]),
    ("header without value", {"metadata": {"h": "@headers.nil"}}, {}, [("c", "e", {"h": None})]),
    ("binary header", {"metadata": {"h": "@headers.bin"}}, {}, [("c", "e", {"h": "\ufffd\ufffd"})]),
    (
        "all headers",
        {"metadata": {"h": "@headers"}},
        {},
        [
            (
                "c",
                "e",
                {"h": {"trace-id": "tr-1", "kind": "new", "bin": "\ufffd\ufffd", "nil": None}},
            )
        ],
    ),
    (
        "coordinates",
        {"metadata": {"t": "@topic", "p": "@partition", "o": "@offset", "ts": "@timestamp"}},
        {},
        [("c", "e", {"t": "t", "p": 2, "o": 41, "ts": 1714557600250})],
    ),
    (
        "timestamp not available",
        {"metadata": {"ts": "@timestamp"}},
        {"timestamp_ms": None},
        [("c", "e", {"ts": None})],
    ),
    (
        "envelope in a real expression",
        {"when": "@headers.kind == 'new' && n > `1`"},
        {},
        [("c", "e", {})],
    ),
    (
        "envelope in a real expression, false",
        {"when": "@headers.kind == 'old'"},
        {},
        ("skip", "unmatched"),
    ),
    (
        "@ is still the value",
        {"metadata": {"all": "@", "n": "@.n"}},
        {},
        [("c", "e", {"all": {"cid": "c", "n": 2}, "n": 2})],
    ),
    (
        "'@key' inside a literal is text",
        {"metadata": {"s": "'@key'"}},
        {},
        [("c", "e", {"s": "@key"})],
    ),
    (
        "json key path",
        {"key_format": "json", "customer_id": "@key.id"},
        {"key_": b'{"id": 7}'},
        [("7", "e", {})],
    ),
    (
        "json key in a function",
        {"key_format": "json", "metadata": {"n": "length(@key.tags)"}},
        {"key_": b'{"tags": [1, 2]}'},
        [("c", "e", {"n": 2})],
    ),
    ("no key", {"customer_id": "@key"}, {"key_": None}, ("mapping", "missing_customer_id")),
    (
        "invalid json key",
        {"key_format": "json", "customer_id": "@key.id"},
        {"key_": b"{"},
        ("decode", "invalid_key"),
    ),
    (
        "base64 key",
        {"key_format": "bytes-base64", "metadata": {"k": "@key"}},
        {"key_": b"\x00\x01"},
        [("c", "e", {"k": "AAE="})],
    ),
    (
        "hand-written envelope call is @offset",
        {"metadata": {"o": "_gb_envelope('offset')"}},
        {},
        [("c", "e", {"o": 41})],
    ),
]


@pytest.mark.parametrize(
    ("changes", "record_kw", "expected"), [c[1:] for c in ENVELOPE], ids=[c[0] for c in ENVELOPE]
)
def test_envelope(changes: dict[str, Any], record_kw: dict[str, Any], expected: Any) -> None:
    kw: dict[str, Any] = {
        "key_": b"k-1",
        "headers_": HEADERS,
        "partition_": 2,
        "offset_": 41,
        "timestamp_ms": 1714557600250,
        **record_kw,
    }
    assert run(route(**changes), rec({"cid": "c", "n": 2}, **kw)) == expected


def test_unknown_envelope_field_is_not_the_offset() -> None:
    assert envelope_value(rec({}, offset_=3), "offset", decode_string) == 3
    with pytest.raises(ValueError, match="unknown envelope field 'offzet'"):
        envelope_value(rec({}, offset_=3), "offzet", decode_string)


def test_topic_key_format_applies_to_its_routes() -> None:
    record = rec({"x": 1}, key_=b'{"id": "k9"}')
    mapper = build(route(customer_id="@key.id"), topics={"t": {"key_format": "json"}})
    assert outcome(mapper.map(record)) == [("k9", "e", {})]


# --- event names ------------------------------------------------------------------------

EVENT_MAP = {"placed": "place_order", "viewed": None, "1": "level_one", "true": "flagged"}
EVENTS: list[tuple[Any, ...]] = [
    ("literal", {}, {"kind": "x"}, [("c", "e", {})]),
    ("from a field", {"event": None, "event_from": "kind"}, {"kind": "x"}, [("c", "x", {})]),
    ("from a header", {"event": None, "event_from": "@headers.type"}, {}, [("c", "hdr", {})]),
    ("number as name", {"event": None, "event_from": "kind"}, {"kind": 7}, [("c", "7", {})]),
    ("missing name", {"event": None, "event_from": "kind"}, {}, ("mapping", "missing_event_name")),
    (
        "empty name",
        {"event": None, "event_from": "kind"},
        {"kind": ""},
        ("mapping", "missing_event_name"),
    ),
    (
        "whitespace name",
        {"event": None, "event_from": "kind"},
        {"kind": " \t "},
        ("mapping", "blank_event_name"),
    ),
    (
        "whitespace name, even with a fixed default",
        {"event": None, "event_from": "kind", "event_default": {"name": "other"}},
        {"kind": "  "},
        ("mapping", "blank_event_name"),
    ),
    (
        "object name",
        {"event": None, "event_from": "kind"},
        {"kind": {"a": 1}},
        ("mapping", "invalid_event_name"),
    ),
    (
        "missing name, fixed default",
        {"event": None, "event_from": "kind", "event_default": {"name": "other"}},
        {},
        [("c", "other", {})],
    ),
    (
        "mapped",
        {"event": None, "event_from": "kind", "event_map": EVENT_MAP},
        {"kind": "placed"},
        [("c", "place_order", {})],
    ),
    (
        "mapped to null skips",
        {"event": None, "event_from": "kind", "event_map": EVENT_MAP},
        {"kind": "viewed"},
        ("skip", "filtered"),
    ),
    (
        "number key",
        {"event": None, "event_from": "kind", "event_map": EVENT_MAP},
        {"kind": 1},
        [("c", "level_one", {})],
    ),
    (
        "boolean key",
        {"event": None, "event_from": "kind", "event_map": EVENT_MAP},
        {"kind": True},
        [("c", "flagged", {})],
    ),
    (
        "unmapped dead-letters by default",
        {"event": None, "event_from": "kind", "event_map": EVENT_MAP},
        {"kind": "zz"},
        ("mapping", "unmapped_event"),
    ),
    (
        "unmapped skip",
        {"event": None, "event_from": "kind", "event_map": EVENT_MAP, "event_default": "skip"},
        {"kind": "zz"},
        ("skip", "filtered"),
    ),
    (
        "unmapped fixed",
        {
            "event": None,
            "event_from": "kind",
            "event_map": EVENT_MAP,
            "event_default": {"name": "misc"},
        },
        {"kind": "zz"},
        [("c", "misc", {})],
    ),
    (
        "missing with map, skip",
        {"event": None, "event_from": "kind", "event_map": EVENT_MAP, "event_default": "skip"},
        {},
        ("skip", "filtered"),
    ),
    (
        "fixed default named skip",
        {
            "event": None,
            "event_from": "kind",
            "event_map": EVENT_MAP,
            "event_default": {"name": "skip"},
        },
        {"kind": "zz"},
        [("c", "skip", {})],
    ),
    (
        "fixed default named dead_letter",
        {
            "event": None,
            "event_from": "kind",
            "event_map": EVENT_MAP,
            "event_default": {"name": "dead_letter"},
        },
        {"kind": "zz"},
        [("c", "dead_letter", {})],
    ),
    (
        "missing name, fixed default named skip",
        {"event": None, "event_from": "kind", "event_default": {"name": "skip"}},
        {},
        [("c", "skip", {})],
    ),
]


@pytest.mark.parametrize(
    ("changes", "value", "expected"), [c[1:] for c in EVENTS], ids=[c[0] for c in EVENTS]
)
def test_event_names(changes: dict[str, Any], value: dict[str, Any], expected: Any) -> None:
    record = rec({"cid": "c", **value}, headers_=(("type", b"hdr"),))
    assert run(route(**changes), record) == expected


def test_unmapped_event_error_names_the_value() -> None:
    mapper = build(route(event=None, event_from="kind", event_map={"a": "b"}))
    err = mapper.map(rec({"cid": "c", "kind": "refunded"}))
    assert isinstance(err, MappingError)
    assert err.detail == "event_from value 'refunded' is not in event_map"


def test_two_events_of_one_record_share_no_state() -> None:
    mapper = build(
        route(event="a", metadata={"o": "obj"}),
        route(event="b", metadata={"o": "obj"}, exclude=["o.x"]),
    )
    result = mapper.map(rec({"cid": "c", "obj": {"x": 1, "y": 2}}))
    assert outcome(result) == [("c", "a", {"o": {"x": 1, "y": 2}}), ("c", "b", {"o": {"y": 2}})]


# --- customer ids -----------------------------------------------------------------------

CUSTOMER_IDS = [
    ("string", "c-1", "c-1"),
    ("integer", 1848877205, "1848877205"),
    ("whole float", 42.0, "42"),
    ("float", 1.5, "1.5"),
    ("big integer", 2**63 + 5, str(2**63 + 5)),
    ("kept as given", " c 1 ", " c 1 "),
    ("missing", None, ("mapping", "missing_customer_id")),
    ("empty", "", ("mapping", "missing_customer_id")),
    ("blank", "   ", ("mapping", "missing_customer_id")),
    ("object", {"id": 1}, ("mapping", "invalid_customer_id")),
    ("array", [1], ("mapping", "invalid_customer_id")),
    ("boolean", True, ("mapping", "invalid_customer_id")),
]


@pytest.mark.parametrize(
    ("raw", "expected"), [c[1:] for c in CUSTOMER_IDS], ids=[c[0] for c in CUSTOMER_IDS]
)
def test_customer_ids(raw: Any, expected: Any) -> None:
    value = {"customer": {"id": raw}} if raw is not None else {"customer": {}}
    got = run(route(customer_id="customer.id"), rec(value))
    assert got == ([(expected, "e", {})] if isinstance(expected, str) else expected)


def test_customer_id_null_and_non_object_parent() -> None:
    mapper = build(route(customer_id="customer.id"))
    assert outcome(mapper.map(rec({"customer": {"id": None}}))) == (
        "mapping",
        "missing_customer_id",
    )
    assert outcome(mapper.map(rec({"customer": "c-1"}))) == ("mapping", "missing_customer_id")
    assert outcome(mapper.map(rec([1, 2]))) == ("mapping", "missing_customer_id")


# --- metadata -----------------------------------------------------------------------------

VALUE = {
    "cid": "c",
    "id": "o-1",
    "total": {"amount": "149.90", "currency": "EGP"},
    "n": 3,
    "items": [{"sku": "A"}, {"sku": "B"}],
    "details": {"color": "red", "size": None, "secret": "s3", "nested": {"keep": 1, "drop": 2}},
    "nothing": None,
}
METADATA = [
    (
        "plain paths",
        {"metadata": {"o": "id", "a": "total.amount", "miss": "no.such.path"}},
        {"o": "o-1", "a": "149.90", "miss": None},
    ),
    ("deep path", {"metadata": {"k": "details.nested.keep"}}, {"k": 1}),
    (
        "real JMESPath",
        {"metadata": {"skus": "items[].sku", "count": "length(items)"}},
        {"skus": ["A", "B"], "count": 2},
    ),
    (
        "constant",
        {"metadata": {"src": {"value": "kafka"}, "tags": {"value": ["a", 1]}}},
        {"src": "kafka", "tags": ["a", 1]},
    ),
    ("null constant", {"metadata": {"z": {"value": None}}}, {"z": None}),
    (
        "default for missing",
        {"metadata": {"c": {"path": "channel", "default": "web"}}},
        {"c": "web"},
    ),
    ("default for null", {"metadata": {"c": {"path": "nothing", "default": 0}}}, {"c": 0}),
    ("default not used when present", {"metadata": {"c": {"path": "n", "default": 0}}}, {"c": 3}),
    (
        "number from text",
        {"metadata": {"a": {"path": "total.amount", "type": "number"}}},
        {"a": 149.9},
    ),
    (
        "include",
        {"include": ["details"], "metadata": {"id": "id"}},
        {
            "color": "red",
            "size": None,
            "secret": "s3",
            "nested": {"keep": 1, "drop": 2},
            "id": "o-1",
        },
    ),
    (
        "explicit keys win over include",
        {
            "include": ["details"],
            "metadata": {"color": {"value": "blue"}},
            "exclude": ["nested", "secret", "size"],
        },
        {"color": "blue"},
    ),
    ("include missing object", {"include": ["nope"], "metadata": {"id": "id"}}, {"id": "o-1"}),
    (
        "exclude nested",
        {
            "metadata": {"d": "details"},
            "exclude": ["d.secret", "d.nested.drop", "d.absent", "absent.x"],
        },
        {"d": {"color": "red", "size": None, "nested": {"keep": 1}}},
    ),
    (
        "drop nulls",
        {"metadata": {"id": "id", "x": "nothing", "y": "no.path"}, "drop_nulls": True},
        {"id": "o-1"},
    ),
    (
        "drop nulls keeps falsy values",
        {
            "metadata": {"z": {"value": 0}, "f": {"value": False}, "s": {"value": ""}},
            "drop_nulls": True,
        },
        {"z": 0, "f": False, "s": ""},
    ),
    (
        "source coordinates",
        {"metadata": {"id": "id"}, "source_key": "_src"},
        {"id": "o-1", "_src": {"topic": "t", "partition": 1, "offset": 99}},
    ),
]


@pytest.mark.parametrize(
    ("changes", "expected"), [c[1:] for c in METADATA], ids=[c[0] for c in METADATA]
)
def test_metadata(changes: dict[str, Any], expected: dict[str, Any]) -> None:
    record = rec(VALUE, partition_=1, offset_=99)
    assert run(route(**changes), record) == [("c", "e", expected)]


def test_exclude_does_not_touch_the_record_value() -> None:
    mapper = build(
        route(event="a", include=["details"], exclude=["nested.drop"]),
        route(event="b", metadata={"d": "details"}),
    )
    result = mapper.map(rec(VALUE))
    assert isinstance(result, list)
    assert result[0].metadata["nested"] == {"keep": 1}
    assert result[1].metadata["d"]["nested"] == {"keep": 1, "drop": 2}


METADATA_ERRORS = [
    (
        "required missing",
        {"metadata": {"r": {"path": "rating", "required": True}}},
        {},
        "missing_field",
    ),
    (
        "required null",
        {"metadata": {"r": {"path": "rating", "required": True}}},
        {"rating": None},
        "missing_field",
    ),
    (
        "coercion fails",
        {"metadata": {"r": {"path": "rating", "type": "integer"}}},
        {"rating": "five"},
        "coercion_failed",
    ),
    ("include not an object", {"include": ["rating"]}, {"rating": 5}, "include_not_object"),
    (
        "expression type error",
        {"metadata": {"x": "length(rating)"}},
        {"rating": 5},
        "expression_failed",
    ),
    (
        "integer beyond JSON",
        {"metadata": {"x": "sum(big)"}},
        {"big": [2**63, 2**63]},
        "expression_failed",
    ),
    (
        "integer beyond JSON, long form",
        {"metadata": {"x": {"path": "floor(f)", "default": 0}}},
        {"f": 1e300},
        "expression_failed",
    ),
    (
        "integer beyond JSON from include",
        {"include": ["{n: to_number(s)}"]},
        {"s": "123456789012345678901234567890"},
        "expression_failed",
    ),
    (
        "literal beyond JSON",
        {"metadata": {"x": "`123456789012345678901234567890`"}},
        {},
        "expression_failed",
    ),
]


@pytest.mark.parametrize(
    ("changes", "value", "reason"),
    [c[1:] for c in METADATA_ERRORS],
    ids=[c[0] for c in METADATA_ERRORS],
)
def test_metadata_errors(changes: dict[str, Any], value: dict[str, Any], reason: str) -> None:
    assert run(route(**changes), rec({"cid": "c", **value})) == ("mapping", reason)


JSON_CHECKS = [
    ("plain path", route(metadata={"x": "a.b"}), False),
    ("real JMESPath reads", route(metadata={"x": "a[0].b", "y": "{o: @offset, k: @key}"}), False),
    ("constant", route(metadata={"x": {"value": 1}}), False),
    ("function in metadata", route(metadata={"x": "length(a)"}), True),
    ("function in long form", route(metadata={"x": {"path": "abs(a)", "required": True}}), True),
    ("function in include", route(include=["merge(a, b)"]), True),
    ("big literal", route(metadata={"x": "`123456789012345678901234567890`"}), True),
    ("small literal", route(metadata={"x": '`[1, 2.5, "s"]`'}), False),
    ("function outside metadata", route(when="length(a) > `1`", customer_id="to_string(c)"), False),
]


@pytest.mark.parametrize(
    ("changes", "checked"), [c[1:] for c in JSON_CHECKS], ids=[c[0] for c in JSON_CHECKS]
)
def test_metadata_is_json_checked_only_where_a_value_can_leave_json(
    changes: dict[str, Any], checked: bool
) -> None:
    for fast in (True, False):
        (info,) = build(changes, fast=fast).route_info()
        assert info.checks_json is checked


def test_coercion_error_names_the_key_and_value() -> None:
    mapper = build(route(metadata={"amount": {"path": "a", "type": "number"}}))
    err = mapper.map(rec({"cid": "c", "a": "twelve"}))
    assert isinstance(err, MappingError)
    assert err.detail == "metadata.amount: 'twelve' is not a number"


COERCIONS: list[tuple[str, Any, Any]] = [
    ("string", "abc", "abc"),
    ("string", 12, "12"),
    ("string", 1.5, "1.5"),
    ("string", True, "true"),
    ("string", {"a": [1]}, '{"a":[1]}'),
    ("number", 7, 7),
    ("number", 7.25, 7.25),
    ("number", "7", 7),
    ("number", " 7.5 ", 7.5),
    ("number", "1e3", 1000.0),
    ("number", "abc", None),
    ("number", True, None),
    ("number", [1], None),
    ("number", "nan", None),
    ("number", "99999999999999999999999", None),
    ("integer", 7, 7),
    ("integer", 7.0, 7),
    ("integer", "7", 7),
    ("integer", "7.0", 7),
    ("integer", 7.5, None),
    ("integer", "x", None),
    ("boolean", True, True),
    ("boolean", "yes", True),
    ("boolean", "TRUE", True),
    ("boolean", "0", False),
    ("boolean", "off", False),
    ("boolean", 1, True),
    ("boolean", 0, False),
    ("boolean", 2, None),
    ("boolean", "maybe", None),
    ("boolean", {}, None),
    ("timestamp", "2024-05-01T10:15:00Z", "2024-05-01T10:15:00.000Z"),
    ("timestamp", "2024-05-01T12:15:00.5+02:00", "2024-05-01T10:15:00.500Z"),
    ("timestamp", "2024-05-01T10:15:00", "2024-05-01T10:15:00.000Z"),
    ("timestamp", "2024-05-01", "2024-05-01T00:00:00.000Z"),
    ("timestamp", 1714558500, "2024-05-01T10:15:00.000Z"),
    ("timestamp", 1714558500.25, "2024-05-01T10:15:00.250Z"),
    ("timestamp", 1714558500123, "2024-05-01T10:15:00.123Z"),
    ("timestamp", 1714558500123456, "2024-05-01T10:15:00.123Z"),
    ("timestamp", "1714558500123", "2024-05-01T10:15:00.123Z"),
    ("timestamp", "yesterday", None),
    ("timestamp", True, None),
    ("timestamp", {"t": 1}, None),
    ("timestamp", 1e300, None),
]


@pytest.mark.parametrize(
    ("kind", "raw", "expected"), COERCIONS, ids=[f"{k}-{r!r}" for k, r, _ in COERCIONS]
)
def test_coercion(kind: str, raw: Any, expected: Any) -> None:
    mapper = build(route(metadata={"x": {"path": "x", "type": kind}}))
    got = outcome(mapper.map(rec({"cid": "c", "x": raw})))
    assert got == (
        [("c", "e", {"x": expected})] if expected is not None else ("mapping", "coercion_failed")
    )


@pytest.mark.parametrize(
    ("unit", "raw", "expected"),
    [
        ("s", 1714558500, "2024-05-01T10:15:00.000Z"),
        ("ms", 1714558500, "1970-01-20T20:15:58.500Z"),
        ("us", 1714558500000000, "2024-05-01T10:15:00.000Z"),
    ],
)
def test_timestamp_units(unit: str, raw: int, expected: str) -> None:
    mapper = build(route(metadata={"t": {"path": "t", "type": "timestamp", "unit": unit}}))
    assert outcome(mapper.map(rec({"cid": "c", "t": raw}))) == [("c", "e", {"t": expected})]


def test_null_is_not_coerced_and_default_is_used_as_given() -> None:
    mapper = build(
        route(
            metadata={
                "a": {"path": "a", "type": "number"},
                "b": {"path": "b", "type": "number", "default": "n/a"},
            }
        )
    )
    assert outcome(mapper.map(rec({"cid": "c"}))) == [("c", "e", {"a": None, "b": "n/a"})]


# --- value formats ------------------------------------------------------------------------

FORMATS = [
    ("json is the default", {}, {}, b'{"cid": "c"}', [("c", "e", {})]),
    ("invalid json", {}, {}, b"{nope", ("decode", "invalid_json")),
    (
        "string value",
        {"value_format": "string", "customer_id": "@key", "metadata": {"text": "@"}},
        {},
        b"hello \xc3\xa9",
        [("k", "e", {"text": "hello \u00e9"})],
    ),
    (
        "invalid utf-8",
        {"value_format": "string", "customer_id": "@key"},
        {},
        b"\xff",
        ("decode", "invalid_utf8"),
    ),
    (
        "base64 value",
        {"value_format": "bytes-base64", "customer_id": "@key", "metadata": {"raw": "@"}},
        {},
        b"\x00\xffab",
        [("k", "e", {"raw": "AP9hYg=="})],
    ),
    (
        "topic sets the format",
        {"customer_id": "@key", "metadata": {"text": "@"}},
        {"t": {"value_format": "string"}},
        b"plain",
        [("k", "e", {"text": "plain"})],
    ),
    (
        "star sets the format",
        {"customer_id": "@key", "metadata": {"text": "@"}},
        {"*": {"value_format": "string"}},
        b"plain",
        [("k", "e", {"text": "plain"})],
    ),
    (
        "route beats topic",
        {"value_format": "json"},
        {"t": {"value_format": "string"}},
        b'{"cid": "c"}',
        [("c", "e", {})],
    ),
]


@pytest.mark.parametrize(
    ("changes", "topics", "raw", "expected"), [c[1:] for c in FORMATS], ids=[c[0] for c in FORMATS]
)
def test_value_formats(
    changes: dict[str, Any], topics: dict[str, Any], raw: bytes, expected: Any
) -> None:
    assert run(route(**changes), rec(raw, key_=b"k"), topics=topics) == expected


def test_routes_with_different_formats_on_one_topic() -> None:
    mapper = build(
        route(event="as_json", metadata={"n": "n"}),
        route(event="as_text", value_format="string", customer_id="@key", metadata={"raw": "@"}),
    )
    result = mapper.map(rec(b'{"cid": "c", "n": 1}', key_=b"c"))
    assert outcome(result) == [
        ("c", "as_json", {"n": 1}),
        ("c", "as_text", {"raw": '{"cid": "c", "n": 1}'}),
    ]
    assert outcome(mapper.map(rec(b"oops"))) == ("decode", "invalid_json")


def test_events_keep_their_record() -> None:
    mapper = build(route())
    record = rec({"cid": "c"}, offset_=5)
    result = mapper.map(record)
    assert isinstance(result, list) and result[0].record is record


def test_confluent_style_str_values_are_accepted() -> None:
    # confluent-kafka may hand str values when a deserializer is configured.
    class StrRecord(SourceRecord):
        def value(self) -> Any:
            return '{"cid": 5}'

    assert outcome(build(route()).map(StrRecord("t", None))) == [("5", "e", {})]


GENERATED = [
    (
        "when and plain paths",
        route(when="kind == 'a'", metadata={"x": "a.b", "y": '"odd-key"'}),
        True,
    ),
    ("no when", route(metadata={"x": "a"}), True),
    ("when not a text comparison", route(when="n > `1`"), False),
    ("envelope customer id", route(customer_id="@key"), False),
    ("metadata option", route(metadata={"x": {"path": "a", "type": "string"}}), False),
    ("event_from", route(event=None, event_from="kind"), False),
]


@pytest.mark.parametrize(
    ("changes", "generated"), [c[1:] for c in GENERATED], ids=[c[0] for c in GENERATED]
)
def test_simple_routes_run_as_generated_code(changes: dict[str, Any], generated: bool) -> None:
    mapper = build(changes)
    (info,) = mapper.route_info()
    assert (info.code == "generated") is generated
    values: list[Any] = [
        {"cid": 4.0, "kind": "a", "a": {"b": [1]}, "odd-key": None, "n": 2},
        {"cid": "  ", "kind": "a"},
        {"cid": {"x": 1}, "kind": "a"},
        {"cid": "c", "kind": "b"},
        {"cid": "c", "kind": ["a"], "a": "text"},
        ["not", "an", "object"],
        "text",
    ]
    slow = build(changes, fast=False)
    for value in values:
        record = rec(value, key_=b"k")
        assert outcome(mapper.map(record)) == outcome(slow.map(record)), value


def test_text_that_reads_like_the_generated_source_stays_text() -> None:
    """A `when` literal or a key that reads like the generated code's own lines is still
    a literal and a key, in the pipeline's function as in every other build."""
    r = route(when="kind == 'return None'", metadata={"x": '"return None"'})
    (info,) = build(r).route_info()
    assert info.code == "generated"
    record = rec({"cid": "c1", "kind": "return None", "return None": 7})
    assert run(r, record) == [("c1", "e", {"x": 7})]
    assert run(r, rec({"cid": "c1", "kind": "other"})) == ("skip", "unmatched")
