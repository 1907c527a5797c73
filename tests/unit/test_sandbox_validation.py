"""The sandbox's body checks: what Gameball's schema allows passes, anything else is a 3xxx."""

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
    assert (error.status, error.code, error.type) == (400, errors.TOO_MANY_ITEMS, "Payload Error")
    assert "1001 items" in error.message and "1000" in error.message


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        ([item()], errors.INVALID_BODY, "must be a JSON object"),
        ({}, errors.INVALID_BODY, 'missing "body"'),
        ({"body": [item()], "extra": 1}, errors.INVALID_BODY, "unknown field(s): extra"),
        ({"body": item()}, errors.INVALID_BODY, "must be an array"),
        ({"body": []}, errors.EMPTY_BATCH, "at least one item"),
        ({"body": [item(), "x"]}, errors.INVALID_BODY, "body[1] must be an object"),
        ({"body": [{"customerId": "c"}]}, errors.INVALID_BODY, "body[0] is missing events"),
        ({"body": [{"events": {"a": {}}}]}, errors.INVALID_BODY, "missing customerId"),
        ({"body": [{**item(), "email": "a@b"}]}, errors.INVALID_BODY, "unknown field(s): email"),
        ({"body": [item(""), item()]}, errors.INVALID_CUSTOMER_ID, "body[0].customerId"),
        ({"body": [item(), item("   ")]}, errors.INVALID_CUSTOMER_ID, "body[1].customerId"),
        ({"body": [{"customerId": 42, "events": {"a": {}}}]}, errors.INVALID_CUSTOMER_ID,
         "non-empty string"),
        ({"body": [{"customerId": "c", "events": {}}]}, errors.INVALID_EVENTS, "non-empty"),
        ({"body": [{"customerId": "c", "events": ["place_order"]}]}, errors.INVALID_EVENTS,
         "body[0].events"),
        ({"body": [{"customerId": "c", "events": {"place_order": 5}}]}, errors.INVALID_EVENTS,
         "body[0].events.place_order must be an object"),
        ({"body": [{"customerId": "c", "events": {"": {}}}]}, errors.INVALID_EVENTS,
         "empty event name"),
    ],
)
def test_bad_batch_bodies_are_payload_errors(body: Any, code: int, fragment: str) -> None:
    error = validate_batch_body(body)
    assert error is not None
    assert error.status == 400
    assert error.code == code
    assert 3000 <= error.code < 4000
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
    assert error is not None and error.code == errors.INVALID_EVENTS
    error = validate_events_body("text")
    assert error is not None and error.code == errors.INVALID_BODY


def test_error_object_has_the_documented_fields() -> None:
    error = validate_batch_body({"body": []})
    assert error is not None
    assert error.body("req-1") == {
        "code": errors.EMPTY_BATCH,
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
