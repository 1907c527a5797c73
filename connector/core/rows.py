"""Plain data of the core: consumed runs, segments, items, batches, dead-letter tickets.

A *row* is one mapped event as the shell hands it in: `(offset, customer_id, name,
payload)`. The core never reads `payload` (a rejected row's comes back in
its `Letter`); `Item.body`/`encode_items` take it as the event's metadata: a dict, or
its JSON already encoded wrapped in `orjson.Fragment` (copied into the body as bytes);
either way one `orjson.dumps` call per request. The pipeline's payload is its event as
request-item JSON bytes, joined by `connector.event_json.encode_items`; the re-drive's
is the mapped `Event` (`gameball.encode_request`).
A *segment* is a slice of one partition's run: the unit acks are counted in and the
unit commits move by; it carries the run's record timestamp (the end-to-end latency's
start), so no event carries its own. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson

# (offset, customer_id, event name, payload: the event's metadata or its encoded item)
Row = tuple[int, str, str, Any]


class Run(NamedTuple):
    """What one consume returned for one partition, decoded and mapped by the shell.

    `rows` in read order (a record with several events gives several rows with its
    offset); `skipped`: offsets of records that produced no event (done at once);
    `failed`: offsets of records bound for the dead-letter topic (one event each, done
    when the shell reports the copy acknowledged); `timestamp_ms`: the timestamp of the
    run's first record (-1: none), which its segments carry for the end-to-end latency.
    """

    topic: str
    partition: int
    rows: Sequence[Row]
    skipped: Sequence[int] = ()
    failed: Sequence[int] = ()
    timestamp_ms: int = -1


class Segment:
    """Consecutive records of one partition, acked as a count (`pending` events left).

    `first` is the lowest offset of a record with events, `end` the last offset + 1:
    while the segment is unfinished no commit passes `first`.
    """

    __slots__ = ("accepted", "dropped", "end", "events", "first", "partition", "pending", "seq",
                 "timestamp_ms", "topic")

    def __init__(self, topic: str, partition: int, first: int, end: int, events: int,
                 seq: int = 0, timestamp_ms: int = -1) -> None:
        self.topic = topic
        self.partition = partition
        self.first = first
        self.end = end
        self.events = events  # events of the segment's records, rows and failed ones
        self.pending = events  # not yet accepted nor dead-lettered
        self.accepted = 0  # accepted by Gameball: what a crash would send again
        self.dropped = False  # its partition was revoked: late acks are ignored
        self.seq = seq  # ingest order across partitions: lower was read earlier
        # its run's first record timestamp (-1: none): a batch's oldest is the least of its
        # segments', a record-time latency as precise as one consumed run's time span
        self.timestamp_ms = timestamp_ms

    def __repr__(self) -> str:
        return (f"Segment({self.topic}[{self.partition}]@{self.first}-{self.end}, "
                f"{self.pending}/{self.events})")


# One waiting or sent event: its segment (for the ack count) and its row.
Entry = tuple[Segment, Row]


class Item:
    """One object of a batch request: one customer, events of distinct names."""

    __slots__ = ("customer_id", "entries")

    def __init__(self, customer_id: str, entries: list[Entry]) -> None:
        self.customer_id = customer_id
        self.entries = entries

    @property
    def names(self) -> list[str]:
        return [row[2] for _seg, row in self.entries]

    def refs(self) -> list[tuple[str, int, int, str]]:
        """(topic, partition, offset, event name) of each event: all that job tracking
        and dead-lettering need to find the record again (no metadata, no message)."""
        return [(seg.topic, seg.partition, row[0], row[2]) for seg, row in self.entries]

    def body(self) -> dict[str, Any]:
        """The item as Gameball takes it (`customerId`, `events` by name)."""
        entries = self.entries
        if len(entries) == 1:  # the common item: no comprehension frame
            row = entries[0][1]
            return {"customerId": self.customer_id, "events": {row[2]: row[3]}}
        return {"customerId": self.customer_id,
                "events": {row[2]: row[3] for _seg, row in entries}}

    def __repr__(self) -> str:
        return f"Item({self.customer_id!r}, {self.names!r})"


def encode_items(items: Sequence[Item], batch_endpoint: bool = True) -> bytes:
    """A request body, one `orjson.dumps` call: `{"body":[items]}` for the batch-job
    endpoint, else the one item (Send Events). The sender calls it once per request
    (again only for the halves of a split or bisected batch)."""
    if not batch_endpoint:
        (item,) = items
        return orjson.dumps(item.body())
    return orjson.dumps({"body": [item.body() for item in items]})


class Batch:
    """Items of one request and how many events of each segment they hold."""

    __slots__ = ("_customers", "counts", "events", "items", "oldest_ms", "payloads")

    def __init__(self, items: list[Item], counts: dict[Segment, int], events: int,
                 customers: list[str], oldest_ms: int | None,
                 payloads: list[Any] | None = None) -> None:
        self.items = items
        # each item's payload when every item holds one event, else None: the shell's
        # encoder joins a body from them without walking the items again
        self.payloads = payloads
        self.counts = counts  # segment -> events of it in this batch: the ack is per segment
        self.events = events
        self._customers = customers  # each customer once, noted by the cut
        self.oldest_ms = oldest_ms  # the oldest stamp of its segments (None: no stamp)

    def body(self) -> bytes:
        return encode_items(self.items)

    def customers(self) -> list[str]:
        return self._customers

    def __len__(self) -> int:
        return len(self.items)


class Letter:
    """A dead-letter ticket: which record to copy (topic, partition, offset), and who.

    The shell copies the record's original bytes (kept or re-read by offset) and calls
    `DeliveryCore.dead_lettered(letter)` once the broker acknowledged the copy. A letter
    of a rejected item carries its row's `payload` (the shell's own object: the pipeline
    re-reads the record by offset and uses the payload only if it cannot); a letter of a
    `failed` record of `ingest` has None.
    """

    __slots__ = ("cause", "customer_id", "name", "offset", "payload", "segment")

    def __init__(self, segment: Segment, offset: int, customer_id: str | None = None,
                 name: str | None = None, cause: object = None, payload: Any = None) -> None:
        self.segment = segment
        self.offset = offset
        self.customer_id = customer_id
        self.name = name
        self.cause = cause  # what the shell passed with the rejected item (its Answer)
        self.payload = payload  # the rejected row's payload (row[3])

    @property
    def topic(self) -> str:
        return self.segment.topic

    @property
    def partition(self) -> int:
        return self.segment.partition

    def __repr__(self) -> str:
        return f"Letter({self.topic}[{self.partition}]@{self.offset}, {self.name!r})"
