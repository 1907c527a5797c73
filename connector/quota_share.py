"""This replica's share of the account's rate limit: owned partitions / all partitions.

The denominator is read from topic metadata on the loop thread, every
`METADATA_REFRESH_S`, never inside a rebalance callback: a metadata call there clears
confluent-kafka's per-thread call state and the next callback of that consume() aborts
the process. Rebalance callbacks call `after_rebalance`; the loop calls `refresh` when
`due`. docs/delivery.md ("Rate limit") has the reasoning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from connector.ratelimit import RateLimiter
from connector.source import Source
from connector.telemetry import Metrics

log = logging.getLogger("connector.pipeline")

METADATA_REFRESH_S = 30.0  # how often the subscribed topics' partition count is re-read


class QuotaShare:
    """Keeps the limiter's share and the assigned-partitions gauge in step."""

    def __init__(self, limiter: RateLimiter | None, source: Source, metrics: Metrics,
                 clock: Callable[[], float]) -> None:
        self._limiter = limiter
        self._source = source
        self._m = metrics
        self._clock = clock
        self._total: int | None = None
        self.next_refresh = 0.0  # clock time of the next metadata read

    def after_rebalance(self, exclude: Sequence[tuple[str, int]] = ()) -> None:
        """An assign or revoke callback ran (`exclude`: partitions about to go)."""
        owned = len(self._source.assigned - set(exclude))
        self._m.assigned_partitions.set(owned)
        if self._limiter is None:
            return
        if self._total is None:
            self.next_refresh = 0.0  # the loop reads it right after this callback
            return
        self._limiter.set_share(owned, self._total)
        log.info(
            "rate limit share",
            extra={"owned": owned, "total": self._total, "share": round(self._limiter.share, 3)},
        )

    def refresh(self) -> None:
        """Loop thread only: re-read the partition count; re-apply the share on a change."""
        self.next_refresh = self._clock() + METADATA_REFRESH_S
        if self._limiter is None:
            return
        try:
            total = self._source.total_partitions()
        except Exception as exc:
            log.warning("cannot read topic metadata for the quota share", extra={"error": str(exc)})
            self.next_refresh = self._clock() + 1.0
            return
        if total != self._total:
            self._total = total
            self.after_rebalance()
