"""The shell's loop: consume -> map -> core -> senders -> dead letters -> commit.

Built by `connector.factory.build_pipeline` (which builds every collaborator and passes
them in as `Parts`), run once by the CLI. The commit cycle, in the order one turn of
`run` does it (docs/core.md, "The commit cycle"):
  1. consume a chunk and `ingest` it: map each record, hand the chunk's rows to the core
     (`DeliveryCore.ingest`), send the records that failed to `dead_letter.on_error`;
  2. `dispatch`: the core cuts batches for free sender threads (a customer in one request
     at a time, same-name events never merged, within the crash budget);
  3. `collect`: each finished delivery goes back to the core (`complete`), accepted
     batches to the job tracker, rejected events to the dead-letter path;
  4. commit what the core says is done (connector/commits.py), asynchronously after a
     completion or on the timer, synchronously while the crash budget awaits a stored
     commit; the broker's answer feeds the core (`confirmed`);
  5. backpressure (connector/flow.py), dead-letter acknowledgements, job failures,
     metadata and GC on their timers.
Rebalance callbacks (connector/rebalance.py) and shutdown drain what is in flight, then
commit synchronously, each bounded (docs/delivery.md, "Shutdown budget").
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connector.badrecords import BadRecords
from connector.commits import Commits
from connector.config import Settings
from connector.core import DeliveryCore
from connector.failures import Failures
from connector.flow import Flow
from connector.gameball import GameballClient
from connector.ingest import Ingest, acker
from connector.job_letters import CLOSE_WAIT_S, JobLetters, job_items
from connector.jobs import JobTracker
from connector.kafka_events import KafkaEvents
from connector.quota_share import QuotaShare
from connector.rebalance import Rebalance
from connector.registry_outage import RegistryOutage
from connector.sender import Delivery, events_in
from connector.sender_reports import SenderReports
from connector.senders import Senders
from connector.shutdown import ABANDON_S, ShutdownBudget
from connector.source import Partitions, Source
from connector.telemetry import Health, Metrics

log = logging.getLogger("connector.pipeline")

CONSUME_BATCH = 1000
# The CLI turns automatic collection off. Each collection scans what is still alive
# (events in the window), so the loop collects rarely: the young generations every
# 2 minutes (a retried request leaves ~15 cyclic objects), all every 10 minutes.
GC_INTERVAL_S = 120.0
GC_FULL_INTERVAL_S = 600.0
# Held back, the loop still serves the consumer this often (docs/delivery.md,
# "Backpressure and memory"): a rebalance callback left waiting stalls the whole group.
SERVE_EVERY_S = 0.1


@dataclass(slots=True)
class Parts:
    """Everything the loop works with, built by `connector.factory.build_pipeline`."""

    settings: Settings
    client: GameballClient
    metrics: Metrics
    health: Health
    core: DeliveryCore
    ingest: Ingest
    source: Source
    senders: Senders
    reports: SenderReports
    jobs: JobTracker | None
    job_letters: JobLetters
    bad: BadRecords
    failures: Failures
    outage: RegistryOutage
    commits: Commits
    flow: Flow
    share: QuotaShare
    kafka_events: KafkaEvents
    rebalance: Rebalance
    budget: ShutdownBudget
    clock: Callable[[], float]


class Pipeline:
    """Owns the loop thread's state. Its public methods are the loop's steps; tests and
    `bench.hotpath` drive them one by one."""

    def __init__(self, parts: Parts) -> None:
        self._s = parts.settings
        self._ingest = parts.ingest
        self._client = parts.client
        self._m = parts.metrics
        self._health = parts.health
        self._clock = parts.clock
        self._jobs = parts.jobs
        self._job_letters = parts.job_letters
        self._bad = parts.bad
        self._outage = parts.outage
        self._reports = parts.reports
        self._share = parts.share
        self._budget = parts.budget
        self.core = parts.core
        self.source = parts.source
        self.senders = parts.senders
        self.failures = parts.failures
        self.commits = parts.commits
        self.flow = parts.flow
        self.kafka_events = parts.kafka_events
        self.rebalance = parts.rebalance
        self.closed = True  # False when the consumer's close ran out of time (cli exits hard)
        self._endpoint = parts.settings.gameball.endpoint
        self._accepted_events = 0
        self._next_gc = 0.0
        self._next_full_gc = 0.0

    # --- the loop ---------------------------------------------------------------------

    def run(self, stop: threading.Event, budget: ShutdownBudget | None = None) -> None:
        """Consume until `stop` is set, then drain and commit within `budget` (the CLI's,
        begun by its signal thread; else one from the settings). Raises only on start-up."""
        if budget is not None:
            self._budget = budget
        self.source.open()
        self._share.refresh()
        self._health.started = True
        log.info(
            "connector started",
            extra={
                "topics": self._s.subscription(),
                "group": self._s.kafka.group_id,
                "endpoint": self._endpoint,
            },
        )
        try:
            self._loop(stop)
        finally:
            self._shutdown()

    def _loop(self, stop: threading.Event) -> None:
        """Steps 1-5 of the commit cycle (module docstring), until `stop`."""
        commit_every = self._s.kafka.commit_interval_ms / 1000
        core, flow, outage, commits = self.core, self.flow, self._outage, self.commits
        next_commit = self._clock() + commit_every
        next_serve = 0.0
        while not stop.is_set():
            self._health.beat()
            now = self._clock()
            self.dispatch(now)
            if core.awaiting_confirmation():
                # the crash budget waits for a stored commit: ask for it now and wait
                # for the answer (docs/core.md, "The shell's part"); an asynchronous
                # commit's answer would queue behind the records already fetched
                commits.commit(asynchronous=False)
                self.dispatch(self._clock())
            if flow.held_back() and not flow.paused:
                # A whole batch waits for a send slot, or the window is at its bound:
                # wait for a completion instead of reading further ahead. Once paused
                # (held back for a second) the loop polls again to stay in the group.
                completed = self.collect(wait=0.05)
                if self._clock() >= next_serve and not flow.at_bound():
                    # Rebalance callbacks and commit answers run only inside a consume;
                    # held back for 1,000 records' sends, a replica kept its group's
                    # rebalance waiting for seconds, then lost its partitions. At a
                    # memory bound it reads nothing: completions or acknowledged copies
                    # bring it under, or a second without a send pauses and it polls.
                    served = self.source.serve()
                    if served:
                        self.ingest(served)
                    next_serve = self._clock() + SERVE_EVERY_S
            else:
                due = core.due_in(now)
                timeout = 0.05 if core.in_flight else 0.5
                if due is not None:
                    timeout = max(0.001, min(timeout, due))
                if outage.active:  # schema registry down: records held
                    held = outage.due(now)
                    if held is not None:
                        self.ingest(held)
                        outage.settled(resume=not flow.paused)
                msgs = self.source.consume(CONSUME_BATCH, timeout)
                next_serve = self._clock() + SERVE_EVERY_S
                if msgs:
                    self.ingest(msgs)
                completed = self.collect()
            now = self._clock()
            # Commit as soon as acceptance moved an offset (before the next batches: the
            # sooner it is stored, the sooner the crash budget frees); the timer covers
            # skip-only progress.
            if completed or now >= next_commit:
                commits.commit(asynchronous=True)
                next_commit = now + commit_every
            self.dispatch(now)
            flow.update(now)
            self._bad.poll()
            if self._bad.new_holds:
                self._hold()
            self._job_letters.poll()
            if now >= self._share.next_refresh:
                self._share.refresh()
            self._collect_garbage(now)

    def _collect_garbage(self, now: float) -> None:
        if now >= self._next_gc:
            if now >= self._next_full_gc:
                gc.collect()
                self._next_full_gc = now + GC_FULL_INTERVAL_S
            else:
                gc.collect(1)
            self._next_gc = now + GC_INTERVAL_S

    def ingest(self, msgs: list[Any]) -> None:
        """Step 1: map a consumed chunk into the core (connector/ingest.py), then hold
        partitions stopped at a bad record before any dispatch."""
        self._ingest(msgs)
        if self._bad.new_holds:  # before any dispatch: nothing past a held record is sent
            self._hold()

    def dispatch(self, now: float, force: bool = False) -> None:
        """Step 2: hand batches to free sender threads (`force`: do not wait for linger)."""
        core = self.core
        overruns = core.overruns
        while (batch := core.next_batch(now, force)) is not None:
            self.flow.progress()
            self.senders.submit(batch)
        if core.overruns != overruns:
            self._m.resend_overruns.inc(core.overruns - overruns)
        self._m.inflight.set(core.in_flight)
        self._m.resend_exposure.set(core.exposure)

    def collect(self, wait: float = 0.0) -> int:
        """Step 3: handle every finished delivery (waiting up to `wait` for the first)."""
        done = self.senders.finished(wait)
        for delivery in done:
            self.completed(delivery)
        if done:
            self._m.inflight.set(self.core.in_flight)
        return len(done)

    def completed(self, delivery: Delivery) -> None:
        """One finished delivery: acks to the core, accepted jobs to the tracker,
        rejected or unencodable events to `dead_letter.on_error`."""
        out = self.core.complete(delivery.batch, self._clock(),
                                 [*delivery.rejected, *delivery.failed], delivery.abandoned)
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
        for letter in out.letters:  # rejected, or failed by the sender: re-read, copied
            self.failures.letter(letter, acker(self.core, letter))
        if delivery.abandoned:
            n = events_in(delivery.abandoned)
            log.warning(
                "delivery abandoned at shutdown or revoke; will be re-read", extra={"events": n}
            )

    def _hold(self) -> None:
        """Partitions stopped at a bad record: paused, and nothing after it is sent."""
        self._bad.new_holds = False
        for topic, partition in self._bad.halted:
            if (topic, partition) in self.source.assigned:
                self.source.hold(topic, partition)
        self.core.discard_past(self._bad.halted)

    # --- draining and shutdown --------------------------------------------------------------

    def drain_revoked(self, parts: Partitions) -> bool:
        """The rebalance's drain: until `parts` have nothing undone, within
        `shutdown.drain_seconds` (a SIGTERM meanwhile ends it with the shutdown's)."""
        budget, core = self._budget, self.core
        return self.drain(lambda: budget.drain_over() or core.undone(parts) == 0,
                          self._s.shutdown.drain_seconds)

    def drain(self, finished: Callable[[], bool], seconds: float, send: bool = True) -> bool:
        """Send (unless `send` is false) and complete what is buffered, and copy rejected
        events' records to the dead letters, until `finished()` or the deadline."""
        deadline = self._clock() + seconds
        while not finished():
            now = self._clock()
            if now >= deadline:
                return False
            self._health.beat()
            if send:
                if self.core.awaiting_confirmation():  # the crash budget waits for it
                    self.commits.commit(asynchronous=False)
                self.dispatch(now, force=True)
            self.collect(wait=0.05)
            self._job_letters.poll()  # re-read records of rejected events, to be copied
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
        drained = self.drain(
            lambda: core.in_flight == 0 and core.waiting == 0 and self._bad.pending == 0
            and self._job_letters.idle,
            drain,
        )
        if not drained:
            log.warning(
                "drain time over: abandoning what is still in flight",
                extra={"inflight": core.in_flight, "buffered": core.buffered},
            )
            self.senders.abandon()
            self.drain(lambda: core.in_flight == 0, ABANDON_S, send=False)
            self._left_in_flight()
        self.senders.close()
        closing = budget.close_phase()
        self._client.set_deadline(closing)
        if self._jobs is not None:
            self._jobs.close(budget.jobs_wait(closing))
        self._job_letters.close(budget.left(closing, CLOSE_WAIT_S))  # flushed below
        left = self._bad.flush(budget.dead_letter_wait(closing))
        if left:
            log.error("dead-letter copies not acknowledged", extra={"records": left})
        self.collect()
        # The final commit runs with the close, on the closing thread: a commit to a
        # broker that does not answer must not hold the process past the bound.
        self.closed = self.source.close(
            budget.left(closing), before=lambda: self.commits.commit(asynchronous=False)
        )
        if not self.closed:
            log.warning(
                "the consumer did not close in time: leaving without it; the group "
                "reassigns this replica's partitions after session.timeout.ms",
                extra={"close_seconds": self._s.shutdown.close_seconds},
            )
        self._client.close()
        self._reports.flush()
        self.failures.log.flush()
        self.kafka_events.log.flush()
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
