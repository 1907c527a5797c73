"""The job tracker's status-read budget, its sampling when reads fall behind, 429s, ids.

Driven with a fake clock and no threads (`poll_due`), as in test_jobs.py.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from connector.config import JobTrackingSettings
from connector.jobreads import ReadBudget, job_id_of
from connector.jobs import JobTracker, StatusRead
from tests.support import max_in_window
from tests.unit.test_jobs import DONE, PENDING, FakeClock, Recorder, ScriptedFetch, items


def make(fetch: Any, rec: Recorder, clock: FakeClock, **kw: Any) -> JobTracker:
    settings = JobTrackingSettings(**{"poll_interval_ms": 1000, "max_polls": 5, **kw})
    return JobTracker(settings, fetch, rec.on_done, rec.on_failed_item, clock=clock, start=False)


def drive(t: JobTracker, clock: FakeClock, seconds: float, step: float = 0.01,
          submit_every: float | None = None, first_id: int = 0) -> int:
    """Advance fake time, polling as the workers would; optionally submit jobs at a pace."""
    submitted, next_submit, end = 0, clock.now, clock.now + seconds
    while clock.now < end:
        while submit_every is not None and next_submit <= clock.now:
            t.submit(first_id + submitted, items(f"c{submitted}"))
            submitted += 1
            next_submit += submit_every
        t.poll_due()
        clock.now += step
    return submitted


def test_the_budget_is_the_others_bucket_ratio() -> None:
    budget = ReadBudget(10, now=0.0)
    assert [(w.limit, w.seconds) for w in budget.windows] == [(10, 1.0), (120, 30.0)]
    assert budget.sustained == pytest.approx(4.0)  # 120 per 30 s
    # At the maximum the config allows, the tracker alone fills the account's bucket.
    assert [(w.limit, w.seconds) for w in ReadBudget(30, now=0.0).windows] == [
        (30, 1.0), (360, 30.0)]


def test_reads_stay_within_both_windows_and_excess_jobs_are_skipped() -> None:
    """40 jobs/s (Gameball's batch rate at 1,000 items) against a 10/s budget."""
    clock, rec = FakeClock(), Recorder()
    fetch = ScriptedFetch(clock, {n: [DONE] for n in range(4000)})
    t = make(fetch, rec, clock, max_reads_per_second=10)
    submitted = drive(t, clock, 60.0, submit_every=0.025)
    times = [when for _, when in fetch.calls]
    assert max_in_window(times, 1.0) <= 10
    assert max_in_window(times, 30.0) <= 120
    assert len(times) >= 100  # and it does read: about 4/s sustained
    outcomes = [status for status, _ in rec.done]
    assert outcomes.count("completed") == len(times)
    assert outcomes.count("skipped") == t.skipped > submitted // 2
    assert t.tracked() <= 40  # a bounded sample, not a queue of every job
    assert "dropped" not in outcomes  # skipping keeps max_tracked out of play


def test_within_the_budget_every_job_is_tracked() -> None:
    clock, rec = FakeClock(), Recorder()
    fetch = ScriptedFetch(clock, {n: [DONE] for n in range(100)})
    t = make(fetch, rec, clock, max_reads_per_second=10)
    submitted = drive(t, clock, 30.0, submit_every=0.5)  # 2 jobs/s, 4 reads/s of budget
    drive(t, clock, 5.0)
    assert t.skipped == 0
    assert [s for s, _ in rec.done] == ["completed"] * submitted


def test_a_429_on_a_status_read_waits_retry_after_and_reads_slower() -> None:
    clock, rec = FakeClock(), Recorder()
    throttled = StatusRead(429, None, retry_after=5.0)
    fetch = ScriptedFetch(clock, {1: [throttled, DONE], 2: [PENDING, DONE]})
    t = make(fetch, rec, clock, max_polls=10)
    t.submit(1, items("a"))
    t.submit(2, items("b"))
    drive(t, clock, 20.0)
    throttled_at = next(when for job, when in fetch.calls if job == 1)
    after = [when for _, when in fetch.calls if when > throttled_at]
    assert after and min(after) >= throttled_at + 5.0  # no job is read during Retry-After
    assert t.throttled == 1 and t.reads == len(fetch.calls)
    assert sorted(s for s, _ in rec.done) == ["completed", "completed"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(7, 7), (7.0, 7), ("8812", "8812"), (" b-17 ", "b-17"), ("a/b", "a/b")],
)
def test_numeric_and_string_job_ids_are_accepted(raw: Any, expected: Any) -> None:
    assert job_id_of(raw) == (expected, None)


@pytest.mark.parametrize("raw", [None, True, 7.5, "", "  ", [7], {"id": 7}, "a\nb"])
def test_unusable_job_ids_name_their_cause(raw: Any) -> None:
    job_id, cause = job_id_of(raw)
    assert job_id is None and cause


def test_a_string_id_is_tracked_and_read_by_that_id() -> None:
    clock, rec = FakeClock(), Recorder()
    fetch = ScriptedFetch(clock, {"b-17": [DONE]})  # type: ignore[dict-item]
    t = make(fetch, rec, clock)
    t.submit("b-17", items("a"))
    drive(t, clock, 3.0)
    assert [job for job, _ in fetch.calls] == ["b-17"] and rec.done == [("completed", 0)]


def test_answers_without_a_usable_id_are_counted_and_logged_once_per_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, rec = FakeClock(), Recorder()
    t = make(ScriptedFetch(clock, {}), rec, clock)
    with caplog.at_level(logging.WARNING, logger="connector.jobs"):
        for raw in (None, None, None, 1.5, 1.5, True):
            t.submit(raw, items("a"))
    assert rec.done == [("untracked", 0)] * 6
    causes = [r.__dict__["cause"] for r in caplog.records if "cannot be tracked" in r.getMessage()]
    assert causes == ["the answer has no jobId", "jobId is a fractional number",
                      "jobId is a boolean"]
    assert t.tracked() == 0
