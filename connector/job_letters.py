"""Dead-letter copies of records re-read by offset: the items an accepted batch job
failed, and the events Gameball rejected (the pipeline keeps no record in memory).

The job tracker (connector/jobs.py) reports each event of a failed item as an
`EventRef` from its worker threads (`failed`). On the loop thread `poll()` asks the
record fetcher (connector/refetch.py) for the record at that offset and hands what
comes back to `write`: the pipeline's `dead_letter_job_failure` copies it to the
dead-letter topic with the `job_failed` headers. The item's offset was committed when
its batch was accepted, so the copy is all that is left of it. A record that cannot
be re-read (retention deleted it, ...) is written as a reference copy instead, counted
and logged: docs/delivery.md ("Faults and what the connector does"). A rejected event's
record is asked for by the loop itself (`reread`, from connector/failures.py), with its
own answer; one fetcher serves both.
"""

from __future__ import annotations

import functools
import logging
import queue
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import orjson

from connector.badrecords import BadRecords
from connector.config import Settings
from connector.core import Item
from connector.deadletter import REPLACED, H, error_headers
from connector.jobitems import CLOSED
from connector.jobreads import JobId
from connector.jobs import EventRef, Fetch, ItemRefs, JobTracker
from connector.logs import RateLimitedLog
from connector.records import RecordLike, SourceRecord
from connector.refetch import RecordFetcher, Where, fetcher_config
from connector.telemetry import Metrics

log = logging.getLogger("connector.job_letters")

Failure = tuple[EventRef, JobId, "dict[str, Any]"]
# Called on the loop thread with the record re-read, or None and why it could not be.
Reread = Callable[[RecordLike | None, str | None], None]
# Called on the loop thread with a failure and the record re-read for it, or None and
# why it could not be read.
Write = Callable[[EventRef, JobId, "dict[str, Any]", RecordLike | None, str | None], None]
UNAVAILABLE = H + "unavailable"  # why a reference copy replaced the record
CLOSE_WAIT_S = 2.0  # at shutdown: at most this long for records still being re-read


def job_items(items: Sequence[Item]) -> Iterator[ItemRefs]:
    """What the tracker keeps of an accepted batch's core items (`Pipeline.completed`),
    made only if the job is tracked: each item's customer and `refs()`."""
    for item in items:
        yield item.customer_id, item.refs()


def job_tracking(settings: Settings, batch_endpoint: bool, fetch: Fetch, bad: BadRecords,
                 metrics: Metrics) -> tuple[JobLetters, JobTracker | None]:
    """The pipeline's job tracking: the tracker (None when off or on the `events`
    endpoint), and the letters that dead-letter its failed items."""
    letters = JobLetters(RecordFetcher(fetcher_config(settings)),
                         dead_letter_job_failure(bad, metrics))
    tracking = settings.gameball.job_tracking
    if not (batch_endpoint and tracking.enabled):
        return letters, None
    return letters, JobTracker(tracking, fetch, job_outcome(metrics), letters.failed)


def job_outcome(metrics: Metrics) -> Callable[[str, int], None]:
    """The tracker's `on_done` (called from its threads): jobs by outcome, failed items."""

    def done(status: str, failed: int) -> None:
        metrics.jobs.labels(status).inc()
        if failed:
            metrics.job_items_failed.inc(failed)

    return done


