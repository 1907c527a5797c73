"""Records that did not become delivered events, on their way to `dead_letter.on_error`.

Two kinds, one path (`BadRecords.handle`, which dead-letters, holds the partition, or
drops as configured): a record the mapper or the sender could not turn into an event
(`record_failed`), and an event Gameball rejected (`gameball_rejected`). Each gets the
`gameball.error.*` headers docs/delivery.md lists. Items an accepted batch job failed
take the same path from connector/job_letters.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from connector.badrecords import BadRecords
from connector.deadletter import error_headers
from connector.gameball import Action, Answer, classify
from connector.logs import RateLimitedLog
from connector.records import Event, RecordError, RecordLike
from connector.telemetry import Metrics

log = logging.getLogger("connector.pipeline")


class Failures:
    """Built by the factory; runs on the loop thread."""

    def __init__(self, bad: BadRecords, metrics: Metrics) -> None:
        self._bad = bad
        self._m = metrics
        self.log = RateLimitedLog(log, 60.0)

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
