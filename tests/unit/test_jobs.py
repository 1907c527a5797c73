"""connector.jobs: status parsing (both documented shapes) and the job tracker."""

from __future__ import annotations

import itertools
import logging
import threading
import time
import tracemalloc
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.config import JobTrackingSettings
from connector.jobitems import ItemRefs, JobItems
from connector.jobs import EventRef, FailedItem, JobStatusError, JobTracker, parse_status

# --- canned answers, shaped like the documented examples -----------------------------

NEWEST_COMPLETED = {
    "batchId": "8812",
    "status": "completed",
    "progress": 100,
    "totalItems": 3,
    "processedItems": 3,
    "failedItems": 1,
    "results": [{"customerId": "c1", "success": True}, {"customerId": "c3", "success": True}],
    "errors": [
        {
            "index": 1,
            "customerId": "c2",
            "error": {"code": 3000, "type": "Payload Error", "message": "bad metadata"},
        }
    ],
}

OLDER_COMPLETED = {
    "operation": "events",
    "status": "Completed",
    "finishedCount": 2,
    "errorCount": 1,
    "totalCount": 3,
    "startedAt": "2025-01-01T10:00:01Z",
    "createdAt": "2025-01-01T10:00:00Z",
    "response": {
        "succeeded": [{"customerId": "c1"}, {"customerId": "c3"}],
        "failed": [{"customerId": "c2", "code": 7001, "message": "customer is blocked"}],
    },
}


@pytest.mark.parametrize(
    ("raw", "state"),
    [("pending", "pending"), ("processing", "running"), ("completed", "completed"),
     ("failed", "failed")],
)
def test_newest_states(raw: str, state: str) -> None:
    status = parse_status("newest", {"batchId": "1", "status": raw, "errors": [], "results": []})
    assert status.state == state
    assert status.terminal == (state in ("completed", "failed"))


@pytest.mark.parametrize(
    ("raw", "state"),
    [("Queued", "pending"), ("Running", "running"), ("Completed", "completed"),
     ("Failed", "failed"), ("Stopped", "stopped")],
)
def test_older_states(raw: str, state: str) -> None:
    status = parse_status("older", {"operation": "events", "status": raw, "totalCount": 1})
    assert status.state == state
    assert status.terminal == (state in ("completed", "failed", "stopped"))


def test_newest_completed_with_an_item_error() -> None:
    status = parse_status("newest", NEWEST_COMPLETED)
    assert status.state == "completed"
    assert status.total == 3 and status.processed == 3
    assert status.failed_count == 1
    assert status.failed_items == [
        FailedItem("c2", {"code": 3000, "type": "Payload Error", "message": "bad metadata"}, 1)
    ]


def test_older_completed_with_a_failed_response_entry() -> None:
    status = parse_status("older", OLDER_COMPLETED)
    assert status.state == "completed"
    assert status.total == 3 and status.processed == 3
    assert status.failed_count == 1
    assert status.failed_items == [
        FailedItem("c2", {"code": 7001, "message": "customer is blocked"}, None)
    ]


def test_failed_entries_in_other_plausible_shapes() -> None:
    payload = {
        "status": "completed",
        "errors": [
            {"request": {"customerId": "n1"}, "error": "customer id too long"},
            {"item": {"customer_id": 42, "index": "4"}, "message": "x"},
            "plain text error",
            {"customerId": "n5", "something": "else"},
        ],
        "results": [
            {"customerId": "r1", "success": False, "error": {"code": 3001}},
            {"customerId": "r2", "status": "failed", "reason": "rejected"},
            {"customerId": "r3", "status": "succeeded"},
        ],
    }
    status = parse_status("newest", payload)
    assert status.failed_items == [
        FailedItem("n1", {"message": "customer id too long"}, None),
        FailedItem("42", {"message": "x"}, 4),
        FailedItem(None, {"message": "plain text error"}, None),
        FailedItem("n5", {"something": "else"}, None),
        FailedItem("r1", {"code": 3001}, None),
        FailedItem("r2", {"status": "failed", "reason": "rejected"}, None),
    ]
    assert status.failed_count == 6  # no failedItems count: the list length


