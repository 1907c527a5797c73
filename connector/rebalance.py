"""Partitions coming and going: librdkafka's assign, revoke and lost callbacks.

They run inside `consume()` on the loop thread. An assign registers the partitions with
the core. A revoke first lets what is in flight for them finish (bounded by
`shutdown.drain_seconds`; a SIGTERM during it ends it with the shutdown's drain time),
commits them synchronously, then drops what was waiting. What was accepted but not
confirmed committed, and requests still under way, may be sent again by the next owner:
counted as possible duplicates. A lost partition is revoked without drain or commit.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from connector.badrecords import BadRecords
from connector.commits import Commits
from connector.core import DeliveryCore
from connector.flow import Flow
from connector.quota_share import QuotaShare
from connector.registry_outage import RegistryOutage
from connector.source import Partitions, Source
from connector.telemetry import Health, Metrics

log = logging.getLogger("connector.pipeline")


class Rebalance:
    """Built by the factory; `drain(parts)` is the pipeline's bounded drain of them."""

    def __init__(self, core: DeliveryCore, source: Source, commits: Commits, flow: Flow,
                 share: QuotaShare, bad: BadRecords, outage: RegistryOutage,
                 metrics: Metrics, health: Health,
                 drain: Callable[[Partitions], object]) -> None:
        self._core = core
        self._source = source
        self._commits = commits
        self._flow = flow
        self._share = share
        self._bad = bad
        self._outage = outage
        self._m = metrics
        self._health = health
        self._drain = drain

    def on_assign(self, parts: Partitions) -> None:
        for topic, partition in parts:
            self._core.assign(topic, partition)
        self._m.rebalances.labels("assign").inc()
        self._share.after_rebalance()
        if self._flow.paused or self._outage.active:
            self._source.pause_all()
        log.info("partitions assigned", extra={"partitions": [f"{t}[{p}]" for t, p in parts]})

    def on_revoke(self, parts: Partitions, lost: bool) -> None:
        self._m.rebalances.labels("lost" if lost else "revoke").inc()
        core = self._core
        if not lost:
            if not self._health.stopping:  # shutdown has drained already, bounded once
                halted = self._bad.halted
                self._drain([p for p in parts if p not in halted])
            self._commits.commit(asynchronous=False, only=parts)
        self._outage.forget(parts)
        for topic, partition in parts:
            for gauge in (self._m.consumer_lag, self._m.committed_offset):
                with contextlib.suppress(KeyError):  # never set for this partition
                    gauge.remove(topic, str(partition))
        gone = core.revoke(parts)
        self._bad.release(parts)
        # Zero after a drained revoke whose commit landed. Otherwise the next owner
        # re-sends what was accepted since the last confirmed commit, and requests still
        # under way (undone, not in the window) may be accepted after we let go.
        possible = gone.unconfirmed + gone.in_flight
        if possible:
            self._m.possible_duplicates.inc(possible)
            log.warning(
                "partitions left before what was sent was committed: "
                "the next owner may send these events again",
                extra={"events": possible, "lost": lost, "offsets": gone.spans,
                       "accepted_uncommitted": gone.unconfirmed, "in_flight": gone.in_flight},
            )
        log.info(
            "partitions revoked",
            extra={
                "partitions": [f"{t}[{p}]" for t, p in parts],
                "lost": lost,
                "dropped_events": gone.dropped,
            },
        )
        self._share.after_rebalance(exclude=parts)
