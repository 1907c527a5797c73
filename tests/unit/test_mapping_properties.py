"""Property tests: for any record, the mapper returns events, a skip or its own error.

Never anything else, never an exception; the same record always maps the same way; the
fast plain-path build, the pure-JMESPath build and `explain` agree; every event is
JSON-encodable (the batch body is built with orjson).
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.mapping import Mapper
from connector.mapping_schema import RouteSettings, TopicSettings
from connector.records import DecodeError, Event, MappingError, RecordError, Skip, SourceRecord
from tests.unit.test_mapping import row_of

ROUTES = [
    {
        "name": "typed",
        "topic": "t",
        "customer_id": "customer.id",
        "event_from": "type",
        "event_map": {"a": "event_a", "b": None, "1": "one"},
        "event_default": "dead_letter",
        "metadata": {
            "n": {"path": "n", "type": "number"},
            "i": {"path": "n", "type": "integer", "default": -1},
            "b": {"path": "flag", "type": "boolean"},
            "s": {"path": "customer", "type": "string"},
            "ts": {"path": "at", "type": "timestamp"},
            "deep": "x.y.z.w",
            "first": "items[0]",
            "size": "length(items)",
            "sum": "sum(nums)",
            "num": "to_number(n)",
            "k": {"value": {"fixed": [1, "two"]}},
        },
        "include": ["extra"],
        "exclude": ["secret", "x.y"],
        "drop_nulls": True,
        "source_key": "_src",
    },
    {
        "name": "envelope",
        "topic": "t",
        "when": "@headers.kind == 'go' || n > `2`",
        "key_format": "json",
        "customer_id": "@key.id",
        "event": "from_envelope",
        "metadata": {"h": "@headers", "t": {"path": "@timestamp", "type": "timestamp"}, "all": "@"},
    },
    {
        "name": "text",
        "topic_pattern": "t|u",
        "value_format": "string",
        "customer_id": "@headers.cid",
        "event": "text",
        "metadata": {"raw": "@", "len": "length(@)"},
    },
    {"name": "plain", "topic": "u", "customer_id": "a.b", "event": "p", "metadata": {"c": "c.d"}},
    # alone on its topic, generated code: the pipeline takes its rows (`map_row`)
    {"name": "solo", "topic": "w", "customer_id": "customer", "event": "solo",
     "metadata": {"c": "c.d", "n": "n", "deep": "x.y"}},
]
TOPICS = {"u": TopicSettings(unmatched="dead_letter")}
SETTINGS = [RouteSettings.model_validate(r) for r in ROUTES]
FAST = Mapper(SETTINGS, TOPICS)
SLOW = Mapper(SETTINGS, TOPICS, fast_paths=False)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["a", "b", "1", "go", "2024-05-01T10:00:00Z", "12.5", "yes", ""])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "customer",
                    "id",
                    "type",
                    "n",
                    "flag",
                    "at",
                    "x",
                    "y",
                    "z",
                    "w",
                    "items",
                    "nums",
                    "extra",
                    "secret",
                    "a",
                    "b",
                    "c",
                    "d",
                ]
            )
            | st.text(max_size=5),
            inner,
            max_size=6,
        )
    ),
    max_leaves=20,
)
raw_values = st.one_of(
    json_values.map(orjson.dumps),
    st.binary(max_size=40),
    st.none(),
)
records = st.builds(
    SourceRecord,
    topic_=st.sampled_from(["t", "u", "v", "w"]),
    value_=raw_values,
    partition_=st.integers(0, 5),
    offset_=st.integers(0, 2**40),
    key_=st.one_of(st.none(), st.binary(max_size=12), json_values.map(orjson.dumps)),
    headers_=st.lists(
        st.tuples(
            st.sampled_from(["kind", "cid", "other"]),
            st.one_of(st.none(), st.binary(max_size=8), st.just(b"go")),
        ),
        max_size=4,
    ).map(tuple),
    timestamp_ms=st.one_of(st.none(), st.integers(-(2**45), 2**45)),
)


def view(result: list[Event] | Skip | RecordError) -> Any:
    if isinstance(result, list):
        return [(e.customer_id, e.name, orjson.dumps(e.metadata)) for e in result]
    if isinstance(result, Skip):
        return ("skip", result.reason)
    return (type(result).__name__, result.reason, result.detail, result.route)


@settings(max_examples=250, deadline=None)
@given(records)
def test_any_record_maps_to_events_skip_or_record_error(record: SourceRecord) -> None:
    result = FAST.map(record)
    if isinstance(result, list):
        assert result, "an empty event list must be a Skip instead"
        for event in result:
            assert isinstance(event, Event)
            assert isinstance(event.customer_id, str) and event.customer_id.strip()
            assert isinstance(event.name, str) and event.name
            assert isinstance(event.metadata, dict)
            orjson.dumps({"customerId": event.customer_id, "events": {event.name: event.metadata}})
            assert event.record is record
    elif isinstance(result, Skip):
        assert result.reason in {"filtered", "tombstone", "unmatched"}
    else:
        assert isinstance(result, DecodeError | MappingError)
        assert re.fullmatch(r"[a-z][a-z0-9_]*", result.reason)
        assert isinstance(result.detail, str)


@settings(max_examples=200, deadline=None)
@given(records)
def test_mapping_is_deterministic_and_every_build_agrees(record: SourceRecord) -> None:
    first = view(FAST.map(record))
    assert view(FAST.map(record)) == first
    assert view(SLOW.map(record)) == first
    assert view(FAST.explain(record)[0]) == first
    if record.topic() == "w":
        assert FAST.route_info()[-1].code == "generated"
    hot = FAST.for_topic(record.topic())(record)  # the pipeline's path: one event comes bare
    if isinstance(hot, tuple):  # or as the core row, encoded: byte for byte the same event
        mapped = FAST.map(record)
        assert isinstance(mapped, list) and len(mapped) == 1
        assert hot == row_of(mapped[0], record)
        hot = mapped[0]
    assert view([hot] if isinstance(hot, Event) else hot) == first


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_plain_paths_match_jmespath(value: Any) -> None:
    import jmespath

    record = SourceRecord("u", orjson.dumps(value))
    result = FAST.map(record)
    cid = jmespath.search("a.b", value)
    if isinstance(result, list):
        (event,) = result
        assert event.metadata == {"c": jmespath.search("c.d", value)}
        assert event.customer_id == (
            cid
            if isinstance(cid, str)
            else str(cid if not isinstance(cid, float) or not cid.is_integer() else int(cid))
        )
    else:
        assert isinstance(result, MappingError)


# --- the closure compiler equals the JMESPath interpreter -------------------------------

FIELDS = st.sampled_from(["a", "b", "c", "n", "items", '"x-y"'])
LITERALS = st.sampled_from(
    ["'a'", "'1'", "`1`", "`0`", "`true`", "`false`", "`null`", "`[]`", "`2.5`", "''"]
)


def _expressions() -> st.SearchStrategy[str]:
    leaf = FIELDS | LITERALS | st.just("@") | FIELDS.map(lambda f: f + ".a")
    functions = [
        "length",
        "to_string",
        "to_number",
        "type",
        "keys",
        "values",
        "sort",
        "max",
        "sum",
        "abs",
        "not_null",
    ]

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        pair = st.tuples(inner, inner)
        return st.one_of(
            st.tuples(inner, st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), inner).map(
                " ".join
            ),
            pair.map(lambda p: f"({p[0]}) && ({p[1]})"),
            pair.map(lambda p: f"({p[0]}) || ({p[1]})"),
            inner.map(lambda e: f"!({e})"),
            st.tuples(st.sampled_from(functions), inner).map(lambda p: f"{p[0]}({p[1]})"),
            st.tuples(inner, inner).map(lambda p: f"contains({p[0]}, {p[1]})"),
            st.tuples(FIELDS, inner).map(
                lambda p: f"{p[0]}[*].{p[1].strip('()') if p[1][0].isalpha() else 'a'}"
            ),
            FIELDS.map(lambda f: f"{f}[].a"),
            FIELDS.map(lambda f: f"{f}[]"),
            st.tuples(FIELDS, inner).map(lambda p: f"{p[0]}[?{p[1]}]"),
            FIELDS.map(lambda f: f"{f}.*"),
            st.tuples(FIELDS, st.integers(-3, 3)).map(lambda p: f"{p[0]}[{p[1]}]"),
            FIELDS.map(lambda f: f"{f}[1:]"),
            FIELDS.map(lambda f: f"{f}[::-1]"),
            pair.map(lambda p: f"[{p[0]}, {p[1]}]"),
            pair.map(lambda p: f"{{k: {p[0]}, j: {p[1]}}}"),
            pair.map(lambda p: f"({p[0]}) | ({p[1]})"),
        )

    return st.recursive(leaf, extend, max_leaves=6)


@settings(max_examples=150, deadline=None)
@given(_expressions(), json_values)
def test_closure_compiler_agrees_with_the_interpreter(text: str, value: Any) -> None:
    import jmespath
    from jmespath.exceptions import JMESPathError, ParseError

    from connector.decode import decode_string
    from connector.mapping import compile_getter
    from connector.mapping_schema import parse_expression

    try:
        expr = parse_expression(text)
    except ValueError:
        return  # the generator can write invalid JMESPath; those are config errors
    record = SourceRecord("t", None)
    getter = compile_getter(expr, decode_string)

    def outcome(fn: Any) -> Any:
        try:
            return ("ok", fn())
        except (JMESPathError, TypeError, ValueError) as exc:
            return ("error", type(exc).__name__)

    try:
        jmespath.compile(text)
    except ParseError:
        return
    expected = outcome(lambda: jmespath.search(text, value))
    got = outcome(lambda: getter(value, record))
    assert got == expected, text


solo_records = st.builds(
    SourceRecord,
    topic_=st.just("w"),
    value_=st.fixed_dictionaries(
        {"customer": st.text(min_size=1, max_size=8) | st.integers(0, 10**6),
         "c": st.fixed_dictionaries({"d": json_values}) | json_values,
         "n": json_values},
        optional={"x": st.fixed_dictionaries({"y": json_values})},
    ).map(orjson.dumps),
    offset_=st.integers(0, 2**40),
    timestamp_ms=st.one_of(st.none(), st.integers(0, 2**45)),
)


@settings(max_examples=150, deadline=None)
@given(solo_records)
def test_a_generated_route_gives_the_pipeline_its_event_as_a_row(record: SourceRecord) -> None:
    """The pipeline's rows (`map_row`) hold, byte for byte, the event every other build
    maps the record to, at the record's offset."""
    hot = FAST.for_topic("w")(record)
    mapped = SLOW.map(record)
    if isinstance(mapped, list):
        assert isinstance(hot, tuple)
        assert hot == row_of(mapped[0], record)
    else:
        assert view(hot) == view(mapped)
