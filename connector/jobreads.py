"""What the job tracker may read: the status-read budget, and which job ids it can use.

Status reads are not Events: by Gameball's rate-limiting page they fall in the "Others"
bucket (30 requests/s and 360 per 30 s, per account). `ReadBudget` keeps the tracker's
reads within `job_tracking.max_reads_per_second` and the same share of the 30 s window
(12 x, the bucket's own ratio), with the send path's limiter kind
(`connector.ratelimit.RateLimiter`), and backs off on a 429 with its Retry-After.
docs/delivery.md ("Job status reads") has the arithmetic at the account's ceiling.

`job_id_of` reads the `jobId` of a create answer: the reference documents a number, the
status page a string `batchId`; both are accepted, anything else is named as a cause.
Pure: the caller passes `now`.
"""

from __future__ import annotations

import math
from typing import Any

from connector.ratelimit import RateLimiter, Window

JobId = int | str

# The Others bucket: 30/s and 360 per 30 s, i.e. 12 seconds' worth of the per-second rate.
OTHERS_PER_SECOND = 30
OTHERS_PER_30_SECONDS = 360
_THIRTY_SECOND_SHARE = OTHERS_PER_30_SECONDS / OTHERS_PER_SECOND


class ReadBudget:
    """Status reads per second for the tracker's workers (thread-safe).

    `acquire(now)` takes a read slot (0) or says how long to wait; `throttled` is called
    when a status read met 429. `sustained` is the long-run reads per second.
    """

    def __init__(self, per_second: int, now: float) -> None:
        per_30 = max(1, math.floor(per_second * _THIRTY_SECOND_SHARE))
        self.windows = [Window(per_second, 1.0), Window(per_30, 30.0)]
        self._limiter = RateLimiter(self.windows)
        # Start the refill clock now: the bucket starts empty (as the send limiter's does,
        # so a restart cannot burst) and fills while the first jobs wait their interval.
        self._limiter.limits(now)

    @property
    def sustained(self) -> float:
        return min(w.limit / w.seconds for w in self.windows)

    def acquire(self, now: float) -> float:
        return self._limiter.acquire(now)

    def throttled(self, now: float, retry_after: float | None) -> None:
        """A status read answered 429: wait Retry-After (at least a second), read slower."""
        self._limiter.throttled(now, retry_after if retry_after else 1.0)


def job_id_of(raw: Any) -> tuple[JobId | None, str | None]:
    """(id, None) for a usable `jobId`, else (None, the cause) for one log line per cause.

    Numbers (whole) and non-empty strings are ids; called by the tracker on submit.
    """
    if raw is None:
        return None, "the answer has no jobId"
    if isinstance(raw, bool):
        return None, "jobId is a boolean"
    if isinstance(raw, int):
        return raw, None
    if isinstance(raw, float):
        if raw.is_integer():
            return int(raw), None
        return None, "jobId is a fractional number"
    if isinstance(raw, str):
        text = raw.strip()
        if text and text.isprintable():  # the client quotes it into the status path
            return text, None
        return None, "jobId is an empty or unprintable string"
    return None, f"jobId is a JSON {type(raw).__name__}"
