"""What a tracked batch job keeps of its items, and which of them a job status failed.

The job tracker (connector/jobs.py) keeps, per accepted item, only what dead-lettering
a failed item needs: the customer id and, per event, (topic, partition, offset, event
name). `JobItems` packs them into a few arrays and one string per job (about 30 bytes
an event instead of the event, its metadata and its Kafka message); `failed_items`
matches a job status's failures back to them. Pure: no I/O, no threads.
docs/metrics.md ("Job tracking").
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from connector.jobstatus import JobStatus

# (topic, partition, offset, event name): what `connector.core.rows.Item.refs()` gives.
Ref = tuple[str, int, int, str]
# One accepted item as the tracker takes it: (customer id, its events' refs).
ItemRefs = tuple[str, Sequence[Ref]]


class EventRef(NamedTuple):
    """Where one event of a failed item came from (handed to `on_failed_item`)."""

    topic: str
    partition: int
    offset: int
    customer_id: str
    name: str


class JobItems:
    """The items of one tracked job, packed (built by `JobTracker.submit`)."""

    __slots__ = ("_cid_ends", "_cids", "_ends", "_names", "_offsets", "_parts", "_where")

    def __init__(self, items: Iterable[ItemRefs]) -> None:
        parts: dict[tuple[str, int], int] = {}
        names: dict[str, int] = {}
        self._offsets = offsets = array("q")
        self._where = where = array("I")  # per event: partition index << 16 | name index
        self._ends = ends = array("I")  # per item: index of its last event + 1
        self._cid_ends = cid_ends = array("I")  # per item: end of its customer id in `_cids`
        cids: list[str] = []
        length = 0
        for customer_id, refs in items:
            for topic, partition, offset, name in refs:
                p = parts.get((topic, partition))
                if p is None:
                    p = parts[(topic, partition)] = len(parts)
                n = names.get(name)
                if n is None:
                    n = names[name] = len(names)
                offsets.append(offset)
                where.append(p << 16 | n)
            ends.append(len(offsets))
            cids.append(customer_id)
            length += len(customer_id)
            cid_ends.append(length)
        self._cids = "".join(cids)
        self._parts = list(parts)
        self._names = list(names)

    def __len__(self) -> int:
        return len(self._ends)

    @property
    def events(self) -> int:
        return len(self._offsets)

    def customer(self, i: int) -> str:
        start = self._cid_ends[i - 1] if i else 0
        return self._cids[start:self._cid_ends[i]]

    def refs(self, i: int) -> list[EventRef]:
        """The events of item `i`, in the order they were submitted."""
        cid = self.customer(i)
        out = []
        for e in range(self._ends[i - 1] if i else 0, self._ends[i]):
            where = self._where[e]
            topic, partition = self._parts[where >> 16]
            out.append(EventRef(topic, partition, self._offsets[e], cid,
                                self._names[where & 0xFFFF]))
        return out


def failed_items(items: JobItems, status: JobStatus) -> list[tuple[int, dict[str, Any]]]:
    """Item indexes a job status reports failed, with Gameball's error, in item order.

    By position when given (and its customer agrees), else by customer id: a failure
    naming a customer with several items in the batch fails all of them (dead-lettering
    a processed event is recoverable, losing one is not). A `failed` job that names no
    item fails every item: none can be trusted as processed.
    """
    by_customer: dict[str, list[int]] = {}
    if status.failed_items:
        for i in range(len(items)):
            by_customer.setdefault(items.customer(i), []).append(i)
    chosen: dict[int, dict[str, Any]] = {}
    for failure in status.failed_items:
        idx, cid = failure.position, failure.customer_id
        if idx is not None and 0 <= idx < len(items) and cid in (None, items.customer(idx)):
            chosen.setdefault(idx, failure.error)
            continue
        for i in by_customer.get(cid or "", []):
            chosen.setdefault(i, failure.error)
    if not chosen and status.state == "failed":
        error = {"message": "batch job failed without item details"}
        return [(i, error) for i in range(len(items))]
    return sorted(chosen.items())
