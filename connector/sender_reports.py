"""What the sender threads report, turned into metrics, health and logs.

Built by the factory (connector/factory.py) and passed to `Sender` as its hooks; every
method is called from sender threads, so each touches only thread-safe state (metric
children, `Health` flags, rate-limited logs).
"""

from __future__ import annotations

import logging
from typing import Any

from connector.gameball import Answer, Verdict
from connector.logs import RateLimitedLog
from connector.records import Batch, Event
from connector.telemetry import Health, Metrics

log = logging.getLogger("connector.pipeline")


def offset_ranges(events: list[Event]) -> str:
    spans: dict[str, tuple[int, int]] = {}
    for ev in events:
        rec = ev.record
        key = f"{rec.topic()}[{rec.partition()}]"
        off = rec.offset() or 0
        lo, hi = spans.get(key, (off, off))
        spans[key] = (min(lo, off), max(hi, off))
    return ", ".join(f"{k}@{lo}-{hi}" for k, (lo, hi) in sorted(spans.items()))


class SenderReports:
    """Sender callbacks -> metrics, health, logs. Called from sender threads."""

    def __init__(self, metrics: Metrics, health: Health, endpoint: str) -> None:
        self._m = metrics
        self._health = health
        self._endpoint = endpoint
        self._halt_log = RateLimitedLog(log, 60.0)
        self._retry_log = RateLimitedLog(log, 10.0)
        self._requests: dict[str, Any] = {}

    def request_done(self, status: int | None, seconds: float, items: int) -> None:
        code = str(status) if status is not None else "error"
        child = self._requests.get(code)
        if child is None:
            child = self._requests[code] = self._m.requests.labels(self._endpoint, code)
        child.inc()
        self._m.request_duration.labels(self._endpoint).observe(seconds)
        self._m.batch_items.observe(items)
        if status is not None and status < 500 and status not in (408, 429):
            self._health.gameball_answered()  # 422/2001 too: retried, yet Gameball is up

    def retrying(self, reason: str, answer: Answer, batch: Batch) -> None:
        self._m.retries.labels(self._endpoint, reason).inc()
        if reason != "concurrent_customer":
            self._health.gameball_retrying()
        self._retry_log.warn(reason, "retrying Gameball requests", reason=reason,
                             answer=answer.describe())

    def possible_duplicate(self, batch: Batch) -> None:
        events = batch.events()
        self._m.possible_duplicates.inc(len(events))
        log.warning(
            "answer lost after sending: a retry may duplicate these events",
            extra={"events": len(events), "offsets": offset_ranges(events)},
        )

    def rate_limited(self, seconds: float) -> None:
        self._m.rate_limit_delay.inc(seconds)

    def halted(self, answer: Answer, verdict: Verdict) -> None:
        self._health.auth_failing = True
        self._m.ready.set(0)
        self._halt_log.error(
            "halt",
            f"Gameball refuses every request ({verdict.reason}: check the credentials, "
            "the account and base_url): nothing is committed past this point until it "
            "accepts them again",
            cause=verdict.reason,
            answer=answer.describe(),
        )

    def recovered(self) -> None:
        if self._health.auth_failing:
            log.info("Gameball accepts the credentials again")
        self._health.auth_failing = False

    def flush(self) -> None:
        """At shutdown: the repeat counts still held back."""
        self._halt_log.flush()
        self._retry_log.flush()
