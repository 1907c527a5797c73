"""Records held while the schema registry does not answer: not their fault, so kept.

Called by the pipeline's loop thread only. When a decoder raises `RegistryUnavailable`,
the pipeline hands the record and every later record of that consumed batch to `hold`:
the assigned partitions are paused (the consumer keeps polling, so it stays in its
group), readiness turns false and `gameball_connector_schema_registry_unreachable` is 1.
After a backoff (doubling from `retry_initial_backoff_ms` to `retry_max_backoff_ms`)
`due` gives the held records back to be mapped again, in order; once they all map, the
partitions resume. Nothing is dead-lettered, skipped or committed past a held record
(docs/delivery.md, "Schema registry outage").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from connector.logs import RateLimitedLog
from connector.records import RegistryUnavailable

log = logging.getLogger("connector.registry")

_P = "gameball_connector_schema_registry_"


class _Pausable(Protocol):
    def pause_all(self) -> int: ...
    def resume_all(self) -> int: ...


class _Health(Protocol):
    registry_unreachable: bool


class RegistryOutage:
    """Holds records (in consumed order) and paces the attempts to map them again."""

    def __init__(
        self,
        source: _Pausable,
        health: _Health,
        registry: CollectorRegistry,
        initial_backoff_ms: int = 500,
        max_backoff_ms: int = 30_000,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._source = source
        self._health = health
        self._initial = initial_backoff_ms / 1000
        self._max = max_backoff_ms / 1000
        self._backoff = self._initial
        self._retry_at = 0.0
        self._held: list[Any] = []
        self._down = False  # from the first failure until the held records map again
        self._log = RateLimitedLog(log, 30.0)
        self.unreachable = Gauge(
            _P + "unreachable",
            "1 while the schema registry does not answer (records held, partitions paused).",
            registry=registry,
        )
        self.failures = Counter(
            _P + "failures",
            "Attempts to decode a held record that found the registry unreachable.",
            registry=registry,
        )

    @property
    def active(self) -> bool:
        """The registry was found unreachable and has not answered since: records may
        be held, and the loop must not resume the partitions."""
        return self._down

    def hold(self, records: list[Any], err: RegistryUnavailable, now: float) -> None:
        """Keep `records` (the failed one first) and pause reading until `due`."""
        first = not self._down
        self._down = True
        self._held.extend(records)
        self.failures.inc()
        if first:
            self._source.pause_all()
            self._health.registry_unreachable = True
            self.unreachable.set(1)
        else:
            self._backoff = min(self._backoff * 2, self._max)
        self._retry_at = now + self._backoff
        self._log.warn(
            "registry",
            "schema registry unreachable: records held, partitions paused, retrying",
            error=err.detail,
            held=len(self._held),
            retry_in_s=round(self._backoff, 3),
        )

    def due(self, now: float) -> list[Any] | None:
        """The held records to map again (maybe none: their partitions were revoked),
        or None before the backoff has passed. The caller maps them, then `settled`."""
        if not self._down or now < self._retry_at:
            return None
        held, self._held = self._held, []
        return held

    def settled(self, resume: bool) -> None:
        """After mapping what `due` gave: if nothing was held again, the registry answers
        (or nothing needed it):
        readiness back, and the partitions resume unless `resume` is False (the pipeline
        holds them paused for its own backpressure)."""
        if self._held or not self._down:
            return
        self._down = False
        self._health.registry_unreachable = False
        self.unreachable.set(0)
        self._backoff = self._initial
        n = self._source.resume_all() if resume else 0
        log.info("schema registry answers again: resumed", extra={"partitions": n})

    def forget(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Partitions revoked: their held records are the next owner's to read. Called
        inside the rebalance callback, so it only drops them; the loop's next `due`
        (made due now if nothing is left) settles the outage."""
        gone = set(partitions)
        self._held = [r for r in self._held if (r.topic(), r.partition()) not in gone]
        if not self._held:
            self._retry_at = 0.0
