"""Events as JSON, written once at ingest; request bodies joined from them.

The pipeline's row payload (connector/core/rows.py) is its event as the item Gameball
takes, `{"customerId": ..., "events": {name: metadata}}`, encoded by `item_json` when the
record is mapped (connector/ingest.py), less its opening brace (the slice that drops it
is the exact-size copy a waiting event needs). A request body is then those bytes joined
(`encode_items`, the pipeline's `Sender` encoder): no per-item dicts and no second
encoding on the sender threads. An item holding several events of one customer (distinct
names) is spliced from its events' bytes; orjson writes compact JSON, so every event of
a customer starts with the same head and ends with `}}`. Differential unit tests hold
this to `orjson.dumps` of the same items (tests/unit/test_event_json.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import orjson


class Item(Protocol):
    """A `connector.core.Item` as read here (not imported: the mapping's generated code
    calls `item_json`, and the mapping may not import the delivery core)."""

    customer_id: str
    entries: list[Any]  # (segment, row) entries; a row's payload (row[3]) is its bytes

_HEAD = b'{"customerId":'
_EVENTS = b',"events":{'


def item_json(customer_id: str, name: str, metadata: Any) -> bytes:
    """Ingest: one event as its request item, without the opening `{` (`encode_items`
    puts it back). The slice is a copy, and the copy matters: orjson's result keeps a
    4 KB buffer whatever its length, which every waiting event would hold; a slice copies
    at the exact size, and costs less than `bytes(memoryview(...))`. Raises
    TypeError/ValueError (orjson.JSONEncodeError) when the metadata has no JSON form."""
    return orjson.dumps({"customerId": customer_id, "events": {name: metadata}})[1:]


def encode_items(items: Sequence[Item], batch_endpoint: bool = True,
                 payloads: list[bytes] | None = None) -> bytes:
    """The sender's encoder for the pipeline's rows: `{"body":[items]}` for Send Events
    Batch Job, else the one item (Send Events). `payloads`: the items' bytes as the cut
    noted them (`Batch.payloads`), joined without walking the items. Never raises on the
    data: each event was encoded at ingest."""
    parts = payloads if payloads is not None else [
        item.entries[0][1][3] if len(item.entries) == 1 else _merged(item) for item in items]
    if not batch_endpoint:
        (part,) = parts
        return b"{" + part
    return b'{"body":[{' + b",{".join(parts) + b"]}" if parts else b'{"body":[]}'


def _merged(item: Item) -> bytes:
    """One item of several events (distinct names) from their bytes: the shared head,
    each event's `"name":metadata`, the closing braces (no opening brace, as a payload)."""
    head = len(_HEAD) - 1 + len(orjson.dumps(item.customer_id)) + len(_EVENTS)
    first: bytes = item.entries[0][1][3]
    return first[:head] + b",".join([row[3][head:-2] for _seg, row in item.entries]) + b"}}"


def event_metadata(payload: bytes, name: str) -> Any:
    """The metadata of a row's payload (a rejected event's reference copy)."""
    return orjson.loads(b"{" + payload)["events"][name]