def test_counts_without_details_still_count() -> None:
    status = parse_status("older", {"status": "Completed", "errorCount": 7, "finishedCount": 3})
    assert status.failed_count == 7 and status.failed_items == []
    assert status.processed == 10


@pytest.mark.parametrize(
    ("api", "payload", "message"),
    [
        ("newest", None, "not a JSON object"),
        ("newest", ["completed"], "not a JSON object"),
        ("newest", {"batchId": "1"}, "no 'status'"),
        ("newest", {"status": "exploded"}, "unknown job status"),
        ("newest", {"status": 3}, "unknown job status"),
        ("newest", {"status": "completed", "errors": "many"}, "must be arrays"),
        ("older", {"status": "Completed", "response": []}, "must be an object"),
        ("older", {"status": "Completed", "response": {"failed": {}}}, "must be an array"),
    ],
)
def test_unexpected_answers_raise_a_clear_error(api: Any, payload: Any, message: str) -> None:
    with pytest.raises(JobStatusError, match=message):
        parse_status(api, payload)


# --- the tracker, driven with a fake clock and no threads ----------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """The pipeline's side: collects on_done and on_failed_item calls."""

    def __init__(self) -> None:
        self.done: list[tuple[str, int]] = []
        self.failed: list[tuple[str, str, int, dict[str, Any]]] = []
        self.refs: list[EventRef] = []
        self.lock = threading.Lock()

    def on_done(self, status: str, failed_count: int) -> None:
        with self.lock:
            self.done.append((status, failed_count))

    def on_failed_item(self, ref: EventRef, job_id: int, error: dict[str, Any]) -> None:
        with self.lock:
            self.failed.append((ref.customer_id, ref.name, job_id, error))
            self.refs.append(ref)


class ScriptedFetch:
    """Answers per job id from a list (the last answer repeats); records call times."""

    def __init__(self, clock: FakeClock | None, answers: dict[int, list[Any]]) -> None:
        self.clock = clock
        self.answers = answers
        self.calls: list[tuple[int, float]] = []

    def __call__(self, job_id: int) -> tuple[int, dict[str, Any] | None]:
        self.calls.append((job_id, self.clock() if self.clock else time.monotonic()))
        script = self.answers[job_id]
        answer = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]


def items(*customers: str, names: tuple[str, ...] = ("place_order",)) -> list[ItemRefs]:
    """One item per customer; item n's events come from offset n of orders[n % 3]."""
    return [(customer, [("orders", n % 3, n, name) for name in names])
            for n, customer in enumerate(customers)]


def settings(**kw: Any) -> JobTrackingSettings:
    base: dict[str, Any] = {"poll_interval_ms": 1000, "max_polls": 5}
    return JobTrackingSettings(**{**base, **kw})


def tracker(
    fetch: ScriptedFetch, rec: Recorder, clock: FakeClock, **kw: Any
) -> JobTracker:
    return JobTracker(
        settings(**kw), fetch, rec.on_done, rec.on_failed_item, clock=clock, start=False
    )


PENDING = (200, {"batchId": "1", "status": "pending", "errors": [], "results": []})
RUNNING = (200, {"batchId": "1", "status": "processing", "errors": [], "results": []})
DONE = (200, {"batchId": "1", "status": "completed", "failedItems": 0, "errors": []})


def run_until_idle(t: JobTracker, clock: FakeClock, step: float = 0.5, limit: int = 400) -> None:
    for _ in range(limit):
        t.poll_due()
        if t.tracked() == 0:
            return
        clock.now += step
    raise AssertionError("tracker never finished")


def test_polls_with_backoff_until_completed() -> None:
    clock, rec = FakeClock(), Recorder()
    fetch = ScriptedFetch(clock, {7: [PENDING, RUNNING, RUNNING, DONE]})
    t = tracker(fetch, rec, clock)
    t.submit(7, items("a", "b"))
    assert t.poll_due() == 0  # nothing before the first interval
    run_until_idle(t, clock)
    times = [when - 1000.0 for _, when in fetch.calls]
    assert times == [1.0, 2.0, 4.0, 8.0]  # poll_interval, then doubling
    assert rec.done == [("completed", 0)]
    assert rec.failed == []


