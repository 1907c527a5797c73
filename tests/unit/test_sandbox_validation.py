"""The sandbox's body checks: what Gameball's schema allows passes, anything else is a 3xxx
of the reference's table (3000 Missing Arguments 400, 3003 Invalid Value 422, 3011 Limit
Exceed 422, 3016 Invalid Payload 400)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.sandbox import errors
from connector.sandbox.validation import (
    MAX_BATCH_ITEMS,
    item_problem,
    validate_batch_body,
    validate_events_body,
)


def item(customer: str = "c1", **events: dict[str, Any]) -> dict[str, Any]:
    return {"customerId": customer, "events": events or {"place_order": {"amount": 5}}}


def test_valid_batch_passes() -> None:
    body = {"body": [item("c1"), item("c2", place_order={}, write_review={"stars": 5})]}
    assert validate_batch_body(body) is None


def test_exactly_the_limit_passes_and_one_more_is_refused() -> None:
    assert validate_batch_body({"body": [item(f"c{i}") for i in range(MAX_BATCH_ITEMS)]}) is None
    error = validate_batch_body({"body": [item(f"c{i}") for i in range(MAX_BATCH_ITEMS + 1)]})
    assert error is not None
    assert (error.status, error.code, error.type) == (422, 3011, "Payload Error")
    assert "1001 items" in error.message and "1000" in error.message


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        ([item()], 3016, "must be a JSON object"),
        ({}, 3000, 'missing "body"'),
        ({"body": [item()], "extra": 1}, 3016, "unknown field(s): extra"),
        ({"body": item()}, 3016, "must be an array"),
        ({"body": []}, 3000, "at least one item"),
        ({"body": [item(), "x"]}, 3016, "body[1] must be an object"),
        ({"body": [{"customerId": "c"}]}, 3000, "body[0] is missing events"),
        ({"body": [{"events": {"a": {}}}]}, 3000, "missing customerId"),
        ({"body": [{**item(), "email": "a@b"}]}, 3016, "unknown field(s): email"),
        ({"body": [item(""), item()]}, 3003, "body[0].customerId"),
        ({"body": [item(), item("   ")]}, 3003, "body[1].customerId"),
        ({"body": [{"customerId": 42, "events": {"a": {}}}]}, 3003,
         "non-empty string"),
        ({"body": [{"customerId": "c", "events": {}}]}, 3003, "non-empty"),
        ({"body": [{"customerId": "c", "events": ["place_order"]}]}, 3003,
         "body[0].events"),
        ({"body": [{"customerId": "c", "events": {"place_order": 5}}]}, 3003,
         "body[0].events.place_order must be an object"),
        ({"body": [{"customerId": "c", "events": {"": {}}}]}, 3003,
         "empty event name"),
    ],
)
def test_bad_batch_bodies_are_payload_errors(body: Any, code: int, fragment: str) -> None:
    error = validate_batch_body(body)
    assert error is not None
    assert error.code == code
    assert error.status == {3000: 400, 3003: 422, 3016: 400}[code]
    assert fragment in error.message


def test_the_first_bad_item_is_named_among_good_ones() -> None:
    body = {"body": [item(f"c{i}") for i in range(500)]}
    body["body"][317]["events"] = {"place_order": "not an object"}
    error = validate_batch_body(body)
    assert error is not None and "body[317].events.place_order" in error.message


def test_events_endpoint_body() -> None:
    assert validate_events_body(item()) is None
    assert validate_events_body({"body": [item()]}) is not None  # the batch shape is wrong here
    error = validate_events_body({"customerId": "c", "events": {}})
    assert error is not None and error.code == 3003
    error = validate_events_body("text")
    assert error is not None and (error.status, error.code) == (400, 3016)


def test_error_object_has_the_documented_fields() -> None:
    error = validate_batch_body({"body": []})
    assert error is not None
    assert error.body("req-1") == {
        "code": 3000,
        "type": "Payload Error",
        "message": error.message,
        "documentationUrl": errors.DOCUMENTATION_URL,
        "requestId": "req-1",
    }


# JSON-ish values shaped like items, valid and invalid, to check that the C-speed fast
# path of validate_batch_body accepts exactly what the per-item check accepts.
_names = st.sampled_from(["place_order", "", " ", "review", "\t"])
_scalars = st.one_of(st.none(), st.integers(), st.text(max_size=3), st.booleans())
_metadata = st.one_of(st.dictionaries(st.text(max_size=3), _scalars, max_size=2), _scalars)
_events = st.one_of(st.dictionaries(_names, _metadata, max_size=3), _scalars,
                    st.lists(_scalars, max_size=2))
_customer = st.one_of(st.sampled_from(["c1", "c2", "", "  "]), st.integers(), st.none())
_item = st.one_of(
    st.builds(lambda c, e: {"customerId": c, "events": e}, _customer, _events),
    st.builds(lambda c: {"customerId": c}, _customer),
    st.builds(lambda c, e: {"customerId": c, "events": e, "x": 1}, _customer, _events),
    _scalars,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_item, min_size=1, max_size=6))
def test_fast_path_agrees_with_the_item_check(items: list[Any]) -> None:
    expected = next((p for i, x in enumerate(items)
                     if (p := item_problem(x, f"body[{i}]")) is not None), None)
    assert validate_batch_body({"body": items}) == expected
