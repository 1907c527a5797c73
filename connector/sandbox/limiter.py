"""Sliding-window request limiter, as Gameball enforces it (per second and per 30 s).

Windows slide over the arrival times of *admitted* requests: a request answered 429
consumes nothing, so a client that slows down is served again as soon as the oldest
admitted request leaves the window. Not thread-safe; the server calls it under its lock.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence

Window = tuple[int, float]  # (max requests, window length in seconds)


class SlidingWindowLimiter:
    """Admits a request when every window still has room; otherwise says how long to wait.

    `clock` is injected (monotonic seconds) so tests drive time by hand.
    """

    def __init__(self, windows: Sequence[Window] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._admitted: deque[float] = deque()
        self._windows: tuple[Window, ...] = ()
        self.configure(windows)

    def configure(self, windows: Sequence[Window]) -> None:
        """Replace the windows, keeping the history (a runtime fault change keeps counting)."""
        for limit, seconds in windows:
            if limit < 1 or seconds <= 0:
                raise ValueError(f"invalid window: {limit} requests per {seconds} s")
        self._windows = tuple(windows)

    def try_admit(self) -> float | None:
        """Record an arrival. None: admitted. A float: rejected, seconds until room frees."""
        now = self._clock()
        horizon = max((seconds for _, seconds in self._windows), default=30.0)
        while self._admitted and self._admitted[0] <= now - horizon:
            self._admitted.popleft()
        wait = 0.0
        for limit, seconds in self._windows:
            if self._count_since(now - seconds, limit) >= limit:
                # The limit-th most recent admission must leave this window first.
                wait = max(wait, self._admitted[-limit] + seconds - now)
        if wait > 0:
            return wait
        self._admitted.append(now)
        return None

    def _count_since(self, start: float, cap: int) -> int:
        # Newest first, stopping at `cap`: O(limit) instead of O(history).
        count = 0
        for stamp in reversed(self._admitted):
            if stamp <= start or count >= cap:
                break
            count += 1
        return count

    def reset(self) -> None:
        self._admitted.clear()


def retry_after_header(wait_seconds: float) -> int:
    """Whole seconds for a `Retry-After` header: rounded up, at least 1."""
    return max(1, math.ceil(wait_seconds))
