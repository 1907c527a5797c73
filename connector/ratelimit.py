"""Client-side limiter for Gameball's two rate windows, shared by the sender threads.

Each window is a sliding log of send times (exact: never more than `limit` sends in
any `seconds` span, padded by `margin`). With several replicas in one consumer group
each one takes `share` = owned partitions / total partitions of the account's quota,
so together they stay within it without talking to each other. A 429 halves the
rate for a while (`throttled`) even when the log said we were within quota.

Pure: the caller passes `now`; `acquire` returns how long to wait instead of sleeping.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    limit: int
    seconds: float


class RateLimiter:
    """Thread-safe; `acquire(now)` either takes a slot (returns 0) or says how long to wait."""

    PENALTY_FLOOR = 0.1
    RECOVERY_SECONDS = 30.0  # one 30 s window without 429 restores a quarter more rate

    def __init__(self, windows: list[Window], margin_s: float = 0.1) -> None:
        self._windows = windows
        self._margin = margin_s
        self._logs = [deque[float]() for _ in windows]
        self._share = 1.0
        self._penalty = 1.0
        self._last_throttle = -math.inf
        self._blocked_until = -math.inf
        self._lock = threading.Lock()

    @property
    def share(self) -> float:
        return self._share

    def set_share(self, owned: int, total: int) -> None:
        """Called on every rebalance: this replica's part of the account's quota."""
        with self._lock:
            self._share = 1.0 if total <= 0 else max(owned, 0) / total

    def limits(self, now: float) -> list[int]:
        """The effective limit of each window right now (share and 429 penalty applied)."""
        with self._lock:
            self._recover(now)
            return [self._limit(w) for w in self._windows]

    def _limit(self, window: Window) -> int:
        return max(1, math.floor(window.limit * self._share * self._penalty))

    def _recover(self, now: float) -> None:
        if self._penalty < 1.0 and now - self._last_throttle >= self.RECOVERY_SECONDS:
            self._penalty = min(1.0, self._penalty * 1.25)
            self._last_throttle = now

    def acquire(self, now: float) -> float:
        """Take a send slot at `now` and return 0, or return the seconds to wait first."""
        with self._lock:
            if now < self._blocked_until:
                return self._blocked_until - now
            if self._share <= 0:
                return 1.0  # owns no partition: nothing should be sending
            self._recover(now)
            wait = 0.0
            for window, log in zip(self._windows, self._logs, strict=True):
                span = window.seconds + self._margin
                while log and log[0] <= now - span:
                    log.popleft()
                limit = self._limit(window)
                if len(log) >= limit:
                    # the slot frees when the (len-limit+1)-th oldest send leaves the span
                    wait = max(wait, log[len(log) - limit] + span - now)
            if wait > 0:
                return wait
            for log in self._logs:
                log.append(now)
            return 0.0

    def throttled(self, now: float, retry_after: float | None) -> None:
        """Gameball answered 429: stop until `retry_after` and halve the rate for a while."""
        with self._lock:
            self._penalty = max(self.PENALTY_FLOOR, self._penalty * 0.5)
            self._last_throttle = now
            if retry_after:
                self._blocked_until = max(self._blocked_until, now + retry_after)
