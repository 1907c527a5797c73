"""Committing what the core says is done, and hearing the broker's answer.

The loop thread is the only caller (commits ride on the consumer, which is not shared):
`commit` after completions and on the timer, synchronously on revoke, at shutdown and
while the crash budget awaits a confirmation; `on_commit` is librdkafka's answer to an
asynchronous commit, run inside `consume()` on the same thread. A failed commit is
never an error of its own: its partition is handed again at the next commit.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Protocol

from confluent_kafka import KafkaError, TopicPartition

from connector.core import DeliveryCore
from connector.telemetry import Metrics

log = logging.getLogger("connector.pipeline")

Offsets = list[tuple[str, int, int]]


class Committing(Protocol):
    """The part of `Source` that commits (tests pass one that records the calls)."""

    def commit_async(self, offsets: Offsets) -> None: ...
    def commit_sync(self, offsets: Offsets) -> set[tuple[str, int]]: ...


class Commits:
    """Hands the core's committable offsets to the consumer; feeds answers back."""

    def __init__(self, core: DeliveryCore, source: Committing, metrics: Metrics) -> None:
        self._core = core
        self._source = source
        self._m = metrics

    def commit(self, asynchronous: bool, only: Collection[tuple[str, int]] | None = None
               ) -> None:
        """Commit moved offsets (`only`: of these partitions). Synchronous commits
        (revoke, shutdown) also repeat offsets whose asynchronous commit is unconfirmed:
        it may still fail after the revoke. What stays unconfirmed is counted when its
        partition leaves (connector/rebalance.py)."""
        core = self._core
        offsets = core.commits(unconfirmed=not asynchronous)  # marked as handed
        if only is not None:
            wanted = set(only)
            for t, p, _o in offsets:
                if (t, p) not in wanted:
                    core.commit_failed(t, p)  # not handed now: hand it next time
            offsets = [o for o in offsets if (o[0], o[1]) in wanted]
        if not offsets:
            return
        if asynchronous:
            self._source.commit_async(offsets)  # answered in on_commit, on this thread
            return
        confirmed = self._source.commit_sync(offsets)
        for t, p, o in offsets:
            if (t, p) in confirmed:
                core.confirmed(t, p, o)
                self._m.committed_offset.labels(t, str(p)).set(o)
            else:
                core.commit_failed(t, p)
        self._m.commits.labels("ok" if len(confirmed) == len(offsets) else "failed").inc()

    def on_commit(self, err: KafkaError | None, parts: list[TopicPartition]) -> None:
        """librdkafka's answer to an asynchronous commit (inside `consume()`)."""
        self._m.commits.labels("failed" if err is not None else "ok").inc()
        if err is not None:
            log.warning("asynchronous commit failed", extra={"error": str(err)})
        core = self._core
        for tp in parts:
            if err is None and tp.error is None and tp.offset >= 0:
                core.confirmed(tp.topic, tp.partition, tp.offset)
                if core.committable(tp.topic, tp.partition) is not None:  # still ours
                    self._m.committed_offset.labels(tp.topic, str(tp.partition)).set(tp.offset)
            else:
                core.commit_failed(tp.topic, tp.partition)  # try again at the next commit
