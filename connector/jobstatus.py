"""What a batch job's status answer says, reduced to what the job tracker needs.

Pure: `parse_status(api, payload)` understands both documented answers (the newest
check-status page and the older v4 tutorial) and raises `JobStatusError` on any other
shape. Called by the tracker's workers (connector/jobs.py) and by tests with canned
answers. The shape of one failed entry is not documented, hence the tolerant reading.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from connector.records import ConnectorError

JobState = Literal["pending", "running", "completed", "failed", "stopped"]
StatusApi = Literal["newest", "older"]

TERMINAL: frozenset[str] = frozenset({"completed", "failed", "stopped"})

# Both vocabularies, lower-cased: newest page (pending/processing/completed/failed)
# and older v4 page (Queued/Running/Completed/Failed/Stopped).
_STATES: dict[str, JobState] = {
    "pending": "pending",
    "queued": "pending",
    "processing": "running",
    "running": "running",
    "inprogress": "running",
    "in_progress": "running",
    "completed": "completed",
    "succeeded": "completed",
    "failed": "failed",
    "stopped": "stopped",
    "cancelled": "stopped",
    "canceled": "stopped",
}

_CUSTOMER_KEYS = ("customerId", "customer_id", "playerUniqueId")
_INDEX_KEYS = ("index", "itemIndex", "item_index")
# Where a failed entry may nest the item it is about.
_NESTED_ITEM_KEYS = ("item", "request", "body", "input", "data")
_ERROR_KEYS = ("code", "type", "message", "error", "errors", "reason", "requestId", "status")


class JobStatusError(ConnectorError):
    """A status answer that is not one of the documented shapes."""


class FailedItem(NamedTuple):
    """One item the job reports as failed: who, why, and where in the batch if known."""

    customer_id: str | None
    error: dict[str, Any]
    position: int | None = None  # index of the item in the submitted batch


@dataclass(frozen=True, slots=True)
class JobStatus:
    """A status answer reduced to what the tracker needs (see `parse_status`)."""

    state: JobState
    failed_items: list[FailedItem] = field(default_factory=list)
    failed_count: int = 0
    total: int | None = None
    processed: int | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _find(entry: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if entry.get(key) is not None:
            return entry[key]
    for nest in _NESTED_ITEM_KEYS:
        inner = entry.get(nest)
        if isinstance(inner, Mapping):
            for key in keys:
                if inner.get(key) is not None:
                    return inner[key]
    return None


def _failed_entry(entry: Any) -> FailedItem:
    """Read one entry of an errors / failed list; tolerant because the item shape is
    not documented (only "an array of failed results")."""
    if not isinstance(entry, Mapping):
        return FailedItem(None, {"message": str(entry)})
    customer = _find(entry, _CUSTOMER_KEYS)
    index = _int(_find(entry, _INDEX_KEYS))
    err = entry.get("error")
    if isinstance(err, Mapping):
        error = dict(err)
    elif isinstance(err, str):
        error = {"message": err}
    else:
        error = {k: entry[k] for k in _ERROR_KEYS if k in entry}
        if not error:
            nested = set(_NESTED_ITEM_KEYS) | set(_CUSTOMER_KEYS) | set(_INDEX_KEYS)
            error = {k: v for k, v in entry.items() if k not in nested} or {
                "message": "failed without details"
            }
    return FailedItem(None if customer is None else str(customer), error, index)


def _state(raw: Any) -> JobState:
    if not isinstance(raw, str) or raw.strip().lower() not in _STATES:
        raise JobStatusError(f"unknown job status {raw!r}")
    return _STATES[raw.strip().lower()]


def _is_failed_result(entry: Any) -> bool:
    if not isinstance(entry, Mapping):
        return False
    if entry.get("success") is False or entry.get("succeeded") is False:
        return True
    status = entry.get("status")
    return (isinstance(status, str) and status.lower() in ("failed", "error")) or bool(
        entry.get("error")
    )


def parse_status(api: StatusApi, payload: Any) -> JobStatus:
    """Reduce a status answer to a `JobStatus`; raise `JobStatusError` on any other shape.

    newest: `{batchId, status: pending|processing|completed|failed, progress, totalItems,
    processedItems, failedItems, results: [...], errors: [...]}`.
    older: `{operation, status: Queued|Running|Completed|Failed|Stopped, finishedCount,
    errorCount, totalCount, startedAt, createdAt, response: {succeeded: [...], failed: [...]}}`.
    Pure; called by the tracker's workers and by tests with canned answers.
    """
    if not isinstance(payload, Mapping):
        raise JobStatusError(f"job status answer is not a JSON object: {type(payload).__name__}")
    if "status" not in payload:
        raise JobStatusError("job status answer has no 'status' field")
    state = _state(payload["status"])
    failed: list[FailedItem]
    if api == "newest":
        errors = payload.get("errors")
        errors = [] if errors is None else errors
        results = payload.get("results")
        results = [] if results is None else results
        if not isinstance(errors, list) or not isinstance(results, list):
            raise JobStatusError("'errors' and 'results' must be arrays")
        count = _int(payload.get("failedItems"))
        failed = [_failed_entry(e) for e in errors]
        if count != 0 or errors:
            # `results` lists every item (1,000 a batch): read it only when something failed
            failed += [_failed_entry(r) for r in results if _is_failed_result(r)]
        total = _int(payload.get("totalItems"))
        processed = _int(payload.get("processedItems"))
    elif api == "older":
        response = payload.get("response")
        response = {} if response is None else response
        if not isinstance(response, Mapping):
            raise JobStatusError("'response' must be an object")
        failed_raw = response.get("failed")
        failed_raw = [] if failed_raw is None else failed_raw
        if not isinstance(failed_raw, list):
            raise JobStatusError("'response.failed' must be an array")
        failed = [_failed_entry(e) for e in failed_raw]
        count = _int(payload.get("errorCount"))
        total = _int(payload.get("totalCount"))
        finished = _int(payload.get("finishedCount"))
        processed = None if finished is None else finished + (count or 0)
    else:
        raise ValueError(f"status api must be 'newest' or 'older', not {api!r}")
    return JobStatus(
        state=state,
        failed_items=failed,
        failed_count=max(count or 0, len(failed)),
        total=total,
        processed=processed,
    )


