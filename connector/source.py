"""The Kafka side: a thin, lazy wrapper around `confluent_kafka.Consumer`.

Properties are librdkafka's own dotted names, passed through as they are
(https://github.com/confluentinc/librdkafka/blob/master/CONFIGURATION.md), merged in
one visible order: our defaults, then `kafka.properties`, then the settings the
commit protocol depends on. No network before `open()`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from connector.config import Settings
from connector.logs import librdkafka_logger

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "session.timeout.ms": 45000,
    "max.poll.interval.ms": 300000,
    "fetch.wait.max.ms": 100,
    "statistics.interval.ms": 5000,
    "partition.assignment.strategy": "cooperative-sticky",
    # librdkafka's 5 minutes: a topic created after start (a pattern's new match, a named
    # topic that did not exist yet) waited that long to be read (docs/configuration.md).
    "topic.metadata.refresh.interval.ms": 30000,
    # librdkafka waits 1 s to fetch again once the prefetch queue was full; reading a
    # backlog, the loop empties the queue sooner and stalls (docs/configuration.md).
    "fetch.queue.backoff.ms": 50,
    # Refilled that soon, a quarter of librdkafka's 64 MiB prefetch keeps the loop fed
    # and keeps peak memory where it was (docs/configuration.md).
    "queued.max.messages.kbytes": 16384,
}
# What the commit protocol needs; user properties cannot change these.
REQUIRED: dict[str, Any] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
}

Partitions = list[tuple[str, int]]
UNSUBSCRIBE_RESERVE_S = 1.0  # of the close time, kept for the close (the group leave) itself
CLOSE_CONSUME_BATCH = 500  # records fetched while giving the assignment up are dropped
CLOSE_QUIET_S = 0.5  # no rebalance callback for this long before the close


def consumer_config(settings: Settings) -> dict[str, Any]:
    """defaults -> user `kafka.properties` -> required, in this order."""
    conf: dict[str, Any] = dict(DEFAULTS)
    conf.update(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": settings.kafka.group_id,
            "auto.offset.reset": settings.kafka.auto_offset_reset,
        }
    )
    conf.update(settings.kafka.properties)
    conf.update(REQUIRED)
    return conf


class Source:
    """Subscribes, polls, pauses, commits. Used only from the pipeline's loop thread.

    Rebalance callbacks run inside `consume()`; `on_assign`/`on_revoke` receive
    (topic, partition) lists. `on_lost` is treated as a revoke without commit.
    """

    def __init__(
        self,
        settings: Settings,
        on_assign: Callable[[Partitions], None],
        on_revoke: Callable[[Partitions, bool], None],
        on_stats: Callable[[str], None] | None = None,
        on_error: Callable[[KafkaError], None] | None = None,
        on_commit: Callable[[KafkaError | None, list[TopicPartition]], None] | None = None,
        consumer_factory: Callable[[dict[str, Any]], Consumer] = Consumer,
    ) -> None:
        self._settings = settings
        self._factory = consumer_factory  # tests pass a stand-in; no network before open()
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._on_stats = on_stats
        self._on_error = on_error
        self._on_commit = on_commit
        self._consumer: Consumer | None = None
        self.assigned: set[tuple[str, int]] = set()
        self.paused: set[tuple[str, int]] = set()
        # Held at a bad record (dead_letter.on_error: stop): never resumed while owned.
        self.held: set[tuple[str, int]] = set()
        self.last_rebalance = 0.0  # monotonic time of the last assign or revoke callback

    def open(self) -> None:
        conf = consumer_config(self._settings)
        if self._on_stats is not None:
            conf["stats_cb"] = self._on_stats
        else:
            conf.pop("statistics.interval.ms", None)
        if self._on_error is not None:
            conf["error_cb"] = self._on_error
        if self._on_commit is not None:
            conf["on_commit"] = self._on_commit
        conf["logger"] = librdkafka_logger()  # JSON and masked, not raw stderr
        self._consumer = self._factory(conf)
        self._consumer.subscribe(
            self._settings.subscription(),
            on_assign=self._assigned,
            on_revoke=self._revoked,
            on_lost=self._lost,
        )

    @property
    def consumer(self) -> Consumer:
        if self._consumer is None:
            raise RuntimeError("Source.open() was not called")
        return self._consumer

    def _assigned(self, _c: Consumer, parts: list[TopicPartition]) -> None:
        self.last_rebalance = time.monotonic()
        got = [(tp.topic, tp.partition) for tp in parts]
        self.assigned.update(got)
        self._on_assign(got)

    def _revoked(self, _c: Consumer, parts: list[TopicPartition]) -> None:
        gone = [(tp.topic, tp.partition) for tp in parts]
        self._on_revoke(gone, False)
        self._forget(gone)

    def _lost(self, _c: Consumer, parts: list[TopicPartition]) -> None:
        gone = [(tp.topic, tp.partition) for tp in parts]
        self._on_revoke(gone, True)
        self._forget(gone)

    def _forget(self, gone: Partitions) -> None:
        self.last_rebalance = time.monotonic()
        # librdkafka keeps a partition's pause across a rebalance: one paused here and
        # assigned back later would never be fetched again, so resume it while we own it.
        stale = self.paused.intersection(gone)
        if stale:
            self.consumer.resume([TopicPartition(t, p) for t, p in stale])
        self.assigned.difference_update(gone)
        self.paused.difference_update(gone)
        self.held.difference_update(gone)

    def consume(self, max_records: int, timeout: float) -> list[Message]:
        return self.consumer.consume(max_records, timeout)

    def serve(self) -> list[Message]:
        """Run what librdkafka queued for the application (rebalance callbacks, commit
        answers, logs), without waiting: it does so only inside a consume. Returns at most
        one record, for the caller to ingest (called by the loop while it holds back)."""
        return self.consumer.consume(1, 0)

    def pause_all(self) -> int:
        todo = self.assigned - self.paused
        if todo:
            self.consumer.pause([TopicPartition(t, p) for t, p in todo])
            self.paused |= todo
        return len(todo)

    def resume_all(self) -> int:
        todo = (self.paused & self.assigned) - self.held
        if todo:
            self.consumer.resume([TopicPartition(t, p) for t, p in todo])
        self.paused &= self.held
        return len(todo)

    def hold(self, topic: str, partition: int) -> None:
        """Pause one partition until it is revoked (`resume_all` leaves it paused)."""
        self.held.add((topic, partition))
        if (topic, partition) not in self.paused:
            self.consumer.pause([TopicPartition(topic, partition)])
            self.paused.add((topic, partition))

    def commit_async(self, offsets: list[tuple[str, int, int]]) -> None:
        """Commit next-offsets-to-read; the broker's answer comes to `on_commit`."""
        tps = [TopicPartition(t, p, o) for t, p, o in offsets]
        try:
            self.consumer.commit(offsets=tps, asynchronous=True)
        except KafkaException as exc:
            log.warning("commit failed: %s", exc)

    def commit_sync(self, offsets: list[tuple[str, int, int]]) -> set[tuple[str, int]]:
        """Commit and wait: the (topic, partition)s the broker confirmed (none on failure)."""
        tps = [TopicPartition(t, p, o) for t, p, o in offsets]
        try:
            answer = self.consumer.commit(offsets=tps, asynchronous=False)
        except KafkaException as exc:
            log.warning("commit failed: %s", exc)
            return set()
        return {(tp.topic, tp.partition) for tp in answer or [] if tp.error is None}

    def total_partitions(self, timeout: float = 5.0) -> int:
        """Partitions of every subscribed topic (the denominator of the quota share)."""
        import re

        meta = self.consumer.list_topics(timeout=timeout)
        subs = self._settings.subscription()
        total = 0
        for name, topic in meta.topics.items():
            for sub in subs:
                if (sub.startswith("^") and re.match(sub, name)) or sub == name:
                    total += len(topic.partitions)
                    break
        return total

    def close(self, timeout: float, before: Callable[[], None] | None = None) -> bool:
        """Run `before` (the final commit), give the assignment up, then close the
        consumer (the group leave), on a thread of their own; False when that took longer
        than `timeout`: the caller exits anyway; the group reassigns after the session
        timeout.

        The assignment is given up first (unsubscribe, then consume until the revoke
        callback ran), so that close() itself runs no rebalance callback: one there, on
        a close overlapping an unfinished cooperative rebalance, made confluent-kafka's
        fallback wait for librdkafka's group thread holding the GIL, 16-30+ s with every
        Python thread frozen (librdkafka issues 4527, 4041; docs/delivery.md)."""
        consumer = self._consumer
        if consumer is None:
            return True
        deadline = time.monotonic() + timeout

        def closing() -> None:
            if before is not None:
                before()
            try:
                consumer.unsubscribe()
                self.last_rebalance = time.monotonic()
                # Until the revoke ran and no rebalance callback came for a while (one
                # under way may still deliver an assignment). Records fetched meanwhile
                # are dropped: never acked, so never committed.
                while time.monotonic() < deadline - UNSUBSCRIBE_RESERVE_S and (
                    self.assigned or time.monotonic() - self.last_rebalance < CLOSE_QUIET_S
                ):
                    consumer.consume(CLOSE_CONSUME_BATCH, 0.1)
            except Exception as exc:  # whatever it was, the close (group leave) still runs
                log.warning("could not give the assignment up before closing: %s", exc)
            consumer.close()

        closer = threading.Thread(target=closing, name="consumer-close", daemon=True)
        closer.start()
        closer.join(max(0.0, deadline - time.monotonic()))
        # Only now: the revoke callback still commits through `consumer`.
        self._consumer = None
        return not closer.is_alive()
