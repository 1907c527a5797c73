"""Backpressure: when the loop stops reading ahead, and when it pauses the partitions.

Backpressure is data, not sleep. While a whole batch waits for a send slot, or the core
holds `max_buffered_events`, or the dead-letter producer holds `dead_letter.max_pending`
copies, the loop stops reading ahead (`held_back`); if that lasts `BLOCKED_PAUSE_S`
without a batch sent, the assigned partitions are paused and the loop keeps polling (the
consumer stays in its group). Called by the loop thread only.
"""

from __future__ import annotations

import logging

from connector.badrecords import BadRecords
from connector.config import Settings
from connector.core import DeliveryCore
from connector.registry_outage import RegistryOutage
from connector.source import Source
from connector.telemetry import Metrics

log = logging.getLogger("connector.pipeline")

BLOCKED_PAUSE_S = 1.0  # held back this long without a batch sent: pause the partitions


class Flow:
    """Pause and resume decisions; `paused` is read by the loop and the rebalance."""

    def __init__(self, settings: Settings, core: DeliveryCore, source: Source,
                 bad: BadRecords, outage: RegistryOutage, metrics: Metrics) -> None:
        self._core = core
        self._source = source
        self._bad = bad
        self._outage = outage
        self._m = metrics
        self._bound = settings.batch.max_buffered_events
        self._max_pending = settings.dead_letter.max_pending
        self.paused = False
        self._held_since: float | None = None

    def held_back(self) -> bool:
        """Reading further ahead must wait: a batch is blocked, or the core holds
        `max_buffered_events` (most of them behind customers in flight), or
        `dead_letter.max_pending` copies are on their way (`letters_pending`)."""
        return not self._core.may_read() or self.letters_pending() >= self._max_pending

    def at_bound(self) -> bool:
        """Held back by a memory bound (`max_buffered_events`, `dead_letter.max_pending`),
        not only by a batch waiting for a sender: nothing more may be read."""
        return (self._core.buffered >= self._bound
                or self.letters_pending() >= self._max_pending)

    def letters_pending(self) -> int:
        """Dead-letter copies not yet acknowledged: the producer's, or the core's letters
        if more (a rejected event's record is re-read first, connector/failures.py)."""
        return max(self._bad.pending, self._core.dead_letters_pending)

    def progress(self) -> None:
        """A batch was sent: a wait for a slot starts afresh."""
        self._held_since = None

    def update(self, now: float) -> None:
        """Pause every assigned partition when Gameball cannot keep up; resume after.

        It pauses only when holding back lasted `BLOCKED_PAUSE_S` without a batch sent,
        because the loop must go on polling to stay in the group, and a pause throws
        librdkafka's prefetch away: short waits (customers in flight at the rate limit)
        must not cause one.
        """
        core = self._core
        buffered = core.buffered
        held = self.held_back()
        if not held:
            self._held_since = None
        elif self._held_since is None:
            self._held_since = now
        stuck = held and now - (self._held_since or now) >= BLOCKED_PAUSE_S
        if not self.paused and stuck:
            self.paused = True
            n = self._source.pause_all()
            log.info(
                "paused partitions: Gameball is not keeping up",
                extra={"buffered": buffered, "partitions": n, "inflight": core.in_flight,
                       "dead_letter_pending": self.letters_pending()},
            )
        elif (
            self.paused and not core.blocked() and buffered <= self._bound // 2
            and self.letters_pending() <= self._max_pending // 2
            and not self._outage.active
        ):
            self.paused = False
            n = self._source.resume_all()
            log.info("resumed partitions", extra={"buffered": buffered, "partitions": n})
        self._m.paused_partitions.set(len(self._source.paused))