def test_backoff_is_capped_at_sixteen_intervals() -> None:
    clock, rec = FakeClock(), Recorder()
    fetch = ScriptedFetch(clock, {1: [PENDING]})
    t = tracker(fetch, rec, clock, max_polls=8)
    t.submit(1, items("a"))
    run_until_idle(t, clock)
    times = [when - 1000.0 for _, when in fetch.calls]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == [1.0, 2.0, 4.0, 8.0, 16.0, 16.0, 16.0]
    assert rec.done == [("expired", 0)]


def test_failed_item_reaches_the_hook_for_each_of_its_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, rec = FakeClock(), Recorder()
    fetch = ScriptedFetch(clock, {8812: [(200, NEWEST_COMPLETED)]})
    t = tracker(fetch, rec, clock)
    batch = items("c1", "c2", "c3", names=("place_order", "write_review"))
    with caplog.at_level(logging.WARNING, logger="connector.jobs"):
        t.submit(8812, batch)
        run_until_idle(t, clock)
    error = {"code": 3000, "type": "Payload Error", "message": "bad metadata"}
    assert sorted(rec.failed, key=lambda f: f[1]) == [
        ("c2", "place_order", 8812, error),
        ("c2", "write_review", 8812, error),
    ]
    assert sorted(rec.refs) == [EventRef("orders", 1, 1, "c2", "place_order"),
                                EventRef("orders", 1, 1, "c2", "write_review")]
    assert rec.done == [("completed", 1)]
    item_lines = [r for r in caplog.records if r.getMessage() == "batch job item failed"]
    assert len(item_lines) == 1
    assert item_lines[0].__dict__["customer_id"] == "c2"
    assert item_lines[0].__dict__["gameball_error"] == error
    assert item_lines[0].__dict__["job_id"] == 8812


def test_older_api_answer_is_understood() -> None:
    clock, rec = FakeClock(), Recorder()
    queued = (200, {"operation": "events", "status": "Queued", "totalCount": 3})
    fetch = ScriptedFetch(clock, {5: [queued, (200, OLDER_COMPLETED)]})
    t = tracker(fetch, rec, clock, status_api="older")
    t.submit(5, items("c1", "c2", "c3"))
    run_until_idle(t, clock)
    assert [(c, j, e["code"]) for c, _, j, e in rec.failed] == [("c2", 5, 7001)]
    assert rec.done == [("completed", 1)]


def test_failure_by_customer_fails_every_item_of_that_customer() -> None:
    clock, rec = FakeClock(), Recorder()
    answer = {"status": "completed", "errors": [{"customerId": "dup", "message": "no"}]}
    fetch = ScriptedFetch(clock, {1: [(200, answer)]})
    t = tracker(fetch, rec, clock)
    t.submit(1, items("dup", "other", "dup"))
    run_until_idle(t, clock)
    assert [c for c, *_ in rec.failed] == ["dup", "dup"]


def test_failure_by_index_picks_exactly_that_item() -> None:
    clock, rec = FakeClock(), Recorder()
    answer = {"status": "completed", "errors": [{"index": 2, "customerId": "dup", "code": 1}]}
    fetch = ScriptedFetch(clock, {1: [(200, answer)]})
    t = tracker(fetch, rec, clock)
    batch = items("dup", "other", "dup")
    t.submit(1, batch)
    run_until_idle(t, clock)
    assert len(rec.failed) == 1
    assert rec.refs == [EventRef("orders", 2, 2, "dup", "place_order")]


def test_failed_job_without_details_dead_letters_every_item() -> None:
    clock, rec = FakeClock(), Recorder()
    fetch = ScriptedFetch(clock, {3: [(200, {"status": "failed", "errors": []})]})
    t = tracker(fetch, rec, clock)
    t.submit(3, items("a", "b"))
    run_until_idle(t, clock)
    assert sorted(c for c, *_ in rec.failed) == ["a", "b"]
    assert rec.done == [("failed", 2)]


