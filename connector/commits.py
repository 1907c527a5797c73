"""Committing what the core says is done, and hearing the broker's answer.

The loop thread is the only caller: `commit` after completions and on the timer
(asynchronously), and synchronously on revoke and at shutdown; `on_commit` is
librdkafka's answer to an asynchronous commit, run inside `consume()` on the same
thread. While the crash budget awaits a confirmation the answer is needed at once, but
an asynchronous commit's answer queues behind the prefetched records and a synchronous
one blocks for as long as the broker does not answer (minutes, measured): `commit_soon`
runs a synchronous commit on the committing thread and `settle` applies its answer on
the loop thread (a revoke meanwhile does not wait for it: `commit`). A
failed commit is never an error of its own: its partition is handed again at the next
commit.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
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
        self._thread = ThreadPoolExecutor(1, "committing")
        self._soon: tuple[Offsets, Future[set[tuple[str, int]]]] | None = None

    def commit_soon(self) -> None:
        """Start a synchronous commit of every unconfirmed offset on the committing thread
        (unless one is under way); `settle` applies its answer."""
        if self._soon is not None:
            return
        offsets = self._core.commits(unconfirmed=True)  # marked as handed
        if offsets:
            self._soon = (offsets, self._thread.submit(self._source.commit_sync, offsets))

    def settle(self, wait: float | None = 0.0) -> bool:
        """Apply the answer of `commit_soon`'s commit if it came within `wait` seconds
        (None: wait for it); True when one was applied."""
        if self._soon is None:
            return False
        offsets, answer = self._soon
        try:
            confirmed = answer.result(timeout=wait)
        except FutureTimeout:
            return False
        except Exception:  # the commit call itself failed: hand the offsets again
            confirmed = set()
        self._soon = None
        self._apply(offsets, confirmed)
        return True

    def commit(self, asynchronous: bool, only: Collection[tuple[str, int]] | None = None,
               in_rebalance: bool = False) -> None:
        """Commit moved offsets (`only`: of these partitions). Synchronous commits
        (revoke, shutdown) also repeat offsets whose asynchronous commit is unconfirmed:
        it may still fail after the revoke. What stays unconfirmed is counted when its
        partition leaves (connector/rebalance.py).

        A synchronous commit comes after `commit_soon`'s, never beside it: the older
        one's offsets would overwrite the newer ones if they landed last. At shutdown it
        waits for it. Inside a rebalance callback (`in_rebalance`) it cannot: librdkafka
        holds the committing thread's commit until the callback returns (waiting
        deadlocked a replica), so then nothing is committed here; the revoke counts what
        stays unconfirmed as possible duplicates (docs/core.md)."""
        core = self._core
        if (not asynchronous and self._soon is not None
                and not self.settle(wait=0.0 if in_rebalance else None)):
            return
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
        self._apply(offsets, self._source.commit_sync(offsets))

    def _apply(self, offsets: Offsets, confirmed: set[tuple[str, int]]) -> None:
        core = self._core
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
