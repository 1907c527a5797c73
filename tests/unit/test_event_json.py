"""connector/event_json.py: request bodies joined from events encoded at ingest are the
bodies `orjson.dumps` writes of the same items, whatever the customer ids, names and
metadata (differential, hypothesis), and one item may hold several events."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.core import Item, Segment
from connector.event_json import encode_items, event_metadata, item_json

SEG = Segment("t", 0, 0, 1, 1)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
names = st.text(min_size=1, max_size=12)
# items: a customer and its events, distinct names (the window's rule for one item)
items = st.lists(
    st.tuples(st.text(max_size=12),
              st.dictionaries(names, json_values, min_size=1, max_size=3)),
    max_size=6,
)


def build(spec: list[tuple[str, dict[str, Any]]]) -> list[Item]:
    return [Item(cid, [(SEG, (n, cid, name, item_json(cid, name, md)))
                       for n, (name, md) in enumerate(events.items())])
            for cid, events in spec]


def expected(spec: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    return {"body": [{"customerId": cid, "events": events} for cid, events in spec]}


@given(items)
def test_a_joined_body_is_the_body_orjson_writes_of_the_same_items(
    spec: list[tuple[str, dict[str, Any]]],
) -> None:
    body = encode_items(build(spec))
    assert orjson.loads(body) == expected(spec)
    assert body == orjson.dumps(expected(spec))  # byte for byte, not only equal values


@given(items)
def test_a_body_joined_from_the_payloads_the_cut_noted_is_the_same_body(
    spec: list[tuple[str, dict[str, Any]]],
) -> None:
    single = [Item(it.customer_id, [entry]) for it in build(spec) for entry in it.entries]
    payloads = [item.entries[0][1][3] for item in single]
    assert encode_items(single, payloads=payloads) == encode_items(single)
    assert orjson.loads(encode_items(single, payloads=payloads)) == {"body": [
        {"customerId": cid, "events": {name: md}}
        for cid, events in spec for name, md in events.items()]}


@given(st.text(max_size=12), st.dictionaries(names, json_values, min_size=1, max_size=3))
def test_send_events_takes_the_one_item_alone(cid: str, events: dict[str, Any]) -> None:
    (item,) = build([(cid, events)])
    assert encode_items([item], batch_endpoint=False) == orjson.dumps(
        {"customerId": cid, "events": events})


def test_the_metadata_of_a_payload_is_read_back() -> None:
    payload = item_json('c"1', "place_order", {"amount": 12.5, "tags": ["a"]})
    assert event_metadata(payload, "place_order") == {"amount": 12.5, "tags": ["a"]}


def test_metadata_without_a_json_form_raises_at_ingest() -> None:
    with pytest.raises(TypeError):
        item_json("c1", "place_order", {"n": 2**70})
    with pytest.raises(TypeError):
        item_json("c1", "place_order", {1: "not a string key"})


def test_an_encoded_event_holds_no_more_than_its_bytes() -> None:
    """orjson's own result keeps a 4 KB buffer (tracemalloc shows it; sys.getsizeof
    does not); the copy is what the row holds."""
    import tracemalloc

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [item_json(f"c{i}", "place_order", {"id": i}) for i in range(1000)]
        per_event = (tracemalloc.get_traced_memory()[0] - before) / len(kept)
    finally:
        tracemalloc.stop()
    assert per_event < 200
