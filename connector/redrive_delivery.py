"""The re-drive's delivery loop: the same core as `run` (window, sender, offset tracker,
job tracker, dead-letter producer), wired for one pass over the dead-letter topic.

Commit protocol (as the pipeline's, docs/architecture.md): a copy is done when every
event it produced was accepted, or when its copy written back to the dead-letter topic
(attempt + 1) was acknowledged by the broker; the group's offset of a partition is
committed up to its lowest copy not done. What is not done at a stop is read again by
the next run.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, TopicPartition

from connector.deadletter import DeadLetters, error_headers
from connector.gameball import Action, Answer, GameballClient, Verdict, classify
from connector.job_letters import JobLetters
from connector.jobreads import JobId
from connector.jobs import EventRef, JobTracker
from connector.letters import ATTEMPT, Letter
from connector.logs import RateLimitedLog
from connector.offsets import OffsetTracker
from connector.ratelimit import RateLimiter, Window
from connector.records import Batch, Event, RecordError, RecordLike, Skip
from connector.refetch import RecordFetcher
from connector.sender import Delivery, Sender
from connector.window import Windower

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

    def retrying(self, reason: str, answer: Answer, batch: Batch) -> None:
        self._retry_log.warn(reason, "retrying Gameball requests", reason=reason,
                             answer=answer.describe())

    def possible_duplicate(self, batch: Batch) -> None:
        log.warning("answer lost after sending: a retry may duplicate these events",
                    extra={"events": batch.event_count})

    def rate_limited(self, seconds: float) -> None:
        pass

    def halted(self, answer: Answer, verdict: Verdict) -> None:
        self._retry_log.warn("halt", "Gameball refuses every request: check the credentials",
                             cause=verdict.reason, answer=answer.describe())

    def recovered(self) -> None:
        log.info("Gameball accepts the credentials again")


def _where(letter: Letter) -> tuple[str, int, int]:
    return letter.dlq_topic, letter.dlq_partition, letter.dlq_offset


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
        max_items = s.batch.max_items if endpoint == "batch" else 1
        self._window = Windower(max_items, s.batch.linger_ms / 1000)
        self._tracker = OffsetTracker()
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
        self._inflight = 0
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
        next_commit = time.monotonic() + COMMIT_EVERY_S
        try:
            while not stop.is_set():
                now = time.monotonic()
                self._dispatch(now, force=r.finished())
                held = self._window.full() and self._inflight >= self._s.batch.max_in_flight
                held = held or self._window.buffered >= self._s.batch.max_buffered_events
                if held or r.finished():
                    self._collect(wait=0.05)
                else:
                    timeout = 0.05 if self._inflight else 0.5
                    for letter in r.letters(self._consumer, timeout):
                        self._ingest(letter)
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
        return (self._inflight == 0 and self._window.is_empty() and self._dlq_pending == 0
                and self._job_failures.idle
                and (self._jobs is None or self._jobs.tracked() == 0))

    def _ingest(self, letter: Letter) -> None:
        part = self._tracker.get(letter.dlq_topic, letter.dlq_partition)
        if self._r.skip_reason(letter) is not None:
            part.read(letter.dlq_offset, 0)
            return
        result = self._r.mapper.map(letter)
        if isinstance(result, Event):
            result = [result]
        if isinstance(result, list) and result:
            result = letter.resend(result)
            if not result:  # the rejected event's name is no longer in the mapping
                self._r.skipped["mapping:event_renamed"] += 1
                part.read(letter.dlq_offset, 0)
                return
            letter.outstanding = len(result)
            part.read(letter.dlq_offset, len(result))
            for ev in result:
                ev.ticket = part
            self._window.add_many(result, time.monotonic())
        elif isinstance(result, RecordError):
            letter.outstanding = 1
            part.read(letter.dlq_offset, 1)
            self._write_back(letter, result.stage, result.reason, result.detail, result.route,
                             {}, lambda: self._letter_done(letter))
        else:  # Skip (or no event): the current mapping does not want it any more
            reason = result.reason if isinstance(result, Skip) else "no_event"
            self._r.skipped[f"mapping:{reason}"] += 1
            part.read(letter.dlq_offset, 0)

    def _dispatch(self, now: float, force: bool) -> None:
        while self._inflight < self._s.batch.max_in_flight:
            batch = self._window.take(now, force)
            if batch is None:
                return
            self._inflight += 1
            self._executor.submit(self._sender.deliver, batch).add_done_callback(self._done.put)

    def _collect(self, wait: float = 0.0) -> None:
        try:
            fut = self._done.get(timeout=wait) if wait > 0 else self._done.get_nowait()
        except queue.Empty:
            return
        while True:
            self._inflight -= 1
            self._completed(fut.result())
            try:
                fut = self._done.get_nowait()
            except queue.Empty:
                return

    def _completed(self, delivery: Delivery) -> None:
        for items, job_id in delivery.accepted:
            for item in items:
                for ev in item.events.values():
                    self._letter_done(_letter(ev))
            if self._jobs is not None and job_id is not None:
                self._jobs.submit(job_id, [(i.customer_id, [
                    (*_where(_letter(ev)), ev.name) for ev in i.events.values()]) for i in items])
        for item, answer in delivery.rejected:
            for ev in item.events.values():
                self._rejected(ev, answer)
        if delivery.abandoned:
            log.warning("delivery abandoned at stop; the next run reads it again",
                        extra={"events": sum(len(i.events) for i in delivery.abandoned)})
        self._window.complete(delivery.batch, time.monotonic())

    def _letter_done(self, letter: Letter) -> None:
        """One event (or the write-back) of `letter` is done."""
        part = self._tracker.get(letter.dlq_topic, letter.dlq_partition)
        part.ack(letter.dlq_offset)
        letter.outstanding -= 1
        if letter.outstanding == 0:
            self._r.counts["failed_again" if letter.failed else "sent"] += 1

    def _rejected(self, ev: Event, answer: Answer) -> None:
        letter = _letter(ev)
        # One copy per failed event, naming it: a later re-drive sends only that event.
        body = answer.body or {}
        reason = "rejected" if classify(answer).action is Action.REJECT else "retries_exhausted"
        extra = {"status": answer.status, "code": body.get("code"), "type": body.get("type"),
                 "requestId": answer.request_id, "customerId": ev.customer_id,
                 "event": ev.name}
        self._write_back(letter, "gameball", reason, str(body.get("message") or
                         answer.describe()), None, extra, lambda: self._letter_done(letter))

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
        offsets = self._tracker.to_commit(unconfirmed=True)
        if not offsets:
            return
        for t, p, o in offsets:
            self._tracker.mark_committed(t, p, o)
        answer = self._consumer.commit(
            offsets=[TopicPartition(t, p, o) for t, p, o in offsets], asynchronous=False)
        for tp in answer or []:
            if tp.error is None:
                self._tracker.confirm(tp.topic, tp.partition, tp.offset)

    def _shutdown(self, stopped: bool) -> None:
        """Finish what is under way (bounded by shutdown.drain_seconds after a signal),
        write back job failures, commit, close."""
        deadline = time.monotonic() + self._s.shutdown.drain_seconds
        while self._inflight or not self._window.is_empty():
            if stopped and time.monotonic() >= deadline:
                self._abandon.set()
                self._window.discard(lambda ev: True)
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