class JobLetters:
    """Built by `job_tracking` for the pipeline (and by the re-drive); `failed` is the
    tracker's `on_failed_item` hook, the rest runs on the loop thread. Without failures
    it costs one empty-queue check a turn and starts no thread."""

    def __init__(self, fetcher: RecordFetcher, write: Write) -> None:
        self._fetcher = fetcher
        self._write = write
        self._reports: queue.SimpleQueue[Failure] = queue.SimpleQueue()
        self._waiting: dict[Where, list[Reread]] = {}  # asked of the fetcher
        self._unasked: deque[Where] = deque()  # the fetcher's queue was full

    def failed(self, ref: EventRef, job_id: JobId, error: dict[str, Any]) -> None:
        """Job tracker threads: Gameball failed the item this event was in."""
        self._reports.put((ref, job_id, error))

    def reread(self, where: Where, answer: Reread) -> None:
        """Loop thread: read the record at `where` (topic, partition, offset) again and
        hand it to `answer` in a later `poll` (or None and why it could not be read)."""
        waiting = self._waiting.get(where)
        if waiting is None:
            self._waiting[where] = [answer]
            self._unasked.append(where)
        else:  # several events of one record, or one record in several failed jobs
            waiting.append(answer)

    @property
    def idle(self) -> bool:
        """Nothing reported and not yet written (the re-drive waits for this)."""
        return self._reports.empty() and not self._waiting

    def poll(self) -> int:
        """Loop thread, every turn: ask for newly failed records, write those fetched;
        returns how many copies were handed to `write`. Never blocks."""
        if not self._waiting and self._reports.empty():
            return 0
        while True:
            try:
                failure = self._reports.get_nowait()
            except queue.Empty:
                break
            ref, job_id, error = failure
            self.reread((ref.topic, ref.partition, ref.offset),
                        functools.partial(self._write, ref, job_id, error))
        while self._unasked and self._fetcher.want(*self._unasked[0]):
            self._unasked.popleft()
        written = 0
        for fetched in self._fetcher.poll():
            written += self._answer(fetched.where, fetched.record, fetched.reason)
        return written

    def close(self, timeout: float) -> None:
        """At shutdown (after the tracker's close): wait up to `timeout` seconds for the
        records still wanted, then answer the rest with CLOSED (a job item's is written
        as a reference copy; a rejected event's is left to the partition's next owner)."""
        deadline = time.monotonic() + timeout
        self.poll()
        while self._waiting and not self._unasked and time.monotonic() < deadline:
            time.sleep(0.05)  # the fetcher's thread is reading
            self.poll()
        for fetched in self._fetcher.close(max(0.0, deadline - time.monotonic())):
            self._answer(fetched.where, fetched.record, fetched.reason)
        for where in list(self._waiting):
            self._answer(where, None, CLOSED)

    def _answer(self, where: Where, record: RecordLike | None, reason: str | None) -> int:
        answers = self._waiting.pop(where, [])
        for answer in answers:
            try:
                answer(record, reason)
            except Exception:  # one bad copy must not stop the others
                log.exception("a re-read record could not be dead-lettered",
                              extra={"topic": where[0], "partition": where[1],
                                     "offset": where[2]})
        return len(answers)


def reference_record(ref: EventRef, **more: Any) -> SourceRecord:
    """Stands in for a record that could not be re-read: where it was and what it was
    (`more`: what else is known of it, e.g. a rejected event's metadata)."""
    value = orjson.dumps({"topic": ref.topic, "partition": ref.partition,
                          "offset": ref.offset, "customerId": ref.customer_id,
                          "event": ref.name, **more})
    return SourceRecord(ref.topic, value, partition_=ref.partition, offset_=ref.offset)


def unavailable_headers(reason: str) -> list[tuple[str, bytes]]:
    """The headers that mark a reference copy, before the copy's own."""
    return [(REPLACED, b"unavailable"), (UNAVAILABLE, reason.encode())]


def job_failed_headers(record: RecordLike, ref: EventRef, job_id: JobId,
                       error: dict[str, Any]) -> list[tuple[str, bytes]]:
    """The headers of a failed job item's copy (pure)."""
    return error_headers(
        record, "job", "job_failed", str(error.get("message") or error),
        extra={"jobId": job_id, "code": error.get("code"), "type": error.get("type"),
               "customerId": ref.customer_id, "event": ref.name},
    )


def dead_letter_job_failure(bad: BadRecords, metrics: Metrics) -> Write:
    """The pipeline's `Write`: the record (or a reference to it) through `dead_letter.
    on_error` with `committed=True`; an unreadable record is counted and logged."""
    quiet = RateLimitedLog(log, 10.0)

    def write(ref: EventRef, job_id: JobId, error: dict[str, Any], record: RecordLike | None,
              reason: str | None) -> None:
        if record is not None:
            bad.handle(record, job_failed_headers(record, ref, job_id, error), _nothing,
                       committed=True)
            return
        why = reason or "unknown"
        metrics.job_records_unavailable.labels(why).inc()
        quiet.warn(f"unavailable:{why}", "failed job item: its record could not be re-read; "
                   "dead-lettered as a reference (docs/delivery.md)",
                   topic=ref.topic, partition=ref.partition, offset=ref.offset,
                   customer_id=ref.customer_id, job_id=job_id, reason=why)
        stand_in = reference_record(ref)
        headers = [*unavailable_headers(why), *job_failed_headers(stand_in, ref, job_id, error)]
        bad.handle(stand_in, headers, _nothing, committed=True)

    return write


def _nothing() -> None:
    """A job item's offset is committed already: its copy acks nothing."""
