"""Batch-job tracking: what happened to a batch after Gameball said "accepted".

A 200 with a `jobId` only means the batch was queued; per-item failures show up later
in the job status. The pipeline calls `JobTracker.submit(job_id, items)` after each
accepted batch and goes on: worker threads poll the status with backoff, at most
`max_concurrent` at a time, and report through two hooks:

- `on_done(status, failed_count)`: once per job, status one of `JOB_OUTCOMES`;
- `on_failed_item(ref, job_id, error)`: once per event of an item the job reports
  as failed, as an `EventRef` (topic, partition, offset, customer, name): the caller
  re-reads the record by offset and dead-letters it with the job id.

Per item only the customer id and its events' (topic, partition, offset, name) are
kept, packed (connector/jobitems.py): never the events, their metadata or messages.

This module does no HTTP itself (`fetch` is injected: `GameballClient.job_status`)
and knows nothing of metrics. Reads stay within a budget (connector/jobreads.py): when
more jobs finish than it can read, new jobs are skipped (sampled), never queued. Both
documented status answers are understood by `parse_status` (connector/jobstatus.py);
see docs/metrics.md ("Job tracking") for the reasoning.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from connector.config import JobTrackingSettings
from connector.jobitems import EventRef, ItemRefs, JobItems, report_failures
from connector.jobreads import JobId, ReadBudget, job_id_of
from connector.jobstatus import (  # re-exported: the tracker's callers read them here
    FailedItem,
    JobStatus,
    JobStatusError,
    parse_status,
)

__all__ = ["JOB_OUTCOMES", "EventRef", "FailedItem", "ItemRefs", "JobStatus",
           "JobStatusError", "JobTracker", "StatusRead", "parse_status"]

log = logging.getLogger(__name__)

# Outcomes passed to on_done: the three terminal states, plus "expired" (still not
# finished after max_polls), "dropped" (pushed out by max_tracked), "skipped" (not read:
# the status-read budget was behind) and "untracked" (the answer had no usable jobId).
JOB_OUTCOMES = ("completed", "failed", "stopped", "expired", "dropped", "skipped", "untracked")

# A job is tracked only if the read budget can read every tracked job within this many
# poll intervals; beyond, new jobs are skipped (sampled) rather than queued.
READ_HORIZON = 2


class StatusRead(NamedTuple):
    """One status answer: HTTP status (0: no answer), JSON body, Retry-After seconds."""

    status: int
    body: dict[str, Any] | None
    retry_after: float | None = None


Fetch = Callable[[JobId], "StatusRead | tuple[int, dict[str, Any] | None]"]
OnDone = Callable[[str, int], None]
OnFailedItem = Callable[[EventRef, JobId, "dict[str, Any]"], None]


@dataclass(slots=True)
class _Job:
    job_id: JobId
    items: JobItems
    polls: int = 0
    busy: bool = False  # a worker is polling it right now
    done: bool = False


class JobTracker:
    """Polls submitted batch jobs in background threads until they finish.

    Built by the pipeline with the settings, the client's `job_status` as `fetch`,
    and the two outcome hooks (called from worker threads: they must be thread-safe).
    Never blocks `submit`; beyond `max_tracked` jobs the oldest waiting one is dropped
    (reported as "dropped"). `clock` is injectable so tests can drive `poll_due()`
    without threads (`start=False`).
    """

    def __init__(
        self,
        settings: JobTrackingSettings,
        fetch: Fetch,
        on_done: OnDone,
        on_failed_item: OnFailedItem,
        *,
        clock: Callable[[], float] = time.monotonic,
        start: bool = True,
    ) -> None:
        self._settings = settings
        self._fetch = fetch
        self._on_done = on_done
        self._on_failed_item = on_failed_item
        self._clock = clock
        self._threaded = start
        self._cond = threading.Condition()
        self._jobs: OrderedDict[JobId, _Job] = OrderedDict()  # submit order = age
        self._due: list[tuple[float, int, _Job]] = []  # heap; stale entries skipped
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self._timer_until: float | None = None  # when the one timed waiter wakes
        self._closed = False
        self.dropped = 0
        self.budget = ReadBudget(settings.max_reads_per_second, clock())
        self.skipped = 0  # jobs not tracked: reads were behind (on_done "skipped")
        self.reads = 0  # status requests made
        self.throttled = 0  # status reads answered 429
        self._causes: set[str] = set()  # unusable-id causes already logged

    def tracked(self) -> int:
        """Jobs submitted and not finished yet (waiting or being polled)."""
        with self._cond:
            return len(self._jobs)

    def submit(self, raw_id: Any, items: Iterable[ItemRefs]) -> None:
        """Start tracking an accepted batch (called by the pipeline with the answer's
        `jobId`, whatever its type, and `(customer_id, refs)` per item, refs as
        `core.rows.Item.refs()` gives them; read only if the job is tracked, so a
        generator costs nothing for skipped jobs); never blocks on I/O.

        An unusable id is logged once per cause and reported "untracked"; while due reads
        lag more than a poll interval behind the budget, the job is reported "skipped"
        (a sample of the jobs is tracked, the rest counted: never an unbounded queue).
        """
        job_id, cause = job_id_of(raw_id)
        if job_id is None:
            with self._cond:
                first = cause not in self._causes
                self._causes.add(str(cause))
            if first:
                log.warning("batch job cannot be tracked (logged once per cause)",
                            extra={"cause": cause})
            self._call_done("untracked", 0, None)
            return
        dropped: list[_Job] = []
        with self._cond:
            if self._closed:
                log.warning("job tracker closed: job not tracked", extra={"job_id": job_id})
                return
            now = self._clock()
            skip = self._reads_behind(now)
            if skip:
                self.skipped += 1
            else:
                job = _Job(job_id, JobItems(items))
                self._jobs[job_id] = job
                while len(self._jobs) > self._settings.max_tracked:
                    oldest = next((j for j in self._jobs.values() if not j.busy), None)
                    if oldest is None:
                        break
                    del self._jobs[oldest.job_id]
                    oldest.done = True
                    dropped.append(oldest)
                if self._threaded and not self._threads:
                    self._start_workers()
                self._schedule(job, now + self._interval(0))
        if skip:
            if self.skipped == 1:
                log.warning(
                    "status reads are behind their budget: some batch jobs are not tracked "
                    "(counted as jobs_total{status=\"skipped\"}; docs/delivery.md)",
                    extra={"job_id": job_id,
                           "max_reads_per_second": self._settings.max_reads_per_second},
                )
            self._call_done("skipped", 0, job_id)
            return
        for old in dropped:
            self.dropped += 1
            log.warning(
                "too many batch jobs tracked: oldest dropped, its outcome stays unknown",
                extra={"job_id": old.job_id, "max_tracked": self._settings.max_tracked},
            )
            self._call_done("dropped", 0, old.job_id)

    def _reads_behind(self, now: float) -> bool:
        """True when the budget cannot read one more job in time (lock held): more jobs
        tracked than it reads in `READ_HORIZON` poll intervals (at least 5 s), or the
        oldest due read already waits more than a poll interval."""
        interval = self._settings.poll_interval_ms / 1000.0
        room = math.ceil(self.budget.sustained * max(5.0, READ_HORIZON * interval))
        if len(self._jobs) >= room:
            return True
        while self._due and (self._due[0][2].done or self._due[0][2].busy):
            heapq.heappop(self._due)  # stale entry
        return bool(self._due) and self._due[0][0] < now - interval

    def poll_due(self) -> int:
        """Poll every job whose time has come, in the calling thread; return how many.

        The workers run the same steps one job at a time; tests call this with a fake
        clock instead of starting threads.
        """
        polled = 0
        while True:
            with self._cond:
                job = self._take_due(self._clock())
            if not isinstance(job, _Job):
                return polled
            self._poll(job)
            polled += 1

    def close(self, timeout: float) -> None:
        """Stop the workers within `timeout` seconds (called at shutdown).

        Jobs not finished by then are logged with their ids: their outcome is unknown.
        """
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            threads = list(self._threads)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            left = [j.job_id for j in self._jobs.values()]
        if left:
            log.warning(
                "batch jobs still unfinished at shutdown: outcome unknown",
                extra={"jobs": len(left), "job_ids": left[:50]},
            )

    # --- internals -------------------------------------------------------------------

    def _interval(self, polls: int) -> float:
        # Exponential backoff from poll_interval, capped at 16x: a long job costs at most
        # one request per 16 intervals instead of one per interval.
        base = self._settings.poll_interval_ms / 1000.0
        return float(base * min(2 ** max(polls - 1, 0), 16))

    def _schedule(self, job: _Job, when: float) -> None:
        """Queue a poll of `job` at `when` and wake the worker that must see it (lock held).

        At most one idle worker waits with a timeout (until `_timer_until`); the others
        wait to be woken. A job due before that timeout wakes them all, so that the timed
        waiter sets its timeout again.
        """
        heapq.heappush(self._due, (when, next(self._seq), job))
        if self._timer_until is None:
            self._cond.notify()
        elif when < self._timer_until:
            self._cond.notify_all()

    def _take_due(self, now: float) -> _Job | float | None:
        """The job due at `now` (marked busy), else seconds until the next one, else None.

        Caller holds the lock. Entries of finished or busy jobs are stale: dropped here.
        """
        while self._due:
            when, _, job = self._due[0]
            if job.done or job.busy:
                heapq.heappop(self._due)  # stale entry
                continue
            if when > now:
                return when - now
            wait = self.budget.acquire(now)
            if wait > 0:
                return wait  # due, but the read budget has no slot yet
            heapq.heappop(self._due)
            job.busy = True
            return job
        return None

    def _start_workers(self) -> None:
        for n in range(self._settings.max_concurrent):
            thread = threading.Thread(
                target=self._work, name=f"gameball-jobs-{n}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _work(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                job = self._take_due(self._clock())
                if not isinstance(job, _Job):
                    if job is None or self._timer_until is not None:
                        self._cond.wait()  # until `_schedule`, the timed waiter or close
                    else:
                        # One timed waiter, not all idle workers: each due job used to
                        # wake every one of them (docs/benchmarks.md, job tracking).
                        self._timer_until = self._clock() + job
                        try:
                            self._cond.wait(job)
                        finally:
                            self._timer_until = None
                    continue
                if self._due:
                    self._cond.notify()  # more jobs queued: an idle worker takes the timer
            try:
                self._poll(job)
            except Exception:  # a bug here must not kill the worker silently
                log.exception("job tracking failed", extra={"job_id": job.job_id})
                self._finish(job)

    def _poll(self, job: _Job) -> None:
        job.polls += 1
        status: JobStatus | None = None
        try:
            read = self._fetch(job.job_id)
        except Exception as exc:
            log.debug("job status request failed", extra={"job_id": job.job_id, "error": str(exc)})
        else:
            code, body = read[0], read[1]
            with self._cond:
                self.reads += 1
                if code == 429:
                    self.throttled += 1
            if code == 429:
                # The Others bucket is the account's: slow down for every job, not just this.
                retry_after = read.retry_after if isinstance(read, StatusRead) else None
                self.budget.throttled(self._clock(), retry_after)
                log.warning("job status read answered 429: reading slower",
                            extra={"job_id": job.job_id, "retry_after": retry_after})
            elif code == 200:
                try:
                    status = parse_status(self._settings.status_api, body)
                except JobStatusError as exc:
                    log.warning(
                        "unexpected job status answer",
                        extra={"job_id": job.job_id, "error": str(exc)},
                    )
            else:
                # 404 right after acceptance, 429, 5xx: try again later, up to max_polls.
                log.debug("job status not available", extra={"job_id": job.job_id, "code": code})

        if status is not None and status.terminal:
            self._finish(job)
            self._report(job, status)
            return
        if job.polls >= self._settings.max_polls:
            self._finish(job)
            log.warning(
                "batch job not finished after max_polls: outcome unknown",
                extra={
                    "job_id": job.job_id,
                    "polls": job.polls,
                    "last_state": None if status is None else status.state,
                },
            )
            self._call_done("expired", 0, job.job_id)
            return
        with self._cond:
            job.busy = False
            if not job.done:
                self._schedule(job, self._clock() + self._interval(job.polls))

    def _finish(self, job: _Job) -> None:
        with self._cond:
            job.done = True
            job.busy = False
            if self._jobs.get(job.job_id) is job:
                del self._jobs[job.job_id]

    def _report(self, job: _Job, status: JobStatus) -> None:
        failed_count = report_failures(job.job_id, job.items, status, self._on_failed_item)
        self._call_done(status.state, failed_count, job.job_id)

    def _call_done(self, status: str, failed_count: int, job_id: JobId | None) -> None:
        try:
            self._on_done(status, failed_count)
        except Exception:
            log.exception("on_done hook failed", extra={"job_id": job_id})
