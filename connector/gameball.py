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
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import quote

import orjson
import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ReadTimeoutError,
)

from connector.config import GameballSettings
from connector.core import Item
from connector.jobreads import JobId
from connector.jobs import StatusRead

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

    Codes are Gameball's (connector/gameball_codes.py, from the reference's "Status and
    Error Codes" page); docs/delivery.md has the table with the reason for every row.
    Order matters: "slow down" answers first, then what is never the data's fault
    (credentials, account, subscription, wrong URL), then Gameball's own trouble (5xx),
    and only then a 4xx that blames the items (bisect them, dead-letter the blamed ones).
    A code the reference does not list is decided by its category, else by its status.
    """
    status, code = answer.status, answer.code
    if status is None:
        error = (answer.error or "").lower()
        return Verdict(
            Action.RETRY, "timeout" if "timed out" in error or "timeout" in error else "connection"
        )
    if 200 <= status < 300:
        return Verdict(Action.ACCEPTED, "ok")
    if status == 429:  # rate-limiting page: either window exceeded
        return Verdict(Action.RETRY, "rate_limited")
    if status == 408:
        return Verdict(Action.RETRY, "request_timeout")
    if code == 2001:  # 422 Concurrent Request In Progress: same customer, try again later
        return Verdict(Action.RETRY, "concurrent_customer")
    category = None if code is None else code // 1000
    if category == 1:  # 1000 Unauthorized, 1001 Secret Key Required, 1002 Forbidden
        return Verdict(Action.HALT, "auth")
    if category == 6:  # 6000 Gameball Disabled ... 6003: the account's configuration
        return Verdict(Action.HALT, "account")
    if category == 8:  # 8000 Feature Unavailable: the plan lacks it
        return Verdict(Action.HALT, "subscription")
    if category == 5 or (status >= 500 and status != 501):  # 5000, 5003, any 5xx
        return Verdict(Action.RETRY, "server_error")
    if status == 501:
        return Verdict(Action.HALT, "not_implemented")
    if status in (401, 403):  # no Gameball code: a gateway refusing our credentials
        return Verdict(Action.HALT, "auth")
    if status == 404 and code is None:  # no error object: wrong base_url or path
        return Verdict(Action.HALT, "not_found")
    if status < 200 or 300 <= status < 400:
        return Verdict(Action.HALT, "unexpected_status")  # a redirect: fix base_url
    # 2000 Precondition Failed, 3xxx payload, 4000/4004/4500, 7xxx customer, 9xxx, a 404
    # with an error object (7000 Customer Not Found), any other 4xx: the items are to blame.
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


def item_body(item: Item) -> dict[str, Any]:
    """One core item as Gameball takes it (`customerId`, `events` by name), for rows
    whose payload is the mapped `Event` (the re-drive's; it dead-letters the event's
    `record`). The pipeline's rows carry JSON already: connector/event_json.py."""
    entries = item.entries
    if len(entries) == 1:  # the common item: no comprehension frame
        row = entries[0][1]
        return {"customerId": item.customer_id, "events": {row[2]: row[3].metadata}}
    return {"customerId": item.customer_id,
            "events": {row[2]: row[3].metadata for _seg, row in entries}}


def encode_request(items: Sequence[Item], batch_endpoint: bool = True,
                   payloads: Sequence[Any] | None = None) -> bytes:
    """A request body in one `orjson.dumps`: `{"body": [items]}` for Send Events Batch
    Job, else the one item (Send Events). The sender calls it once per request (again
    only for the halves of a split or bisected batch); `payloads` (the items' events as
    the cut noted them) are not needed here. TypeError/ValueError when an event's
    metadata has no JSON form."""
    if not batch_endpoint:
        (item,) = items
        return orjson.dumps(item_body(item))
    return orjson.dumps({"body": [item_body(item) for item in items]})


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
        # Both keys on every endpoint when a secret is configured: High Security Mode
        # accounts refuse any request without it (overview--authentication.mdx), and the
        # connector runs server-side, so the secret is exposed to no one.
        if settings.secret_key is not None:
            self._headers["secretkey"] = settings.secret_key.get_secret_value()
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
        path = BATCH_PATH if self.endpoint == "batch" else EVENTS_PATH
        return self._request("POST", path, body, self._headers)

    def job_status(self, job_id: JobId) -> StatusRead:
        """GET a batch job's status (path per `job_tracking.status_api`); status 0 on no
        answer. Numeric and string ids alike (create answers a number, status a string)."""
        answer = self.request("GET", self.status_path(job_id))
        return StatusRead(answer.status or 0, answer.body, answer.retry_after)

    def status_path(self, job_id: JobId) -> str:
        return self._status_path.format(job_id=quote(str(job_id), safe=""))

    def request(self, method: str, path: str, body: bytes | None = None) -> Answer:
        """One request with the configured keys (`validate --check-credentials`)."""
        return self._request(method, path, body, self._headers)

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
