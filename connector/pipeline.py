"""The one loop: source -> decode+map -> window -> send -> ack -> commit.

Commit protocol (the only place offsets are committed; docs/architecture.md):
  1. a record is read: the partition's tracker notes it with the number of events it
     produced (0: skipped, done at once; 1 for a bad record bound for the dead letters);
  2. each event is acked when its batch was accepted (200 + jobId) or when its
     dead-letter copy was acknowledged by the broker;
  3. after every completed delivery (and every `commit_interval_ms` for skip-only
     progress) the lowest not-done offset of each partition, or last read + 1, is
     committed asynchronously; on revoke and shutdown synchronously, after waiting
     (bounded by `shutdown.drain_seconds`) for what is in flight.
Backpressure is data, not sleep: while a whole batch waits for a send slot, or the
window holds `max_buffered_events`, the loop stops reading ahead; if that lasts
`BLOCKED_PAUSE_S` without a batch sent, the assigned partitions are paused and the loop
keeps polling (the consumer stays in its group). Sender threads do the waiting (rate
limit, retries).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

import orjson
from confluent_kafka import KafkaError, TopicPartition

from connector.badrecords import BadRecords
from connector.config import Settings
from connector.core import CoreSettings, DeliveryCore, Letter, Row, Run
from connector.deadletter import DeadLetters, error_headers
from connector.gameball import Action, Answer, GameballClient, Verdict, classify
from connector.job_letters import CLOSE_WAIT_S, job_items, job_tracking
from connector.logs import RateLimitedLog
from connector.ratelimit import RateLimiter, Window
from connector.records import Batch, Event, RecordError, RecordLike, RegistryUnavailable, Skip
from connector.registry_outage import RegistryOutage
from connector.sendbridge import InFlight
from connector.sender import Delivery, Sender
from connector.shutdown import ABANDON_S, ShutdownBudget
from connector.source import Partitions, Source
from connector.telemetry import Health, Metrics

log = logging.getLogger("connector.pipeline")

CONSUME_BATCH = 1000
METADATA_REFRESH_S = 30.0  # how often the subscribed topics' partition count is re-read
# The CLI turns automatic collection off. Each collection scans what is still alive
# (tracked jobs' records: ~0.4 s at Gameball's full rate), so the loop collects rarely:
# the young generations every 2 minutes (a retried request leaves ~15 cyclic objects),
# all every 10 minutes.
GC_INTERVAL_S = 120.0
GC_FULL_INTERVAL_S = 600.0
BLOCKED_PAUSE_S = 1.0  # held back this long without a batch sent: pause the partitions


class MapperLike(Protocol):
    def for_topic(self, topic: str | None) -> Callable[[Any], Any]: ...


def _offset_ranges(events: list[Event]) -> str:
    spans: dict[str, tuple[int, int]] = {}
    for ev in events:
        rec = ev.record
        key = f"{rec.topic()}[{rec.partition()}]"
        off = rec.offset() or 0
        lo, hi = spans.get(key, (off, off))
        spans[key] = (min(lo, off), max(hi, off))
    return ", ".join(f"{k}@{lo}-{hi}" for k, (lo, hi) in sorted(spans.items()))


class _SenderHooks:
    """Sender callbacks -> metrics, health, logs. Called from sender threads."""

    def __init__(self, metrics: Metrics, health: Health, endpoint: str) -> None:
        self._m = metrics
        self._health = health
        self._endpoint = endpoint
        self._halt_log = RateLimitedLog(log, 60.0)
        self._retry_log = RateLimitedLog(log, 10.0)
        self._requests: dict[str, Any] = {}

    def request_done(self, status: int | None, seconds: float, items: int) -> None:
        code = str(status) if status is not None else "error"
        child = self._requests.get(code)
        if child is None:
            child = self._requests[code] = self._m.requests.labels(self._endpoint, code)
        child.inc()
        self._m.request_duration.labels(self._endpoint).observe(seconds)
        self._m.batch_items.observe(items)
        if status is not None and status < 500 and status not in (408, 429):
            self._health.gameball_answered()  # 422/2001 too: retried, yet Gameball is up

    def retrying(self, reason: str, answer: Answer, batch: Batch) -> None:
        self._m.retries.labels(self._endpoint, reason).inc()
        if reason != "concurrent_customer":
            self._health.gameball_retrying()
        self._retry_log.warn(reason, "retrying Gameball requests", reason=reason,
                             answer=answer.describe())

    def possible_duplicate(self, batch: Batch) -> None:
        events = batch.events()
        self._m.possible_duplicates.inc(len(events))
        log.warning(
            "answer lost after sending: a retry may duplicate these events",
            extra={"events": len(events), "offsets": _offset_ranges(events)},
        )

    def rate_limited(self, seconds: float) -> None:
        self._m.rate_limit_delay.inc(seconds)

    def halted(self, answer: Answer, verdict: Verdict) -> None:
        self._health.auth_failing = True
        self._m.ready.set(0)
        self._halt_log.error(
            "halt",
            f"Gameball refuses every request ({verdict.reason}: check the credentials, "
            "the account and base_url): nothing is committed past this point until it "
            "accepts them again",
            cause=verdict.reason,
            answer=answer.describe(),
        )

    def recovered(self) -> None:
        if self._health.auth_failing:
            log.info("Gameball accepts the credentials again")
        self._health.auth_failing = False

    def flush(self) -> None:
        """At shutdown: the repeat counts still held back."""
        self._halt_log.flush()
        self._retry_log.flush()


class Pipeline:
    """Owns the loop thread's state. Built by the CLI, run once."""

    def __init__(
        self,
        settings: Settings,
        mapper: MapperLike,
        client: GameballClient,
        metrics: Metrics,
        health: Health,
        dead_letters: DeadLetters | None = None,
        clock: Callable[[], float] = time.monotonic,
        core: DeliveryCore | None = None,
    ) -> None:
        self._s = settings
        self._mapper = mapper
        self._client = client
        self._m = metrics
        self._health = health
        self._clock = clock
        self.closed = True  # False when the consumer's close ran out of time (cli exits hard)
        self._endpoint = settings.gameball.endpoint
        max_items = settings.batch.max_items if self._endpoint == "batch" else 1
        b = settings.batch
        # The delivery bookkeeping (window, offsets, crash budget): docs/core.md.
        self.core = core or DeliveryCore(CoreSettings(
            max_items, b.linger_ms / 1000, b.max_in_flight, b.max_buffered_events,
            b.resend_limit))
        self.requests = InFlight()  # batches with the sender threads (sendbridge.py)
        rl = settings.gameball.rate_limit
        self._limiter = (
            RateLimiter(
                [Window(rl.per_second, 1.0), Window(rl.per_30_seconds, 30.0)], rl.margin_ms / 1000
            )
            if rl.enabled
            else None
        )
        self._abandon = threading.Event()
        self._budget = ShutdownBudget(
            settings.shutdown.drain_seconds, settings.shutdown.close_seconds
        )
        self._hooks = _SenderHooks(metrics, health, self._endpoint)
        self._sender = Sender(
            client,
            self._limiter,
            settings.gameball.retry,
            self._hooks,
            self._abandon,
            clock,
            settings.batch.max_bytes,
        )
        self._executor = ThreadPoolExecutor(settings.batch.max_in_flight, "sender")
        self._done: queue.SimpleQueue[Future[Delivery]] = queue.SimpleQueue()
        self._paused = False
        self._held_since: float | None = None
        self._bad = BadRecords(settings, metrics, health, dead_letters)
        # Batch-job outcomes: counted from the tracker's threads; failed items are re-read
        # by offset and dead-lettered from the loop (connector/job_letters.py).
        self._job_letters, self._jobs = job_tracking(
            settings, self._endpoint == "batch", client.job_status, self._bad, metrics)
        self._next_commit = 0.0
        self._accepted_events = 0
        self._quiet_log = RateLimitedLog(log, 60.0)
        self._source = Source(
            settings,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_stats=self._on_stats,
            on_error=self._on_kafka_error,
            on_commit=self._on_commit,
        )
        registry = settings.schema_registry
        self._outage = RegistryOutage(
            self._source, health, metrics.registry,
            registry.retry_initial_backoff_ms if registry else 500,
            registry.retry_max_backoff_ms if registry else 30_000,
        )
        self._consumed: dict[str, Any] = {}
        self._skipped: dict[tuple[str, str], Any] = {}
        # Partitions of the subscribed topics (quota share denominator). Read in the loop,
        # never inside a rebalance callback: a metadata call there clears confluent-kafka's
        # per-thread call state and the next callback of that consume() aborts the process.
        self._total_partitions: int | None = None
        self._next_metadata = 0.0
        self._next_gc = 0.0
        self._next_full_gc = 0.0

    # --- the loop ---------------------------------------------------------------------

    def run(self, stop: threading.Event, budget: ShutdownBudget | None = None) -> None:
        """Consume until `stop` is set, then drain and commit within `budget` (the CLI's,
        begun by its signal thread; else one from the settings). Raises only on start-up."""
        if budget is not None:
            self._budget = budget
        self._source.open()
        self._refresh_total_partitions()
        self._health.started = True
        log.info(
            "connector started",
            extra={
                "topics": self._s.subscription(),
                "group": self._s.kafka.group_id,
                "endpoint": self._endpoint,
            },
        )
        commit_every = self._s.kafka.commit_interval_ms / 1000
        core = self.core
        self._next_commit = self._clock() + commit_every
        try:
            while not stop.is_set():
                self._health.beat()
                now = self._clock()
                self._dispatch(now)
                if core.awaiting_confirmation():
                    # the crash budget waits for a stored commit: ask for it now and
                    # wait for the answer (docs/core.md, "The shell's part")
                    self._commit(asynchronous=False)
                    self._dispatch(self._clock())
                if self._held_back() and not self._paused:
                    # A whole batch waits for a send slot, or the window is at its bound:
                    # wait for a completion instead of reading further ahead. Once paused
                    # (held back for a second) the loop polls again to stay in the group.
                    completed = self._collect(wait=0.05)
                else:
                    due = core.due_in(now)
                    timeout = 0.05 if core.in_flight else 0.5
                    if due is not None:
                        timeout = max(0.001, min(timeout, due))
                    if self._outage.active:  # schema registry down: records held
                        held = self._outage.due(now)
                        if held is not None:
                            self._ingest(held)
                            self._outage.settled(resume=not self._paused)
                    msgs = self._source.consume(CONSUME_BATCH, timeout)
                    if msgs:
                        self._ingest(msgs)
                    completed = self._collect()
                now = self._clock()
                # Commit as soon as acceptance moved an offset (before the next batches:
                # the sooner it is stored, the sooner the crash budget frees); the timer
                # covers skip-only progress.
                if completed or now >= self._next_commit:
                    self._commit(asynchronous=True)
                    self._next_commit = now + commit_every
                self._dispatch(now)
                self._backpressure(now)
                self._bad.poll()
                if self._bad.new_holds:
                    self._hold()
                self._job_letters.poll()
                if now >= self._next_metadata:
                    self._refresh_total_partitions()
                if now >= self._next_gc:
                    if now >= self._next_full_gc:
                        gc.collect()
                        self._next_full_gc = now + GC_FULL_INTERVAL_S
                    else:
                        gc.collect(1)
                    self._next_gc = now + GC_INTERVAL_S
        finally:
            self._shutdown()

    def _ingest(self, msgs: list[Any]) -> None:
        """Map a consumed batch of messages into the core (the hot path): one `Run` of
        rows per partition run; a row's payload is the `Event` (connector/sendbridge.py)."""
        for_topic = self._mapper.for_topic  # per-topic plans are cached by the mapper
        runs: list[Run] = []
        failures: dict[tuple[str, int, int], tuple[Any, RecordError]] = {}
        counts: dict[str, int] = {}
        last_topic: str | None = None
        last_partition, run = -1, 0
        rows: list[Row] = []
        keep = rows.append
        skips: list[int] = []
        failed: list[int] = []
        map_one: Any = None
        halted = self._bad.halted
        held: int | None = None
        for msg in msgs:
            if msg.error() is not None:
                self._on_kafka_error(msg.error())
                continue
            topic = msg.topic()
            partition = msg.partition()
            if partition != last_partition or topic != last_topic or map_one is None:
                # consumed batches come in runs of one partition: look things up once a run
                if last_topic is not None:
                    counts[last_topic] = counts.get(last_topic, 0) + run
                    runs.append(Run(last_topic, last_partition, rows, skips, failed))
                run = 0
                rows, skips, failed = [], [], []
                keep = rows.append
                map_one = for_topic(topic)
                last_topic, last_partition = topic, partition
                held = halted.get((topic, partition)) if halted else None
            run += 1
            offset = msg.offset()
            if held is not None and offset > held:
                continue  # fetched before its partition was held at a bad record
            try:
                out = map_one(msg)
            except RegistryUnavailable as exc:  # not the record's fault: hold, retry later
                run -= 1
                self._outage.hold(msgs[msgs.index(msg):], exc, self._clock())
                break
            kind = out.__class__
            if kind is Event:  # the common case: one event, no list
                stamp, ts = msg.timestamp()
                keep((offset, out.customer_id, out.name, out, ts if stamp else -1))
            elif kind is list:
                stamp, ts = msg.timestamp()
                ts = ts if stamp else -1
                for ev in out:
                    keep((offset, ev.customer_id, ev.name, ev, ts))
            elif isinstance(out, Skip):
                skips.append(offset)
                key = (topic, out.reason)
                child = self._skipped.get(key)
                if child is None:
                    child = self._skipped[key] = self._m.records_skipped.labels(*key)
                child.inc()
            else:
                failed.append(offset)
                failures[(topic, partition, offset)] = (msg, out)
        if last_topic is not None:
            counts[last_topic] = counts.get(last_topic, 0) + run
            runs.append(Run(last_topic, last_partition, rows, skips, failed))
        core = self.core
        for letter in core.ingest(runs, self._clock()):
            msg, err = failures[(letter.topic, letter.partition, letter.offset)]
            self._record_failed(msg, err, self._acker(letter))
        if self._bad.new_holds:  # before any dispatch: nothing past a held record is sent
            self._hold()
        for topic, n in counts.items():
            child = self._consumed.get(topic)
            if child is None:
                child = self._consumed[topic] = self._m.records_consumed.labels(topic)
            child.inc(n)

    def _acker(self, letter: Letter) -> Callable[[], None]:
        """The dead-letter copy of `letter`'s record was acknowledged: its event is done."""
        core = self.core
        return lambda: core.dead_lettered(letter)

    def _held_back(self) -> bool:
        """Reading further ahead must wait: a batch is blocked, or the core holds
        `max_buffered_events` (most of them behind customers in flight), or the dead-letter
        producer holds `dead_letter.max_pending` copies."""
        return (
            not self.core.may_read()
            or self._bad.pending >= self._s.dead_letter.max_pending
        )

    def _dispatch(self, now: float, force: bool = False) -> None:
        """Hand batches to free sender threads (`force`: do not wait for linger)."""
        core = self.core
        while (batch := core.next_batch(now, force)) is not None:
            self._held_since = None  # progress: a wait for a slot starts afresh
            fut = self._executor.submit(self._sender.deliver, self.requests.send(batch))
            fut.add_done_callback(self._done.put)
        self._m.inflight.set(core.in_flight)

    def _collect(self, wait: float = 0.0) -> int:
        """Handle every finished delivery (waiting up to `wait` for the first one)."""
        try:
            fut = self._done.get(timeout=wait) if wait > 0 else self._done.get_nowait()
        except queue.Empty:
            return 0
        handled = 0
        while True:
            handled += 1
            self._completed(fut.result())
            try:
                fut = self._done.get_nowait()
            except queue.Empty:
                break
        self._m.inflight.set(self.core.in_flight)
        return handled

    def _completed(self, delivery: Delivery) -> None:
        batch, rejected, abandoned, letter_events = self.requests.outcome(delivery)
        out = self.core.complete(batch, self._clock(), rejected, abandoned)
        accepted = out.accepted + out.ignored  # ignored: accepted after a revoke
        if accepted:
            self._accepted_events += accepted
            self._m.events_accepted.labels(self._endpoint).inc(accepted)
            if out.oldest_ms is not None:
                self._m.end_to_end.observe(max(0.0, time.time() - out.oldest_ms / 1000))
        jobs = self._jobs
        if jobs is not None:
            for items, job_id in delivery.accepted:
                jobs.submit(job_id, job_items(items))
        for letter, ev in zip(out.letters, letter_events, strict=True):
            if isinstance(letter.cause, RecordError):  # could not be encoded
                self._record_failed(ev.record, letter.cause, self._acker(letter))
            else:
                self._gameball_rejected(ev, letter.cause, self._acker(letter))  # type: ignore[arg-type]
        if delivery.abandoned:
            n = sum(len(i.events) for i in delivery.abandoned)
            log.warning(
                "delivery abandoned at shutdown or revoke; will be re-read", extra={"events": n}
            )

    # --- bad records and dead letters ---------------------------------------------------

    def _record_failed(self, record: RecordLike, err: RecordError,
                       done: Callable[[], None]) -> None:
        topic = str(record.topic())
        self._m.records_failed.labels(topic, err.stage, err.reason).inc()
        self._quiet_log.warn(
            f"bad:{topic}:{err.stage}:{err.reason}", "record cannot become an event",
            topic=topic, partition=record.partition(), offset=record.offset(),
            stage=err.stage, reason=err.reason, detail=err.detail, route=err.route,
        )
        headers = error_headers(record, err.stage, err.reason, err.detail, err.route)
        self._bad.handle(record, headers, done)

    def _gameball_rejected(self, ev: Event, answer: Answer, done: Callable[[], None]) -> None:
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

    def _hold(self) -> None:
        """Partitions stopped at a bad record: paused, and nothing after it is sent."""
        self._bad.new_holds = False
        for topic, partition in self._bad.halted:
            if (topic, partition) in self._source.assigned:
                self._source.hold(topic, partition)
        self.core.discard_past(self._bad.halted)

    # --- backpressure, commits ------------------------------------------------------------

    def _backpressure(self, now: float) -> None:
        """Pause every assigned partition when Gameball cannot keep up; resume after.

        The loop stops reading ahead at once when held back (`_held_back`); it pauses
        only when that lasted `BLOCKED_PAUSE_S` without a batch sent, because it must go
        on polling to stay in the group. A pause throws librdkafka's prefetch away, so
        short waits (customers in flight at the rate limit) must not cause one.
        """
        buffered = self.core.buffered
        bound = self._s.batch.max_buffered_events
        held = self._held_back()
        if not held:
            self._held_since = None
        elif self._held_since is None:
            self._held_since = now
        stuck = held and now - (self._held_since or now) >= BLOCKED_PAUSE_S
        if not self._paused and stuck:
            self._paused = True
            n = self._source.pause_all()
            log.info(
                "paused partitions: Gameball is not keeping up",
                extra={"buffered": buffered, "partitions": n, "inflight": self.core.in_flight,
                       "dead_letter_pending": self._bad.pending},
            )
        elif (
            self._paused and not self.core.blocked() and buffered <= bound // 2
            and self._bad.pending <= self._s.dead_letter.max_pending // 2
            and not self._outage.active
        ):
            self._paused = False
            n = self._source.resume_all()
            log.info("resumed partitions", extra={"buffered": buffered, "partitions": n})
        self._m.paused_partitions.set(len(self._source.paused))

    def _commit(self, asynchronous: bool, only: Partitions | None = None) -> None:
        """Commit moved offsets. Synchronous commits (revoke, shutdown) also repeat offsets
        whose asynchronous commit is unconfirmed: it may still fail after the revoke. What
        stays unconfirmed is counted when its partition leaves (`_on_revoke`)."""
        core = self.core
        offsets = core.commits(unconfirmed=not asynchronous)  # marked as handed
        if only is not None:
            wanted = set(only)
            for t, p, _o in offsets:
                if (t, p) not in wanted:
                    core.commit_failed(t, p)  # not handed now: hand it next time
            offsets = [o for o in offsets if (o[0], o[1]) in wanted]
        if not offsets:
            return
        if asynchronous:
            self._source.commit_async(offsets)  # answered in _on_commit, on this thread
            return
        confirmed = self._source.commit_sync(offsets)
        for t, p, o in offsets:
            if (t, p) in confirmed:
                core.confirmed(t, p, o)
                self._m.committed_offset.labels(t, str(p)).set(o)
            else:
                core.commit_failed(t, p)
        self._m.commits.labels("ok" if len(confirmed) == len(offsets) else "failed").inc()

    def _on_commit(self, err: KafkaError | None, parts: list[TopicPartition]) -> None:
        self._m.commits.labels("failed" if err is not None else "ok").inc()
        if err is not None:
            log.warning("asynchronous commit failed", extra={"error": str(err)})
        core = self.core
        for tp in parts:
            if err is None and tp.error is None and tp.offset >= 0:
                core.confirmed(tp.topic, tp.partition, tp.offset)
                if core.committable(tp.topic, tp.partition) is not None:  # still ours
                    self._m.committed_offset.labels(tp.topic, str(tp.partition)).set(tp.offset)
            else:
                core.commit_failed(tp.topic, tp.partition)  # try again at the next commit

    # --- rebalance ------------------------------------------------------------------------

    def _on_assign(self, parts: Partitions) -> None:
        for topic, partition in parts:
            self.core.assign(topic, partition)
        self._m.rebalances.labels("assign").inc()
        self._after_rebalance()
        if self._paused or self._outage.active:
            self._source.pause_all()
        log.info("partitions assigned", extra={"partitions": [f"{t}[{p}]" for t, p in parts]})

    def _on_revoke(self, parts: Partitions, lost: bool) -> None:
        self._m.rebalances.labels("lost" if lost else "revoke").inc()
        halted = self._bad.halted
        core = self.core
        if not lost:
            if not self._health.stopping:  # shutdown has drained already, bounded once
                # A SIGTERM during this drain ends it with the shutdown's drain time.
                budget = self._budget
                mine = [p for p in parts if p not in halted]
                self._drain(
                    lambda: budget.drain_over() or core.undone(mine) == 0,
                    self._s.shutdown.drain_seconds,
                )
            self._commit(asynchronous=False, only=parts)
        self._outage.forget(parts)
        for topic, partition in parts:
            for gauge in (self._m.consumer_lag, self._m.committed_offset):
                with contextlib.suppress(KeyError):  # never set for this partition
                    gauge.remove(topic, str(partition))
        gone = core.revoke(parts)
        unconfirmed, dropped, spans = gone.unconfirmed, gone.dropped, gone.spans
        self._bad.release(parts)
        # Zero after a drained revoke whose commit landed. Otherwise the next owner
        # re-sends what was accepted since the last confirmed commit, and requests still
        # under way (undone, not in the window) may be accepted after we let go.
        possible = unconfirmed + gone.in_flight
        if possible:
            self._m.possible_duplicates.inc(possible)
            log.warning(
                "partitions left before what was sent was committed: "
                "the next owner may send these events again",
                extra={"events": possible, "lost": lost, "offsets": spans,
                       "accepted_uncommitted": unconfirmed, "in_flight": possible - unconfirmed},
            )
        log.info(
            "partitions revoked",
            extra={
                "partitions": [f"{t}[{p}]" for t, p in parts],
                "lost": lost,
                "dropped_events": dropped,
            },
        )
        self._after_rebalance(exclude=parts)

    def _after_rebalance(self, exclude: Sequence[tuple[str, int]] = ()) -> None:
        owned = len(self._source.assigned - set(exclude))
        self._m.assigned_partitions.set(owned)
        if self._limiter is not None:
            total = self._total_partitions
            if total is None:
                self._next_metadata = 0.0  # the loop reads it right after this callback
                return
            self._limiter.set_share(owned, total)
            log.info(
                "rate limit share",
                extra={"owned": owned, "total": total, "share": round(self._limiter.share, 3)},
            )

    def _refresh_total_partitions(self) -> None:
        """Loop thread only (see `_total_partitions`); re-applies the share on a change."""
        self._next_metadata = self._clock() + METADATA_REFRESH_S
        if self._limiter is None:
            return
        try:
            total = self._source.total_partitions()
        except Exception as exc:
            log.warning("cannot read topic metadata for the quota share", extra={"error": str(exc)})
            self._next_metadata = self._clock() + 1.0
            return
        if total != self._total_partitions:
            self._total_partitions = total
            self._after_rebalance()

    # --- draining and shutdown --------------------------------------------------------------

    def _drain(self, finished: Callable[[], bool], seconds: float, send: bool = True) -> bool:
        """Send (unless `send` is false) and complete what is buffered until `finished()`
        or the deadline."""
        deadline = self._clock() + seconds
        while not finished():
            now = self._clock()
            if now >= deadline:
                return False
            self._health.beat()
            if send:
                if self.core.awaiting_confirmation():  # the crash budget waits for it
                    self._commit(asynchronous=False)
                self._dispatch(now, force=True)
            self._collect(wait=0.05)
            self._bad.poll()
        return True

    def _shutdown(self) -> None:
        """Drain, abandon, close: each phase ends by its deadline in `self._budget`
        (docs/delivery.md, "Shutdown budget")."""
        self._health.stopping = True
        budget = self._budget
        core = self.core
        budget.begin()  # already begun by the signal; else (a failure) from now
        # Requests sent from now on wait for an answer until the drain is over, no longer.
        self._client.set_deadline(budget.drain_deadline())
        # While Gameball refuses the credentials nothing in flight can finish: do not wait.
        drain = 0.0 if self._health.auth_failing else budget.left(budget.drain_deadline())
        drained = self._drain(
            lambda: core.in_flight == 0 and core.waiting == 0 and self._bad.pending == 0,
            drain,
        )
        if not drained:
            log.warning(
                "drain time over: abandoning what is still in flight",
                extra={"inflight": self.core.in_flight, "buffered": self.core.buffered},
            )
            self._abandon.set()
            self._drain(lambda: core.in_flight == 0, ABANDON_S, send=False)
            self._left_in_flight()
        self._executor.shutdown(wait=False, cancel_futures=True)
        closing = budget.close_phase()
        self._client.set_deadline(closing)
        if self._jobs is not None:
            self._jobs.close(budget.jobs_wait(closing))
        self._job_letters.close(budget.left(closing, CLOSE_WAIT_S))  # flushed below
        left = self._bad.flush(budget.dead_letter_wait(closing))
        if left:
            log.error("dead-letter copies not acknowledged", extra={"records": left})
        self._collect()
        # The final commit runs with the close, on the closing thread: a commit to a
        # broker that does not answer must not hold the process past the bound.
        self.closed = self._source.close(
            budget.left(closing), before=lambda: self._commit(asynchronous=False)
        )
        if not self.closed:
            log.warning(
                "the consumer did not close in time: leaving without it; the group "
                "reassigns this replica's partitions after session.timeout.ms",
                extra={"close_seconds": self._s.shutdown.close_seconds},
            )
        self._client.close()
        self._hooks.flush()
        self._quiet_log.flush()
        log.info(
            "connector stopped",
            extra={"events_accepted": self._accepted_events, "drained": drained,
                   "possible_duplicates": int(self._m.possible_duplicates_total())},
        )

    def _left_in_flight(self) -> None:
        """After the abandon: requests still inside an HTTP read are left to the exit."""
        if not self.core.in_flight:
            return
        log.warning(
            "requests still under way at exit: Gameball may store them and the next "
            "owner sends them again (counted as possible duplicates when the partitions "
            "are revoked)",
            extra={"requests": self.core.in_flight, "events": self.core.in_flight_events},
        )

    # --- librdkafka callbacks ---------------------------------------------------------------

    def _on_stats(self, raw: str) -> None:
        try:
            stats = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return
        up = any(b.get("state") == "UP" for b in stats.get("brokers", {}).values())
        self._health.broker_reachable = up
        for tname, topic in stats.get("topics", {}).items():
            for pid, p in topic.get("partitions", {}).items():
                lag = p.get("consumer_lag", -1)
                if (
                    pid != "-1"
                    and lag is not None
                    and lag >= 0
                    and (tname, int(pid)) in self._source.assigned
                ):
                    self._m.consumer_lag.labels(tname, pid).set(lag)

    def _on_kafka_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self._health.broker_reachable = False
        self._quiet_log.warn(f"kafka:{err.code()}", f"kafka: {err.str()}", fatal=err.fatal())
