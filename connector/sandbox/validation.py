"""Strict checks of request bodies against Gameball's OpenAPI pages (seeds/).

Pure functions: the server calls them on the parsed JSON and answers with the
returned error (a code of the reference's table with its status: see errors.py).
Unknown keys are rejected on purpose: the sandbox exists to catch a
connector that sends something Gameball's schema does not describe.
"""

from __future__ import annotations

from itertools import chain
from operator import itemgetter
from typing import Any

from connector.sandbox import errors
from connector.sandbox.errors import ApiError

MAX_BATCH_ITEMS = 1000  # "Each batch request supports up to 1,000 objects per request"
_ITEM_KEYS = frozenset({"customerId", "events"})
_CUSTOMER_ID = itemgetter("customerId")
_EVENTS = itemgetter("events")


def _bad(code: int, message: str) -> ApiError:
    return errors.api_error(code, message)


def item_problem(item: Any, where: str) -> ApiError | None:
    """Check one `{"customerId", "events"}` object; `where` names it in the message."""
    if not isinstance(item, dict):
        return _bad(errors.INVALID_PAYLOAD, f"{where} must be an object with customerId and events")
    if item.keys() != _ITEM_KEYS:
        missing = sorted(_ITEM_KEYS - item.keys())
        if missing:
            return _bad(errors.MISSING_ARGUMENTS, f"{where} is missing {', '.join(missing)}")
        unknown = sorted(item.keys() - _ITEM_KEYS)
        return _bad(errors.INVALID_PAYLOAD, f"{where} has unknown field(s): {', '.join(unknown)}")
    customer_id = item["customerId"]
    if not isinstance(customer_id, str) or not customer_id or customer_id.isspace():
        return _bad(errors.INVALID_VALUE, f"{where}.customerId must be a non-empty string")
    events = item["events"]
    if not isinstance(events, dict) or not events:
        return _bad(errors.INVALID_VALUE,
                    f"{where}.events must be a non-empty object of event name -> metadata object")
    for name, metadata in events.items():
        if not name or name.isspace():
            return _bad(errors.INVALID_VALUE, f"{where}.events has an empty event name")
        if not isinstance(metadata, dict):
            return _bad(errors.INVALID_VALUE,
                        f"{where}.events.{name} must be an object (the event's metadata)")
    return None


def validate_batch_body(obj: Any) -> ApiError | None:
    """Send Events Batch Job body: `{"body": [item, ...]}` with 1..1000 items.

    Returns None when valid, else the 400 error naming the first problem.
    """
    if not isinstance(obj, dict):
        return _bad(errors.INVALID_PAYLOAD, 'request body must be a JSON object {"body": [...]}')
    if "body" not in obj:
        return _bad(errors.MISSING_ARGUMENTS, 'request body is missing "body" (the array of items)')
    unknown = sorted(k for k in obj if k != "body")
    if unknown:
        return _bad(errors.INVALID_PAYLOAD,
                    f"request body has unknown field(s): {', '.join(unknown)}")
    items = obj["body"]
    if not isinstance(items, list):
        return _bad(errors.INVALID_PAYLOAD, '"body" must be an array of items')
    if not items:
        return _bad(errors.MISSING_ARGUMENTS, '"body" must contain at least one item')
    if len(items) > MAX_BATCH_ITEMS:
        return _bad(errors.LIMIT_EXCEED,
                    f'"body" has {len(items)} items; at most {MAX_BATCH_ITEMS} are allowed')
    if _all_items_ok(items):
        return None
    for index, item in enumerate(items):
        problem = item_problem(item, f"body[{index}]")
        if problem is not None:
            return problem
    return None


def _all_items_ok(items: list[Any]) -> bool:
    # Fast path for the common, valid case: every loop runs in C (map/set/all), which
    # keeps a 1000-item batch well under a millisecond. When it says no, the slow loop
    # above finds the first bad item and names it. Accepts exactly what item_problem does.
    if set(map(type, items)) != {dict} or set(map(len, items)) != {2}:
        return False
    try:
        customer_ids = list(map(_CUSTOMER_ID, items))
        events = list(map(_EVENTS, items))
    except KeyError:
        return False
    if set(map(type, customer_ids)) != {str} or not all(customer_ids):
        return False
    if any(map(str.isspace, customer_ids)):
        return False
    if set(map(type, events)) != {dict} or not all(events):
        return False
    names = list(chain.from_iterable(events))
    if not all(names) or any(map(str.isspace, names)):
        return False
    return set(map(type, chain.from_iterable(map(dict.values, events)))) == {dict}


def validate_events_body(obj: Any) -> ApiError | None:
    """Send Events body: one `{"customerId", "events"}` object. None when valid."""
    if not isinstance(obj, dict):
        return _bad(errors.INVALID_PAYLOAD,
                    'request body must be a JSON object {"customerId": ..., "events": {...}}')
    return item_problem(obj, "request body")