def test_stopped_job_is_reported_without_dead_letters() -> None:
    clock, rec = FakeClock(), Recorder()
    fetch = ScriptedFetch(clock, {3: [(200, {"status": "Stopped", "finishedCount": 1})]})
    t = tracker(fetch, rec, clock, status_api="older")
    t.submit(3, items("a", "b"))
    run_until_idle(t, clock)
    assert rec.failed == [] and rec.done == [("stopped", 0)]


def test_unavailable_status_is_retried_then_expires(caplog: pytest.LogCaptureFixture) -> None:
    clock, rec = FakeClock(), Recorder()
    answers = [(404, None), (503, None), ConnectionError("reset"), (200, {"status": "odd"})]
    fetch = ScriptedFetch(clock, {9: [*answers, PENDING]})
    t = tracker(fetch, rec, clock, max_polls=6)
    with caplog.at_level(logging.WARNING, logger="connector.jobs"):
        t.submit(9, items("a"))
        run_until_idle(t, clock)
    assert len(fetch.calls) == 6
    assert rec.done == [("expired", 0)]
    assert any("unexpected job status answer" in r.getMessage() for r in caplog.records)
    assert any("not finished after max_polls" in r.getMessage() for r in caplog.records)


def test_transient_errors_then_success_completes() -> None:
    clock, rec = FakeClock(), Recorder()
    fetch = ScriptedFetch(clock, {9: [(404, None), TimeoutError("slow"), (429, None), DONE]})
    t = tracker(fetch, rec, clock)
    t.submit(9, items("a"))
    run_until_idle(t, clock)
    assert rec.done == [("completed", 0)]


def test_beyond_max_tracked_the_oldest_is_dropped() -> None:
    clock, rec = FakeClock(), Recorder()
    fetch = ScriptedFetch(clock, {n: [DONE] for n in range(5)})
    t = tracker(fetch, rec, clock, max_tracked=3)
    for n in range(5):
        t.submit(n, items(f"c{n}"))
    assert t.tracked() == 3 and t.dropped == 2
    assert rec.done == [("dropped", 0), ("dropped", 0)]
    run_until_idle(t, clock)
    assert sorted(job for job, _ in fetch.calls) == [2, 3, 4]
    assert rec.done.count(("completed", 0)) == 3


