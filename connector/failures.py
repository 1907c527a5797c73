"""Records that did not become delivered events, on their way to `dead_letter.on_error`.

Two kinds, one path (`BadRecords.handle`, which dead-letters, holds the partition, or
drops as configured): a record the mapper could not turn into an event
(`record_failed`, with the consumed message), and an event of a finished delivery,
rejected by Gameball or failed by the sender (`letter`). The pipeline keeps no message
for a waiting event, so a letter's record is read again by offset for its copy
(connector/job_letters.py, `reread`); `stop` and `drop` need only where it is. Each gets
the `gameball.error.*` headers docs/delivery.md lists. Items an accepted batch job
failed take the same path from connector/job_letters.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from connector.badrecords import BadRecords
from connector.core import Letter
from connector.deadletter import error_headers
from connector.event_json import event_metadata
from connector.gameball import Action, Answer, classify
from connector.job_letters import JobLetters, reference_record, unavailable_headers
from connector.jobitems import CLOSED, EventRef
from connector.logs import RateLimitedLog
from connector.records import RecordError, RecordLike, SourceRecord
from connector.telemetry import Metrics

log = logging.getLogger("connector.pipeline")


class Failures:
    """Built by the factory; runs on the loop thread."""

    def __init__(self, bad: BadRecords, metrics: Metrics, letters: JobLetters) -> None:
        self._bad = bad
        self._m = metrics
        self._letters = letters
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

    def letter(self, letter: Letter, done: Callable[[], None]) -> None:
        """An event of a finished delivery that was not accepted: Gameball rejected it
        (`letter.cause` is its Answer) or the sender failed on it (a RecordError). Its
        record goes to `dead_letter.on_error` once re-read; `done` acks it in the core."""
        if self._bad.policy != "dead_letter":  # hold or drop: where it is is enough
            self._write(letter, _where(letter), done)
            return

        def reread(record: RecordLike | None, reason: str | None) -> None:
            if letter.segment.dropped:  # revoked meanwhile: its next owner meets it again
                done()
            elif record is not None:
                self._write(letter, record, done)
            elif reason == CLOSED:  # shutdown: not acked, so not committed; read again
                log.warning("rejected event left for the partition's next owner: its "
                            "record was still being re-read at shutdown",
                            extra={"topic": letter.topic, "partition": letter.partition,
                                   "offset": letter.offset})
            else:
                self._m.dead_letter_replaced.inc()
                self.log.warn(f"unavailable:{reason}", "rejected event: its record could "
                              "not be re-read; dead-lettered as a reference (docs/delivery.md)",
                              topic=letter.topic, partition=letter.partition,
                              offset=letter.offset, reason=reason)
                self._write(letter, _reference(letter), done, unavailable_headers(str(reason)))

        self._letters.reread((letter.topic, letter.partition, letter.offset), reread)

    def _write(self, letter: Letter, record: RecordLike, done: Callable[[], None],
               first: list[tuple[str, bytes]] | None = None) -> None:
        cause = letter.cause
        if isinstance(cause, RecordError):  # the sender failed on it
            self.record_failed(record, cause, done)
            return
        assert isinstance(cause, Answer)
        body = cause.body or {}
        # The data was to blame only if Gameball's last answer says so; anything else
        # (408, 429, 5xx, no answer) means `retry.max_attempts` ran out.
        reason = "rejected" if classify(cause).action is Action.REJECT else "retries_exhausted"
        headers = error_headers(
            record,
            "gameball",
            reason,
            str(body.get("message") or cause.describe()),
            extra={
                "status": cause.status,
                "code": body.get("code"),
                "type": body.get("type"),
                "requestId": cause.request_id,
                "customerId": letter.customer_id,
                "event": letter.name,
            },
        )
        self._bad.handle(record, [*(first or []), *headers], done)


def _where(letter: Letter) -> SourceRecord:
    """A record that says only where the letter's record is (the `stop` and `drop`
    policies read nothing else of it)."""
    return SourceRecord(letter.topic, None, partition_=letter.partition, offset_=letter.offset)


def _reference(letter: Letter) -> SourceRecord:
    """Stands in for a rejected event's record that could not be re-read: where it was
    and the event as it was sent (the row's payload: connector/event_json.py)."""
    name = str(letter.name)
    ref = EventRef(letter.topic, letter.partition, letter.offset, str(letter.customer_id),
                   name)
    return reference_record(ref, metadata=event_metadata(letter.payload, name))
