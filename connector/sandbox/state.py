"""Everything the sandbox remembers: accepted items, jobs, statistics, fault state.

One lock guards it all (requests hold it for microseconds). Accepted requests are
kept as their raw body and expanded into item records only when someone inspects
them: a benchmark at 200 requests/s then pays neither CPU nor much memory
(about the body size per item) for inspection it never does. With a JSONL store the
lines are made at acceptance anyway (they must be on disk before the answer).
"""

from __future__ import annotations

import copy
import logging
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from operator import itemgetter
from typing import Any

import orjson

from connector.sandbox import errors
from connector.sandbox.faults import Faults
from connector.sandbox.jobs import Job, iso
from connector.sandbox.limiter import SlidingWindowLimiter
from connector.sandbox.store import Accepted, JsonlStore, record_lines

_log = logging.getLogger(__name__)
_CUSTOMER_ID = itemgetter("customerId")
_EVENTS = itemgetter("events")

Clock = Callable[[], float]


class SandboxState:
    """Thread-safe memory of one sandbox; the HTTP handler and the in-process API use it.

    `store_path` (optional) is a JSON-lines file: existing lines are loaded at start
    (so a restarted sandbox still shows them), every accepted item is appended and
    flushed before the answer is sent.
    """

    def __init__(self, faults: Faults | None = None, store_path: str | None = None,
                 clock: Clock = time.monotonic, wall: Clock = time.time) -> None:
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._faults = copy.deepcopy(faults) if faults is not None else Faults()
        self._random = random.Random(self._faults.seed)
        self._limiter = SlidingWindowLimiter(self._faults.windows(), clock)
        self._other_limiter = SlidingWindowLimiter(self._faults.status_windows(), clock)
        self._stall_until = clock() + self._faults.stall_seconds
        self._accepted: list[Accepted] = []
        self._item_count = 0
        self._jobs: dict[int, Job] = {}
        self._next_job_id = 1
        self._busy: set[str] = set()  # customers in a request being processed
        self._busy_extra: Counter[str] = Counter()  # further holders (check switched off)
        self._store: JsonlStore | None = None
        if store_path is not None:
            self._store = JsonlStore(store_path)
            lines = self._store.load()
            self._next_job_id = self._store.max_job_id + 1
            if lines:
                self._accepted.append(Accepted("store", None, "", "", len(lines), lines=lines))
                self._item_count = len(lines)
        self._reset_stats()

    def close(self) -> None:
        """Release waiting requests and close the store (SandboxServer.stop)."""
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
            if self._store is not None:
                self._store.close()

    # ---- faults ------------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        """The current faults; replaced whole, never mutated, so a request reads one snapshot."""
        return self._faults

    def set_faults(self, faults: Faults) -> None:
        """Replace the faults; a stall starts now (or ends, with stall_seconds 0)."""
        faults = copy.deepcopy(faults)  # the caller may keep editing its object
        with self._changed:
            self._faults = faults
            self._random = random.Random(faults.seed)
            self._limiter.configure(faults.windows())
            self._other_limiter.configure(faults.status_windows())
            self._stall_until = self._clock() + faults.stall_seconds
            self._changed.notify_all()

    def hold_while_stalled(self) -> bool:
        """Block the calling request until the stall is over. True if it was held."""
        held = False
        with self._changed:
            while not self._stopping.is_set():
                remaining = self._stall_until - self._clock()
                if remaining <= 0:
                    break
                held = True
                self._changed.wait(remaining)
            if held:
                self._stats["stalled"] += 1
        return held

    def sleep(self, seconds: float) -> None:
        """Injected latency; cut short when the sandbox stops."""
        if seconds > 0:
            self._stopping.wait(seconds)

    def admit(self) -> tuple[float | None, float]:
        """Rate limiter: (None if admitted else seconds until a window has room, wall time
        of the decision). The wall time is the request's arrival in the stats, taken under
        the same lock as the limiter's clock so tests can re-check the windows exactly."""
        with self._lock:
            wait = self._limiter.try_admit()
            if wait is not None:
                self._stats["rate_limited"] += 1
            return wait, self._wall()

    def admit_other(self) -> tuple[float | None, float]:
        """As `admit`, for the "Others" bucket: status reads and stops."""
        with self._lock:
            wait = self._other_limiter.try_admit()
            if wait is not None:
                self._stats["status_rate_limited"] += 1
            return wait, self._wall()

    def roll(self, rate: float) -> bool:
        """True with probability `rate` (seeded dice)."""
        if rate <= 0:
            return False
        with self._lock:
            return self._random.random() < rate

    def claim(self, customers: Iterable[str], exclusive: bool) -> str | None:
        """Mark customers as being processed. With `exclusive`, return a customer that
        another request is processing right now instead (and claim nothing)."""
        wanted = set(customers)
        with self._lock:
            overlap = self._busy & wanted  # set algebra: C speed for 1000 customers
            if overlap:
                if exclusive:
                    self._stats["conflicts"] += 1
                    return min(overlap)
                self._busy_extra.update(overlap)
            self._busy |= wanted
        return None

    def release(self, customers: Iterable[str]) -> None:
        """Undo `claim`; called before the answer is written so a client reacting to it
        never meets its own earlier request."""
        wanted = set(customers)
        with self._lock:
            if self._busy_extra:
                for customer in wanted & self._busy_extra.keys():
                    wanted.discard(customer)
                    self._busy_extra[customer] -= 1
                    if self._busy_extra[customer] <= 0:
                        del self._busy_extra[customer]
            self._busy -= wanted

    # ---- accepting ---------------------------------------------------------------

    def accept(self, items: Sequence[dict[str, Any]], endpoint: str, request_id: str,
               faults: Faults, raw: bytes) -> int | None:
        """Keep accepted items (memory, and the JSONL store when there is one); create a
        job for the batch endpoint. `raw` is the validated request body.

        Returns the job id, or None for the events endpoint.
        """
        received = iso(self._wall())
        job_id: int | None = None
        if endpoint == "batch":
            with self._lock:
                job_id = self._next_job_id
                self._next_job_id += 1
        accepted = Accepted(endpoint, job_id, request_id, received, len(items), raw=raw)
        chunk = b""
        if self._store is not None:  # the lines must be on disk before the answer
            chunk = b"\n".join(record_lines(items, endpoint, job_id, request_id, received))
        events = sum(map(len, map(_EVENTS, items)))
        with self._changed:
            if self._store is not None:
                accepted.span = self._store.append(chunk)
                accepted.raw = None  # the store holds the items now
            self._accepted.append(accepted)
            self._item_count += len(items)
            if job_id is not None:
                self._jobs[job_id] = self._new_job(job_id, items, request_id, faults)
            stats = self._stats
            stats["requests_accepted"] += 1
            stats["items_accepted"] += len(items)
            stats["events_accepted"] += events
            stats["max_items_per_request"] = max(stats["max_items_per_request"], len(items))
            self._changed.notify_all()
        return job_id

    def _new_job(self, job_id: int, items: Sequence[dict[str, Any]], request_id: str,
                 faults: Faults) -> Job:
        customer_ids = tuple(map(_CUSTOMER_ID, items))
        failing = set(faults.job_fail_customers)
        failures: dict[int, dict[str, Any]] = {}
        for index, customer in enumerate(customer_ids if failing else ()):
            if customer in failing:
                failures[index] = errors.api_error(
                    errors.JOB_ITEM_FAILED,
                    f"events of customer {customer} could not be processed "
                    "(sandbox fault job_fail_customers)",
                ).body(request_id)
        return Job(job_id=job_id, customer_ids=customer_ids,
                   failures=failures, created=self._clock(), created_wall=self._wall(),
                   delay=faults.job_delay_ms / 1000.0)

    def job(self, job_id: int) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def stop_job(self, job_id: int) -> Job | None:
        """DELETE a job: freeze it where it is (no effect once it has finished)."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None and job.stopped is None:
                job.stopped = self._clock()
            return job

    def now(self) -> float:
        return self._clock()

    # ---- inspection --------------------------------------------------------------

    def items_json(self, offset: int = 0, limit: int | None = None) -> bytes:
        """Accepted items as one JSON array, oldest first (GET /_sandbox/items)."""
        with self._lock:
            accepted = list(self._accepted)
        end = None if limit is None else offset + limit
        chosen: list[bytes] = []
        position = 0
        for entry in accepted:  # expanded outside the lock; a racing twin does the same
            if end is not None and position >= end:
                break
            if position + entry.count > offset:
                lines = entry.item_lines(None if self._store is None else self._store.read)
                start = max(0, offset - position)
                stop = None if end is None else end - position
                chosen.extend(lines[start:stop])
            position += entry.count
        return b"[" + b",".join(chosen) + b"]"

    def items(self) -> list[dict[str, Any]]:
        """Accepted items, oldest first, as dicts."""
        result: list[dict[str, Any]] = orjson.loads(self.items_json())
        return result

    def item_count(self) -> int:
        with self._lock:
            return self._item_count

    def wait_for_items(self, count: int, timeout: float) -> bool:
        """Block until at least `count` items were accepted or `timeout` passed."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._item_count < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping.is_set():
                    return False
                self._changed.wait(remaining)
            return True

    # ---- statistics ----------------------------------------------------------------

    def _reset_stats(self) -> None:
        self._stats: dict[str, Any] = {
            "started_at": iso(self._wall()),
            "requests_total": 0,
            "requests_accepted": 0,
            "items_accepted": 0,
            "events_accepted": 0,
            "max_items_per_request": 0,
            "max_body_bytes": 0,
            "rate_limited": 0,
            "status_rate_limited": 0,
            "dropped": 0,
            "conflicts": 0,
            "rejected": 0,
            "injected_errors": 0,
            "stalled": 0,
            "in_flight": 0,
            "max_concurrent": 0,
            "skipped_store_lines": 0 if self._store is None else self._store.skipped_lines,
        }
        self._by_route: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._arrivals: list[dict[str, Any]] = []

    def count(self, key: str, amount: int = 1) -> None:
        """Bump one counter of the stats (rejected, injected_errors, ...)."""
        with self._lock:
            self._stats[key] += amount

    def enter(self, body_bytes: int) -> None:
        """A send request started being processed (concurrency high-water mark)."""
        with self._lock:
            stats = self._stats
            stats["in_flight"] += 1
            stats["max_concurrent"] = max(stats["max_concurrent"], stats["in_flight"])
            stats["max_body_bytes"] = max(stats["max_body_bytes"], body_bytes)

    def leave(self) -> None:
        with self._lock:
            self._stats["in_flight"] -= 1

    def record(self, method: str, route: str, status: int, arrival: float, items: int,
               answered: bool, request_id: str) -> None:
        """One Gameball API request is done: count it and keep its arrival time."""
        with self._lock:
            self._stats["requests_total"] += 1
            self._by_route[f"{method} {route}"][str(status)] += 1
            if not answered:
                self._stats["dropped"] += 1
            self._arrivals.append({"t": arrival, "method": method, "path": route,
                                   "status": status, "items": items, "answered": answered,
                                   "requestId": request_id})

    def stats(self, arrivals: bool = True) -> dict[str, Any]:
        """A consistent copy of the statistics (GET /_sandbox/stats)."""
        with self._lock:
            result = dict(self._stats)
            result["requests"] = {route: dict(codes) for route, codes in self._by_route.items()}
            result["items_stored"] = self._item_count
            result["jobs"] = len(self._jobs)
            result["busy_customers"] = len(self._busy)
            if arrivals:
                result["arrivals"] = list(self._arrivals)
        return result

    def reset(self) -> None:
        """Forget items, jobs, statistics and rate history; keep faults and job numbering.
        Truncates the JSONL store too."""
        with self._changed:
            self._accepted.clear()
            self._item_count = 0
            self._jobs.clear()
            self._limiter.reset()
            self._other_limiter.reset()
            if self._store is not None:
                self._store.truncate()
            in_flight = self._stats["in_flight"]  # requests still running will leave()
            self._reset_stats()
            self._stats["in_flight"] = in_flight
            self._changed.notify_all()