def test_a_failing_hook_does_not_stop_tracking(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    fetch = ScriptedFetch(clock, {1: [(200, NEWEST_COMPLETED)], 2: [DONE]})
    done: list[str] = []

    def bad_failed_item(ref: EventRef, job_id: int, error: dict[str, Any]) -> None:
        raise RuntimeError("producer gone")

    t = JobTracker(
        settings(), fetch, lambda s, n: done.append(s), bad_failed_item, clock=clock, start=False
    )
    t.submit(1, items("c1", "c2"))
    t.submit(2, items("x"))
    with caplog.at_level(logging.ERROR, logger="connector.jobs"):
        run_until_idle(t, clock)
    assert done == ["completed", "completed"]
    assert any("on_failed_item hook failed" in r.getMessage() for r in caplog.records)


def test_packed_items_give_back_every_ref_as_submitted() -> None:
    submitted: list[ItemRefs] = [
        ("c-é", [("orders", 0, 10, "place_order"), ("reviews", 5, 2**40, "write_review")]),
        ("", [("orders", 0, 11, "place_order")]),
        ("c-é", []),
        ("z" * 300, [("orders", 70000 % 7, 12, "x"), ("orders", 3, 0, "place_order")]),
    ]
    packed = JobItems(submitted)
    assert len(packed) == 4 and packed.events == 5
    for i, (customer, refs) in enumerate(submitted):
        assert packed.customer(i) == customer
        assert packed.refs(i) == [EventRef(t, p, o, customer, n) for t, p, o, n in refs]


_refs = st.lists(st.tuples(st.sampled_from(["orders", "reviews"]), st.integers(0, 3),
                           st.integers(0, 2**40), st.sampled_from(["a", "b", "place_order"])),
                 max_size=6)


@given(st.lists(st.tuples(st.sampled_from(["c1", "c2", ""]), _refs), max_size=12))
def test_packing_any_mix_of_partitions_and_names_gives_the_refs_back(
        submitted: list[ItemRefs]) -> None:
    """Packing looks partitions and names up once per run of equal ones: any order of
    changes must still give every event back as submitted."""
    packed = JobItems(submitted)
    assert len(packed) == len(submitted)
    for i, (customer, refs) in enumerate(submitted):
        assert packed.refs(i) == [EventRef(t, p, o, customer, n) for t, p, o, n in refs]


def test_a_tracked_job_keeps_tens_of_bytes_per_event() -> None:
    """What made tracking heavy was keeping events, metadata and messages: a job of
    1,000 items now costs well under 100 bytes an event (docs/metrics.md)."""
    submitted = [(f"customer-{n:06d}", [("orders", n % 6, 5_000_000 + n, "place_order")])
                 for n in range(1000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        packed = JobItems(submitted)
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert packed.events == 1000
    assert kept < 100 * 1000


# --- the tracker with its real worker threads ----------------------------------------


def test_workers_poll_in_background_with_bounded_concurrency() -> None:
    rec = Recorder()
    gate = threading.Event()
    state = {"now": 0, "max": 0}
    lock = threading.Lock()

    def fetch(job_id: int) -> tuple[int, dict[str, Any] | None]:
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        gate.wait(10)
        with lock:
            state["now"] -= 1
        return DONE

    t = JobTracker(
        settings(poll_interval_ms=10, max_concurrent=2), fetch, rec.on_done, rec.on_failed_item
    )
    before = set(threading.enumerate())
    started = time.monotonic()
    for n in range(6):
        t.submit(n, items(f"c{n}"))
    assert time.monotonic() - started < 0.5  # submit never waits for a poll

    deadline = time.monotonic() + 5
    while state["now"] < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert state["now"] == 2  # two polls blocked: the other jobs wait their turn
    gate.set()
    while len(rec.done) < 6 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert rec.done == [("completed", 0)] * 6
    assert state["max"] == 2
    workers = [th for th in set(threading.enumerate()) - before if th.name.startswith("gameball")]
    assert len(workers) == 2
    t.close(timeout=2)
    assert not any(th.is_alive() for th in workers)


def test_close_stops_workers_and_reports_unfinished_jobs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rec = Recorder()
    t = JobTracker(
        settings(poll_interval_ms=60_000), lambda j: DONE, rec.on_done, rec.on_failed_item
    )
    t.submit(41, items("a"))
    with caplog.at_level(logging.WARNING, logger="connector.jobs"):
        started = time.monotonic()
        t.close(timeout=2)
    assert time.monotonic() - started < 1.5  # workers wake up at once, no wait for the poll
    assert rec.done == []
    (line,) = [r for r in caplog.records if "unfinished at shutdown" in r.getMessage()]
    assert line.__dict__["job_ids"] == [41]
    t.submit(42, items("b"))  # after close: ignored, not tracked
    assert t.tracked() == 1


def test_a_job_due_before_the_timed_waiter_wakes_is_polled_on_time() -> None:
    """One idle worker times the next due poll; the others sleep until woken. A job
    submitted while that worker waits for a job backed off far ahead (here 1.6 s) is
    still polled at its own time (0.1 s), not when the timed waiter wakes."""
    rec = Recorder()
    polled: dict[int, list[float]] = {1: [], 2: []}

    def fetch(job_id: int) -> tuple[int, dict[str, Any] | None]:
        polled[job_id].append(time.monotonic())
        return RUNNING if job_id == 1 else DONE

    t = JobTracker(
        settings(poll_interval_ms=100, max_polls=30, max_concurrent=3),
        fetch, rec.on_done, rec.on_failed_item,
    )
    t.submit(1, items("slow"))
    deadline = time.monotonic() + 10
    # backoff 0.1, 0.1, 0.2, 0.4, 0.8, then 1.6 s: after the fifth poll the next is far
    while len(polled[1]) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(polled[1]) == 5
    submitted = time.monotonic()
    t.submit(2, items("quick"))
    while not rec.done and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rec.done == [("completed", 0)]
    assert polled[2][0] - submitted < 0.8  # due after 0.1 s; the timed waiter sleeps 1.6 s
    assert len(polled[1]) == 5  # and job 1 was not polled early
    t.close(timeout=2)
