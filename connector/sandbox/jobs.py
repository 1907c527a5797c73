"""Batch jobs: what a job's status looks like at a given moment.

A job is queued for the first half of its delay, runs through the second half
(items processed in order, at an even pace) and then completes. Items whose customer
is in `job_fail_customers` fail with a 2000 error. Pure: `now` is passed in.
Both documented answer shapes are built here: the newest (batches--batch-management--
check-status.mdx: `batchId` a string, status pending/processing/completed/failed) and
the older (tutorials--batch-apis.mdx: `response.successful` / `response.failed`). The
entries of their item lists are the sandbox's choice (Gameball does not document them)
and are described in docs/sandbox.md.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any


def iso(wall: float) -> str:
    """ISO-8601 UTC with milliseconds, as in `receivedAt`."""
    return dt.datetime.fromtimestamp(wall, dt.UTC).isoformat(timespec="milliseconds")


@dataclass
class Job:
    """One accepted batch. Times are monotonic seconds, plus wall time for display."""

    job_id: int
    customer_ids: tuple[str, ...]
    failures: dict[int, dict[str, Any]]  # item index -> error object
    created: float
    created_wall: float
    delay: float  # seconds from acceptance to completion
    stopped: float | None = None

    @property
    def total(self) -> int:
        return len(self.customer_ids)

    def processed(self, now: float) -> int:
        """Items processed by `now` (frozen once the job is stopped)."""
        if self.stopped is not None:
            now = min(now, self.stopped)
        if self.delay <= 0:
            return self.total
        half = self.delay / 2
        elapsed = now - self.created
        if elapsed < half:
            return 0
        if elapsed >= self.delay:
            return self.total
        return min(self.total, int(self.total * (elapsed - half) / half))

    def phase(self, now: float) -> str:
        """queued | running | completed | failed | stopped."""
        processed = self.processed(now)
        if processed >= self.total:
            return "failed" if len(self.failures) == self.total else "completed"
        if self.stopped is not None and now >= self.stopped:
            return "stopped"
        return "queued" if processed == 0 and now - self.created < self.delay / 2 else "running"

    def outcomes(self, processed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(succeeded, failed) entries among the first `processed` items."""
        succeeded: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for index in range(processed):
            entry: dict[str, Any] = {"index": index, "customerId": self.customer_ids[index]}
            error = self.failures.get(index)
            if error is None:
                succeeded.append(entry)
            else:
                entry["error"] = error
                failed.append(entry)
        return succeeded, failed

    def wall(self, monotonic: float) -> str:
        """ISO-8601 UTC wall time of a monotonic instant of this job."""
        return iso(self.created_wall + (monotonic - self.created))


_NEWEST = {"queued": "pending", "running": "processing", "completed": "completed",
           "failed": "failed", "stopped": "failed"}
_OLDER = {"queued": "queued", "running": "running", "completed": "completed",
          "failed": "failed", "stopped": "stopped"}


def newest_status(job: Job, now: float) -> dict[str, Any]:
    """GET /api/v4.0/integrations/batches/{id}/status (newest documentation page)."""
    processed = job.processed(now)
    succeeded, failed = job.outcomes(processed)
    for entry in succeeded:
        entry["status"] = "successful"
    return {
        "batchId": str(job.job_id),
        "status": _NEWEST[job.phase(now)],
        "progress": 100 if job.total == 0 else processed * 100 // job.total,
        "totalItems": job.total,
        "processedItems": processed,
        "failedItems": len(failed),
        "results": succeeded,
        "errors": failed,
    }


def older_status(job: Job, now: float) -> dict[str, Any]:
    """GET /api/v4/integrations/batch/{jobId} (older v4 page)."""
    processed = job.processed(now)
    succeeded, failed = job.outcomes(processed)
    started = job.created + job.delay / 2
    return {
        "operation": "events",
        "status": _OLDER[job.phase(now)],
        "finishedCount": processed,
        "errorCount": len(failed),
        "totalCount": job.total,
        "startedAt": job.wall(started) if now >= started else None,
        "createdAt": job.wall(job.created),
        "response": {"successful": succeeded, "failed": failed},
    }


def stop_answer(job: Job, now: float) -> dict[str, Any]:
    """POST /api/v4.0/integrations/batches/{id}/stop (batches--batch-management--
    stop-execution.mdx: `batchId`, `status`, `message`)."""
    phase = job.phase(now)
    message = ("Batch operation stopped" if phase == "stopped"
               else f"Batch already {_NEWEST[phase]}: nothing to stop")
    return {"batchId": str(job.job_id), "status": phase, "message": message}
