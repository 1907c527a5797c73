"""What a tracked batch job keeps of its items, and which of them a job status failed.

The job tracker (connector/jobs.py) keeps, per accepted item, only what dead-lettering
a failed item needs: the customer id and, per event, (topic, partition, offset, event
name). `JobItems` packs them into a few arrays and one string per job (about 37 bytes
an event instead of the event, its metadata and its Kafka message); `failed_items`
matches a job status's failures back to them and `report_failures` logs them (under
the tracker's logger) and hands each event to the tracker's hook. No I/O, no threads.
docs/metrics.md ("Job tracking").
"""

from __future__ import annotations

import logging
from array import array
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from connector.jobreads import JobId
from connector.jobstatus import JobStatus

log = logging.getLogger("connector.jobs")
# Per-item log lines per job; the rest are summarised (they are all dead-lettered).
LOGGED_ITEMS_PER_JOB = 20

# Why a failed item's record could not be re-read (connector/refetch.py; the label of
# `job_records_unavailable_total`).
DELETED = "deleted"  # below the partition's first offset: retention removed it
NOT_IN_LOG = "not_in_log"  # skipped by the log (compacted, aborted, deleted meanwhile)
TIMED_OUT = "timed_out"  # not read in `tries` passes of `timeout` s (past the end, gone)
CLOSED = "closed"  # still wanted when the fetcher was closed
UNAVAILABLE_REASONS = (DELETED, NOT_IN_LOG, TIMED_OUT, CLOSED)

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
        # Consecutive events mostly share a partition and a name: look each up once a run.
        last_topic: str | None = None
        last_partition = last_where = -1
        last_name: str | None = None
        p = n = 0
        add_offset, add_where = offsets.append, where.append
        for customer_id, refs in items:
            for topic, partition, offset, name in refs:
                if partition != last_partition or topic != last_topic:
                    p = parts.get((topic, partition), -1)
                    if p < 0:
                        p = parts[(topic, partition)] = len(parts)
                    last_topic, last_partition = topic, partition
                    last_where = -1
                if name != last_name or last_where < 0:
                    n = names.get(name, -1)
                    if n < 0:
                        n = names[name] = len(names)
                    last_name = name
                    last_where = p << 16 | n
                add_offset(offset)
                add_where(last_where)
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


def report_failures(job_id: JobId, items: JobItems, status: JobStatus,
                    on_failed_item: Callable[[EventRef, JobId, dict[str, Any]], None]) -> int:
    """A finished job (the tracker's workers): log its failed items and call
    `on_failed_item` for each of their events; returns the failed item count."""
    failures = failed_items(items, status)
    failed_count = max(status.failed_count, len(failures))
    if failed_count or status.state != "completed":
        log.warning("batch job finished with failures", extra={
            "job_id": job_id, "state": status.state, "items": len(items),
            "failed_items": failed_count,
            "unmatched_failures": max(0, status.failed_count - len(failures))})
    for n, (i, error) in enumerate(failures):
        refs = items.refs(i)
        if n < LOGGED_ITEMS_PER_JOB:
            log.warning("batch job item failed", extra={
                "job_id": job_id, "customer_id": items.customer(i),
                "events": sorted(ref.name for ref in refs), "gameball_error": error})
        for ref in refs:
            try:
                on_failed_item(ref, job_id, error)
            except Exception:
                log.exception("on_failed_item hook failed", extra={"job_id": job_id})
    if len(failures) > LOGGED_ITEMS_PER_JOB:
        log.warning("more failed items in this job not logged one by one", extra={
            "job_id": job_id, "not_logged": len(failures) - LOGGED_ITEMS_PER_JOB})
    return failed_count
