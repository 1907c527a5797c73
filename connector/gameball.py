"""HTTP client for Gameball's event endpoints, and the table that judges its answers.

`classify(answer)` is pure: HTTP status x Gameball error code -> what to do
(docs/delivery.md has the table with reasons). `GameballClient` does the I/O with a
thread-safe urllib3 pool (keep-alive, explicit timeouts, no hidden retries: the
sender decides). Secrets go only into request headers, never into errors or logs.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any

import orjson
import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ReadTimeoutError,
)

from connector.config import GameballSettings
from connector.records import Batch

BATCH_PATH = "/api/v4.0/integrations/batch/events"
EVENTS_PATH = "/api/v4.0/integrations/events"
# A Retry-After beyond this is treated as this: one odd header must not park the connector.
MAX_RETRY_AFTER = 3600.0
STATUS_PATHS = {
    "newest": "/api/v4.0/integrations/batches/{job_id}/status",
    "older": "/api/v4/integrations/batch/{job_id}",
}


class Action(Enum):
    ACCEPTED = "accepted"
    RETRY = "retry"  # transient: back off and send again
    REJECT = "reject"  # the data is bad: bisect, dead-letter the bad items
    HALT = "halt"  # our credentials or account: not the data's fault, never commit past


@dataclass(frozen=True, slots=True)
class Answer:
    """What came back for one request; `status` None means no answer at all."""

    status: int | None
    body: dict[str, Any] | None = None
    retry_after: float | None = None
    request_id: str | None = None
    # True when the request may have reached Gameball (answer lost after sending).
    maybe_sent: bool = False
    error: str | None = None

    @property
    def code(self) -> int | None:
        if self.body is None:
            return None
        code = self.body.get("code")
        return code if isinstance(code, int) else None

    def describe(self) -> str:
        """A log-safe one-line summary (no headers, no body beyond the error object)."""
        if self.status is None:
            return f"no answer ({self.error})"
        parts = [f"HTTP {self.status}"]
        if self.body:
            for key in ("code", "type", "message"):
                if key in self.body:
                    parts.append(f"{key}={self.body[key]}")
        if self.request_id:
            parts.append(f"requestId={self.request_id}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    reason: str  # a short word for metrics labels and logs


def classify(answer: Answer) -> Verdict:
    """Decide what an answer means. Pure; the table is unit-tested row by row.

    Order matters: "slow down" answers first, then what is never the data's fault
    (credentials, account, subscription, wrong URL, request framing), then Gameball's
    own trouble (5xx), and only then a 4xx that blames the items (bisect them).
    """
    status, code = answer.status, answer.code
    if status is None:
        error = (answer.error or "").lower()
        return Verdict(
            Action.RETRY, "timeout" if "timed out" in error or "timeout" in error else "connection"
        )
    if 200 <= status < 300:
        return Verdict(Action.ACCEPTED, "ok")
    if status == 429:
        return Verdict(Action.RETRY, "rate_limited")
    if status == 408:
        return Verdict(Action.RETRY, "request_timeout")
    if status == 422 and code == 2001:
        return Verdict(Action.RETRY, "concurrent_customer")
    if status in (401, 403) or (code is not None and 1000 <= code < 2000):
        return Verdict(Action.HALT, "auth")
    if code is not None and 6000 <= code < 7000:
        return Verdict(Action.HALT, "account")
    if code is not None and 8000 <= code < 9000:
        return Verdict(Action.HALT, "subscription")
    if status == 501:
        return Verdict(Action.HALT, "not_implemented")
    if status >= 500:
        return Verdict(Action.RETRY, "server_error")
    if status == 404:
        return Verdict(Action.HALT, "not_found")  # wrong base_url or path: not the data
    if status < 200 or 300 <= status < 400:
        return Verdict(Action.HALT, "unexpected_status")  # a redirect: fix base_url
    if code is not None and 2000 <= code < 3000:
        return Verdict(Action.HALT, "request")  # how we framed the request, not the items
    return Verdict(Action.REJECT, "rejected")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After in seconds or as an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive parse means UTC
            when = when.replace(tzinfo=dt.UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


# --- request bodies ---------------------------------------------------------------------


def encode_batch(batch: Batch) -> bytes:
    """`{"body": [{"customerId", "events"}, ...]}` for Send Events Batch Job."""
    return orjson.dumps({"body": [item.body() for item in batch.items]})


def encode_item(batch: Batch) -> bytes:
    """`{"customerId", "events"}` for Send Events: the batch holds exactly one item."""
    (item,) = batch.items
    return orjson.dumps(item.body())


# --- the client -------------------------------------------------------------------------


class GameballClient:
    """One keep-alive pool shared by the sender threads and the job tracker."""

    def __init__(self, settings: GameballSettings, pool_size: int) -> None:
        self._base = settings.base_url
        self.endpoint = settings.endpoint
        self._status_path = STATUS_PATHS[settings.job_tracking.status_api]
        self._headers = {
            "apikey": settings.api_key.get_secret_value(),
            "content-type": "application/json",
            "accept": "application/json",
            "user-agent": "gameball-connector",
        }
        if settings.secret_key is not None:
            self._headers["secretkey"] = settings.secret_key.get_secret_value()
        self._events_headers = {k: v for k, v in self._headers.items() if k != "secretkey"}
        self._connect_timeout = settings.connect_timeout_seconds
        self._read_timeout = settings.timeout_seconds
        self._deadline: float | None = None
        self._pool = urllib3.PoolManager(
            num_pools=2,
            maxsize=pool_size,
            block=False,
            retries=False,
            timeout=urllib3.Timeout(
                connect=settings.connect_timeout_seconds, read=settings.timeout_seconds
            ),
        )

    def set_deadline(self, deadline: float | None) -> None:
        """At shutdown (the pipeline): no request waits past `deadline` (monotonic), and
        none starts after it. None: the configured timeouts only."""
        self._deadline = deadline

    def send(self, body: bytes) -> Answer:
        """POST one request to the configured endpoint. Never raises for network trouble."""
        if self.endpoint == "batch":
            return self._request("POST", BATCH_PATH, body, self._headers)
        return self._request("POST", EVENTS_PATH, body, self._events_headers)

    def job_status(self, job_id: int) -> tuple[int, dict[str, Any] | None]:
        """GET a batch job's status (path per `job_tracking.status_api`); (0, None) on no answer."""
        answer = self._request("GET", self._status_path.format(job_id=job_id), None, self._headers)
        return (answer.status or 0, answer.body)

    def _request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> Answer:
        url = self._base + path
        try:
            if self._deadline is None:
                resp = self._pool.request(method, url, body=body, headers=headers)
            else:
                left = self._deadline - time.monotonic()
                if left <= 0:
                    return Answer(None, error="not sent: shutting down", maybe_sent=False)
                timeout = urllib3.Timeout(
                    connect=min(self._connect_timeout, left), read=min(self._read_timeout, left)
                )
                resp = self._pool.request(method, url, body=body, headers=headers, timeout=timeout)
        except (ConnectTimeoutError, NewConnectionError) as exc:
            return Answer(None, error=_safe(exc), maybe_sent=False)
        except ReadTimeoutError:
            return Answer(None, error="read timed out", maybe_sent=True)
        except HTTPError as exc:
            # Reset or closed after the request went out: Gameball may have taken it.
            return Answer(None, error=_safe(exc), maybe_sent=True)
        data: dict[str, Any] | None = None
        if resp.data:
            try:
                parsed = orjson.loads(resp.data)
                data = parsed if isinstance(parsed, dict) else {"value": parsed}
            except orjson.JSONDecodeError:
                data = None
        request_id = resp.headers.get("x-request-id")
        if data is not None and isinstance(data.get("requestId"), str):
            request_id = data["requestId"]
        return Answer(
            resp.status,
            data,
            retry_after=parse_retry_after(resp.headers.get("retry-after")),
            request_id=request_id,
        )

    def close(self) -> None:
        self._pool.clear()


def _safe(exc: BaseException) -> str:
    """Exception text without URLs' credentials: keep the class and reason only."""
    reason = getattr(exc, "reason", None)
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
