"""Batch job status over time, in both documented answer shapes."""

from __future__ import annotations

from typing import Any

from connector.sandbox.jobs import Job, newest_status, older_status

ERROR = {"code": 2000, "type": "Request Error", "message": "m", "documentationUrl": "u",
         "requestId": "r"}


def job(delay: float = 0.0, customers: tuple[str, ...] = ("a", "b", "c", "d"),
        failures: dict[int, dict[str, Any]] | None = None) -> Job:
    return Job(job_id=7, customer_ids=customers, failures=failures or {}, created=100.0,
               created_wall=1_700_000_000.0, delay=delay)


def test_without_delay_a_job_is_complete_at_once() -> None:
    status = newest_status(job(), now=100.0)
    assert status == {
        "batchId": "7", "status": "completed", "progress": 100, "totalItems": 4,
        "processedItems": 4, "failedItems": 0,
        "results": [{"index": i, "customerId": c, "status": "successful"}
                    for i, c in enumerate("abcd")],
        "errors": [],
    }
    older = older_status(job(), now=100.0)
    assert older["status"] == "completed"
    assert (older["finishedCount"], older["errorCount"], older["totalCount"]) == (4, 0, 4)
    assert older["operation"] == "events"
    assert older["createdAt"].startswith("2023-11-14T22:13:20.000")
    assert older["response"] == {"successful": [{"index": i, "customerId": c}
                                               for i, c in enumerate("abcd")], "failed": []}


def test_a_delayed_job_queues_then_runs_then_completes() -> None:
    delayed = job(delay=2.0)
    assert newest_status(delayed, 100.5)["status"] == "pending"
    queued = older_status(delayed, 100.5)
    assert queued["status"] == "queued" and queued["startedAt"] is None
    running = newest_status(delayed, 101.5)
    assert running["status"] == "processing"
    assert running["processedItems"] == 2 and running["progress"] == 50
    assert older_status(delayed, 101.5)["status"] == "running"
    assert older_status(delayed, 101.5)["startedAt"] is not None
    assert newest_status(delayed, 102.0)["status"] == "completed"
    assert older_status(delayed, 102.0)["finishedCount"] == 4


def test_failed_items_are_reported_with_their_error() -> None:
    partial = job(failures={1: ERROR})
    status = newest_status(partial, 100.0)
    assert status["status"] == "completed"  # partial success is still a completed job
    assert status["failedItems"] == 1
    assert status["errors"] == [{"index": 1, "customerId": "b", "error": ERROR}]
    assert [r["customerId"] for r in status["results"]] == ["a", "c", "d"]
    older = older_status(partial, 100.0)
    assert older["errorCount"] == 1
    assert older["response"]["failed"] == [{"index": 1, "customerId": "b", "error": ERROR}]


def test_a_job_whose_items_all_failed_is_failed() -> None:
    all_bad = job(customers=("a", "b"), failures={0: ERROR, 1: ERROR})
    assert newest_status(all_bad, 100.0)["status"] == "failed"
    assert older_status(all_bad, 100.0)["status"] == "failed"


def test_failures_appear_only_once_processed() -> None:
    delayed = job(delay=2.0, failures={3: ERROR})
    assert newest_status(delayed, 101.5)["failedItems"] == 0  # item 3 not reached yet
    assert newest_status(delayed, 102.0)["failedItems"] == 1


def test_stopping_freezes_a_running_job() -> None:
    delayed = job(delay=2.0)
    delayed.stopped = 101.5
    later = older_status(delayed, 105.0)
    assert later["status"] == "stopped" and later["finishedCount"] == 2
    assert newest_status(delayed, 105.0)["status"] == "failed"


def test_stopping_a_finished_job_changes_nothing() -> None:
    done = job()
    done.stopped = 100.5
    assert older_status(done, 101.0)["status"] == "completed"
