"""The re-drive's delivery loop: the same core as `run` (`DeliveryCore`, sender, job
tracker, dead-letter producer), wired for one pass over the dead-letter topic.

Commit protocol (as the pipeline's, docs/core.md): a copy is done when every event it
produced was accepted, or when its copy written back to the dead-letter topic
(attempt + 1) was acknowledged by the broker; the group's offset of a partition is
committed up to its lowest copy not done (a segment boundary). What is not done at a
stop is read again by the next run. Rows carry the mapped `Event` as payload; its
`record` is the copy (`letters.Letter`), whose `outstanding` counts the events left for
the summary's sent / failed-again counts.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, TopicPartition

from connector.core import CoreSettings, DeliveryCore, Item, Row, Run
from connector.core import Letter as Ticket
from connector.deadletter import DeadLetters, error_headers
from connector.gameball import Action, Answer, GameballClient, Verdict, classify
from connector.job_letters import JobLetters
from connector.jobreads import JobId
from connector.jobs import EventRef, JobTracker
from connector.letters import ATTEMPT, Letter
from connector.logs import RateLimitedLog
from connector.ratelimit import RateLimiter, Window
from connector.records import Event, RecordError, RecordLike, Skip
from connector.refetch import RecordFetcher
from connector.sender import Delivery, Sender, events_in, offset_ranges

if TYPE_CHECKING:
    from connector.redrive import Redrive

log = logging.getLogger("connector.redrive")
COMMIT_EVERY_S = 1.0
JOBS_WAIT_S = 120.0  # at the end: how long tracked batch jobs may still take


class _Hooks:
    """Sender callbacks -> logs (the re-drive serves no metrics)."""

    def __init__(self) -> None:
        self._retry_log = RateLimitedLog(log, 10.0)

    def request_done(self, status: int | None, seconds: float, items: int) -> None:
        pass

    def retrying(self, reason: str, answer: Answer, items: Sequence[Item]) -> None:
        self._retry_log.warn(reason, "retrying Gameball requests", reason=reason,
                             answer=answer.describe())

    def possible_duplicate(self, items: Sequence[Item]) -> None:
        log.warning("answer lost after sending: a retry may duplicate these events",
                    extra={"events": events_in(items), "copies": offset_ranges(items)})

    def rate_limited(self, seconds: float) -> None:
        pass

    def halted(self, answer: Answer, verdict: Verdict) -> None:
        self._retry_log.warn("halt", "Gameball refuses every request: check the credentials",
                             cause=verdict.reason, answer=answer.describe())

    def recovered(self) -> None:
        log.info("Gameball accepts the credentials again")


def _letter(ev: Event) -> Letter:
    record = ev.record
    assert isinstance(record, Letter)  # the re-drive maps only letters
    return record


class Delivering:
    """Owns the loop thread's state for one re-drive."""

    def __init__(self, redrive: Redrive, consumer: Consumer) -> None:
        s = redrive.settings
        self._r = redrive
        self._consumer = consumer
        self._s = s
        endpoint = s.gameball.endpoint
        b = s.batch
        self._core = DeliveryCore(CoreSettings(
            b.max_items if endpoint == "batch" else 1, b.linger_ms / 1000, b.max_in_flight,
            b.max_buffered_events, b.resend_limit))
        self._parts: set[tuple[str, int]] = set()  # dead-letter partitions read
        rl = s.gameball.rate_limit
        limiter = (RateLimiter([Window(rl.per_second, 1.0), Window(rl.per_30_seconds, 30.0)],
                               rl.margin_ms / 1000) if rl.enabled else None)
        tracking = s.gameball.job_tracking
        self._client = GameballClient(
            s.gameball, pool_size=s.batch.max_in_flight + tracking.max_concurrent)
        self._abandon = threading.Event()
        self._sender = Sender(self._client, limiter, s.gameball.retry, _Hooks(), self._abandon,
                              time.monotonic, s.batch.max_bytes)
        self._executor = ThreadPoolExecutor(s.batch.max_in_flight, "redrive-sender")
        self._done: queue.SimpleQueue[Future[Delivery]] = queue.SimpleQueue()
        self._dlq = DeadLetters(s.model_copy(update={
            "dead_letter": s.dead_letter.model_copy(update={"topic": redrive.topic})}))
        self._dlq_pending = 0
        # Job tracking keeps only where each copy is; a failed item's copy is re-read.
        self._job_failures = JobLetters(RecordFetcher(redrive.consumer_config()),
                                        self._job_failed)
        self._jobs = (JobTracker(tracking, self._client.job_status, lambda *_: None,
                                 self._job_failures.failed)
                      if endpoint == "batch" and tracking.enabled else None)

    # --- the loop ---------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        r = self._r
        core = self._core
        next_commit = time.monotonic() + COMMIT_EVERY_S
        try:
            while not stop.is_set():
                now = time.monotonic()
                self._dispatch(now, force=r.finished())
                if core.awaiting_confirmation():  # the crash budget waits for a commit
                    self._commit()
                    self._dispatch(time.monotonic(), force=r.finished())
                if not core.may_read() or r.finished():
                    self._collect(wait=0.05)
                else:
                    timeout = 0.05 if core.in_flight else 0.5
                    due = core.due_in(now)
                    if due is not None:
                        timeout = max(0.001, min(timeout, due))
                    letters = r.letters(self._consumer, timeout)
                    if letters:
                        self._ingest(letters)
                    self._collect()
                self._dlq.poll()
                self._write_back_job_failures()
                if time.monotonic() >= next_commit:
                    self._commit()
                    next_commit = time.monotonic() + COMMIT_EVERY_S
                if r.finished() and self._idle():
                    break
        finally:
            self._shutdown(stopped=stop.is_set())

    def _idle(self) -> bool:
        return (self._core.is_idle() and self._dlq_pending == 0
                and self._job_failures.idle
                and (self._jobs is None or self._jobs.tracked() == 0))

    def _ingest(self, letters: list[Letter]) -> None:
        """Map consumed copies into the core: one `Run` per dead-letter partition."""
        parts: dict[tuple[str, int], tuple[list[Row], list[int], list[int]]] = {}
        failures: dict[tuple[str, int, int], tuple[Letter, RecordError]] = {}
        for letter in letters:
            key = (letter.dlq_topic, letter.dlq_partition)
            offset = letter.dlq_offset
            rows, skipped, failed = parts.setdefault(key, ([], [], []))
            if self._r.skip_reason(letter) is not None:
                skipped.append(offset)
                continue
            result = self._r.mapper.map(letter)
            if isinstance(result, Event):
                result = [result]
            if isinstance(result, list) and result:
                events = letter.resend(result)
                if not events:  # the rejected event's name is no longer in the mapping
                    self._r.skipped["mapping:event_renamed"] += 1
                    skipped.append(offset)
                    continue
                letter.outstanding = len(events)
                rows.extend((offset, ev.customer_id, ev.name, ev) for ev in events)
            elif isinstance(result, RecordError):
                letter.outstanding = 1
                failed.append(offset)
                failures[(*key, offset)] = (letter, result)
            else:  # Skip (or no event): the current mapping does not want it any more
                reason = result.reason if isinstance(result, Skip) else "no_event"
                self._r.skipped[f"mapping:{reason}"] += 1
                skipped.append(offset)
        self._parts.update(parts)
        runs = [Run(t, p, rows, skipped, failed) for (t, p), (rows, skipped, failed)
                in parts.items()]
        for ticket in self._core.ingest(runs, time.monotonic()):
            letter, err = failures[(ticket.topic, ticket.partition, ticket.offset)]
            self._write_back(letter, err.stage, err.reason, err.detail, err.route, {},
                             self._acker(ticket, letter))

    def _acker(self, ticket: Ticket, letter: Letter) -> Callable[[], None]:
        """The write-back of `ticket`'s event was acknowledged: done in the core too."""
        core = self._core

        def done() -> None:
            core.dead_lettered(ticket)
            self._letter_done(letter)

        return done

    def _dispatch(self, now: float, force: bool) -> None:
        while (batch := self._core.next_batch(now, force)) is not None:
            self._executor.submit(self._sender.deliver, batch).add_done_callback(self._done.put)

    def _collect(self, wait: float = 0.0) -> None:
        try:
            fut = self._done.get(timeout=wait) if wait > 0 else self._done.get_nowait()
        except queue.Empty:
            return
        while True:
            self._completed(fut.result())
            try:
                fut = self._done.get_nowait()
            except queue.Empty:
                return

    def _completed(self, delivery: Delivery) -> None:
        for items, job_id in delivery.accepted:
            for item in items:
                for _seg, row in item.entries:
                    self._letter_done(_letter(row[3]))
            if job_id is not None:
                self._track(job_id, items)
        out = self._core.complete(delivery.batch, time.monotonic(),
                                  [*delivery.rejected, *delivery.failed], delivery.abandoned)
        for ticket in out.letters:
            ev: Event = ticket.payload
            done = self._acker(ticket, _letter(ev))
            if isinstance(ticket.cause, RecordError):  # could not be encoded, or a defect
                err = ticket.cause
                self._write_back(_letter(ev), err.stage, err.reason, err.detail, err.route,
                                 {"customerId": ev.customer_id, "event": ev.name}, done)
            else:
                assert isinstance(ticket.cause, Answer)
                self._rejected(ev, ticket.cause, done)
        if delivery.abandoned:
            log.warning("delivery abandoned at stop; the next run reads it again",
                        extra={"events": events_in(delivery.abandoned)})

    def _track(self, job_id: Any, items: list[Item]) -> None:
        """Hand an accepted request to the job tracker: the re-drive's one call to it.
        Refs name each copy on the dead-letter topic (its segment and row)."""
        if self._jobs is not None:
            self._jobs.submit(job_id, [(item.customer_id, item.refs()) for item in items])

    def _letter_done(self, letter: Letter) -> None:
        """One event (or the write-back) of `letter` is done (its offset is the core's)."""
        letter.outstanding -= 1
        if letter.outstanding == 0:
            self._r.counts["failed_again" if letter.failed else "sent"] += 1

    def _rejected(self, ev: Event, answer: Answer, done: Any) -> None:
        letter = _letter(ev)
        # One copy per failed event, naming it: a later re-drive sends only that event.
        body = answer.body or {}
        reason = "rejected" if classify(answer).action is Action.REJECT else "retries_exhausted"
        extra = {"status": answer.status, "code": body.get("code"), "type": body.get("type"),
                 "requestId": answer.request_id, "customerId": ev.customer_id,
                 "event": ev.name}
        self._write_back(letter, "gameball", reason, str(body.get("message") or
                         answer.describe()), None, extra, done)

    def _write_back(self, letter: Letter, stage: str, reason: str, detail: str,
                    route: str | None, extra: dict[str, Any], done: Any) -> None:
        """Copy the original record back to the dead-letter topic, attempt + 1."""
        letter.failed = True
        headers = error_headers(letter, stage, reason, detail, route,
                                extra={**extra, ATTEMPT: letter.attempt + 1})
        self._dlq_pending += 1

        def delivered() -> None:  # failed writes are retried by the producer, with backoff
            self._dlq_pending -= 1
            done()

        self._dlq.send(letter, headers, delivered)

    def _write_back_job_failures(self) -> None:
        self._job_failures.poll()

    def _job_failed(self, ref: EventRef, job_id: JobId, error: dict[str, Any],
                    copy: RecordLike | None, why: str | None) -> None:
        """Items an accepted job failed: their copies are done already; write them back
        (re-read from the dead-letter topic; one that cannot be is logged and counted)."""
        self._r.counts["job_failed"] += 1
        if copy is None:
            self._r.counts["job_failed_unreadable"] += 1
            log.error("failed job item: its copy could not be re-read", extra={
                "topic": ref.topic, "partition": ref.partition, "offset": ref.offset,
                "job_id": job_id, "reason": why})
            return
        extra = {"jobId": job_id, "code": error.get("code"), "type": error.get("type"),
                 "customerId": ref.customer_id, "event": ref.name}
        self._write_back(Letter.read(copy), "job", "job_failed",
                         str(error.get("message") or error), None, extra, lambda: None)

    def _commit(self) -> None:
        core = self._core
        offsets = core.commits(unconfirmed=True)
        if not offsets:
            return
        answer = self._consumer.commit(
            offsets=[TopicPartition(t, p, o) for t, p, o in offsets], asynchronous=False)
        stored = {(tp.topic, tp.partition) for tp in answer or [] if tp.error is None}
        for t, p, o in offsets:
            if (t, p) in stored:
                core.confirmed(t, p, o)
            else:
                core.commit_failed(t, p)

    def _shutdown(self, stopped: bool) -> None:
        """Finish what is under way (bounded by shutdown.drain_seconds after a signal),
        write back job failures, commit, close."""
        core = self._core
        deadline = time.monotonic() + self._s.shutdown.drain_seconds
        while core.in_flight or core.waiting:
            if stopped and time.monotonic() >= deadline:
                self._abandon.set()
                # waiting events stay undone: no commit passes them, the next run reads them
                core.discard_past(dict.fromkeys(self._parts, -1))
            elif core.awaiting_confirmation():
                self._commit()
            self._dispatch(time.monotonic(), force=True)
            self._collect(wait=0.05)
            self._dlq.poll()
        self._executor.shutdown(wait=True)
        if self._jobs is not None:
            until = time.monotonic() + (0 if stopped else JOBS_WAIT_S)
            while self._jobs.tracked() and time.monotonic() < until:
                self._dlq.poll()
                self._write_back_job_failures()
                time.sleep(0.1)
            self._jobs.close(2.0)
        self._job_failures.close(10.0)
        left = self._dlq.flush(30.0)
        if left:
            log.error("dead-letter copies not acknowledged", extra={"records": left})
        self._commit()
        self._client.close()
