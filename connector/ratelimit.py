"""Client-side limiter for Gameball's two rate windows, shared by the sender threads.

Each window (`limit` requests per `seconds`) is a token bucket sized so that no span of
`seconds + margin` can ever hold more than `limit` sends: with burst `B` and refill
rate `(limit - B) / (seconds + margin)`, any such span holds at most `B` (the tokens
at its start) plus the refill. With several replicas in one consumer group, each one
scales burst and refill by `share` = owned partitions / total partitions, so their
sum stays within the account's limit without any coordination, across rebalances
and restarts too (a new owner starts with an empty bucket). A 429 empties the
buckets and halves the refill for a while. The proof and the numbers are in
docs/delivery.md ("Rate limits").

Pure: the caller passes `now`; `acquire` returns how long to wait instead of sleeping.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

BURST_FRACTION = 0.02  # of each window's limit, kept as the account-wide burst


@dataclass(frozen=True)
class Window:
    limit: int
    seconds: float


class _Bucket:
    __slots__ = ("burst", "rate", "tokens", "window")

    def __init__(self, window: Window) -> None:
        self.window = window
        self.tokens = 0.0  # a fresh owner has no history to spend: start empty
        self.burst = 1.0  # this replica's capacity (share applied)
        self.rate = 0.0  # this replica's refill per second (share applied, no penalty)


class RateLimiter:
    """Thread-safe; `acquire(now)` either takes a slot (returns 0) or says how long to wait."""

    PENALTY_FLOOR = 0.1
    RECOVERY_SECONDS = 30.0  # each 30 s without a 429 restores a quarter more rate
    IDLE_POLL = 1.0  # the wait returned while this replica owns no partition

    def __init__(self, windows: list[Window], margin_s: float = 0.1) -> None:
        self._windows = windows
        self._margin = margin_s
        self._buckets = [_Bucket(w) for w in windows]
        self._owned = 1
        self._total = 1
        self._share = 1.0
        self._penalty = 1.0
        self._last_throttle = -math.inf
        self._blocked_until = -math.inf
        self._updated: float | None = None  # time the buckets were last refilled
        self._slower_until_next_update = False  # share changed at an unknown moment
        self._lock = threading.Lock()
        self._resize()

    @property
    def share(self) -> float:
        return self._share

    @property
    def penalty(self) -> float:
        """1.0 normally; below 1 for a while after a 429."""
        return self._penalty

    def set_share(self, owned: int, total: int, now: float | None = None) -> None:
        """Called on every rebalance: this replica's part of the account's quota.

        Without `now`, the time since the last `acquire` is refilled at the lower of
        the old and new rates (the change happened somewhere in between).
        """
        with self._lock:
            if now is not None:
                self._refill(now)
            old = [b.rate for b in self._buckets]
            self._owned = max(owned, 0)
            self._total = max(total, 0)
            self._share = 1.0 if self._total <= 0 else min(1.0, self._owned / self._total)
            self._resize()
            if now is None:
                for bucket, rate in zip(self._buckets, old, strict=True):
                    bucket.rate = min(bucket.rate, rate)
                self._slower_until_next_update = True

    def _resize(self) -> None:
        # The account-wide burst is at least one token per partition, so every owner's
        # burst is >= 1 (it can send at all) and the owners' bursts sum to exactly B.
        partitions = max(self._total, 1)
        for bucket in self._buckets:
            window = bucket.window
            account_burst = min(
                max(BURST_FRACTION * window.limit, float(partitions)), window.limit / 2
            )
            if self._share <= 0:
                bucket.burst = 0.0
                bucket.rate = 0.0
            else:
                bucket.burst = max(1.0, self._share * account_burst)
                bucket.rate = (
                    self._share * (window.limit - account_burst) / (window.seconds + self._margin)
                )
            bucket.tokens = min(bucket.tokens, bucket.burst)

    def _refill(self, now: float) -> None:
        if self._penalty < 1.0 and now - self._last_throttle >= self.RECOVERY_SECONDS:
            self._penalty = min(1.0, self._penalty * 1.25)
            self._last_throttle = now
        last = self._updated
        self._updated = now if last is None else max(last, now)
        if last is not None and now > last:
            for bucket in self._buckets:
                bucket.tokens = min(
                    bucket.burst, bucket.tokens + (now - last) * bucket.rate * self._penalty
                )
        if self._slower_until_next_update:
            self._slower_until_next_update = False
            self._resize()  # back to the new share's own rates

    def limits(self, now: float) -> list[float]:
        """Sustained requests per second each window allows right now (for logs)."""
        with self._lock:
            self._refill(now)
            return [b.rate * self._penalty for b in self._buckets]

    def acquire(self, now: float) -> float:
        """Take a send slot at `now` and return 0, or return the seconds to wait first."""
        with self._lock:
            self._refill(now)
            if now < self._blocked_until:
                return self._blocked_until - now
            if self._share <= 0:
                return self.IDLE_POLL  # owns no partition: nothing should be sending
            wait = 0.0
            for bucket in self._buckets:
                if bucket.tokens < 1.0:
                    rate = bucket.rate * self._penalty
                    wait = max(wait, (1.0 - bucket.tokens) / rate if rate > 0 else self.IDLE_POLL)
            if wait > 0:
                return wait
            for bucket in self._buckets:
                bucket.tokens -= 1.0
            return 0.0

    def throttled(self, now: float, retry_after: float | None) -> None:
        """Gameball answered 429: wait `retry_after`, empty the buckets, halve the rate.

        Several requests in flight often meet the same 429: the rate is halved at most
        once per second so one burst does not count as many.
        """
        with self._lock:
            self._refill(now)
            if now - self._last_throttle >= 1.0 or self._penalty >= 1.0:
                self._penalty = max(self.PENALTY_FLOOR, self._penalty * 0.5)
            self._last_throttle = now
            for bucket in self._buckets:
                bucket.tokens = min(bucket.tokens, 0.0)
            if retry_after:
                self._blocked_until = max(self._blocked_until, now + retry_after)
