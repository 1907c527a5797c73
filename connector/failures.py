"""Records that did not become delivered events, on their way to `dead_letter.on_error`.

Three kinds, one path (`BadRecords.handle`, which dead-letters, holds the partition, or
drops as configured): a record the mapper or the sender could not turn into an event
(`record_failed`), an event Gameball rejected (`gameball_rejected`), and an item of an
accepted batch job that the job reports failed (`job_item_failed`, from the tracker's
threads, queued and copied on the loop thread by `dead_letter_job_failures`). Each gets
the `gameball.error.*` headers docs/delivery.md lists.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from typing import Any

from connector.badrecords import BadRecords
from connector.deadletter import error_headers
from connector.gameball import Action, Answer, classify
from connector.logs import RateLimitedLog
from connector.records import Event, RecordError, RecordLike
from connector.telemetry import Metrics

log = logging.getLogger("connector.pipeline")


class Failures:
    """Built by the factory; every method but `job_done`/`job_item_failed` runs on the
    loop thread."""

    def __init__(self, bad: BadRecords, metrics: Metrics) -> None:
        self._bad = bad
        self._m = metrics
        self.log = RateLimitedLog(log, 60.0)
        # Batch-job outcomes come from the tracker's threads; the loop owns the
        # dead-letter producer and its pending count.
        self._job_failures: queue.SimpleQueue[tuple[Event, int | str, dict[str, Any]]] = (
            queue.SimpleQueue()
        )

    def record_failed(self, record: RecordLike, err: RecordError,
                      done: Callable[[], None]) -> None:
        """The mapper (or the sender's encoder) could not make an event of `record`."""
        topic = str(record.topic())
        self._m.records_failed.labels(topic, err.stage, err.reason).inc()
        self.log.warn(
            f"bad:{topic}:{err.stage}:{err.reason}", "record cannot become an event",
            topic=topic, partition=record.partition(), offset=record.offset(),
            stage=err.stage, reason=err.reason, detail=err.detail, route=err.route,
        )
        headers = error_headers(record, err.stage, err.reason, err.detail, err.route)
        self._bad.handle(record, headers, done)

    def gameball_rejected(self, ev: Event, answer: Answer, done: Callable[[], None]) -> None:
        """Gameball's last answer for `ev`'s item was a rejection, or retries ran out."""
        body = answer.body or {}
        # The data was to blame only if Gameball's last answer says so; anything else
        # (408, 429, 5xx, no answer) means `retry.max_attempts` ran out.
        reason = "rejected" if classify(answer).action is Action.REJECT else "retries_exhausted"
        headers = error_headers(
            ev.record,
            "gameball",
            reason,
            str(body.get("message") or answer.describe()),
            extra={
                "status": answer.status,
                "code": body.get("code"),
                "type": body.get("type"),
                "requestId": answer.request_id,
                "customerId": ev.customer_id,
                "event": ev.name,
            },
        )
        self._bad.handle(ev.record, headers, done)

    def job_done(self, status: str, failed: int) -> None:
        """Job tracker threads: a tracked job ended."""
        self._m.jobs.labels(status).inc()
        if failed:
            self._m.job_items_failed.inc(failed)

    def job_item_failed(self, ev: Event, job_id: int | str, error: dict[str, Any]) -> None:
        """Job tracker threads: Gameball failed an item of an accepted job."""
        self._job_failures.put((ev, job_id, error))

    def dead_letter_job_failures(self) -> None:
        """Loop thread: copy failed job items to the dead-letter topic. Their offsets are
        committed already (the batch was accepted): the copy is all that is left."""
        while True:
            try:
                ev, job_id, error = self._job_failures.get_nowait()
            except queue.Empty:
                return
            headers = error_headers(
                ev.record,
                "job",
                "job_failed",
                str(error.get("message") or error),
                extra={
                    "jobId": job_id,
                    "code": error.get("code"),
                    "type": error.get("type"),
                    "customerId": ev.customer_id,
                    "event": ev.name,
                },
            )
            self._bad.handle(ev.record, headers, lambda: None, committed=True)
