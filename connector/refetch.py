"""Re-reading records by (topic, partition, offset): the record fetcher.

Job tracking keeps only where an accepted event came from (connector/jobitems.py); when
Gameball later fails its item, the record is read again from Kafka to dead-letter its
original bytes. `RecordFetcher` does that with a consumer of its own (no group: `assign`
at an offset, no commits), on a thread of its own so the loop never waits for Kafka:
the loop calls `want()` and collects with `poll()`. Offsets of one partition close to
each other are read in one pass. A record that cannot be read any more (retention
deleted it, it is not in the log, its partition is gone, no answer after `tries`
passes) comes back with `record=None` and the reason: never silently lost.
docs/delivery.md ("Faults and what the connector does").
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any, NamedTuple

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from connector.config import Settings
from connector.jobitems import CLOSED, DELETED, NOT_IN_LOG, TIMED_OUT
from connector.logs import librdkafka_logger
from connector.records import RecordLike
from connector.source import consumer_config

# The reasons a `Fetched` gives are re-exported from jobitems.
__all__ = ["CLOSED", "DELETED", "NOT_IN_LOG", "TIMED_OUT", "Fetched", "RecordFetcher",
           "Where", "fetcher_config"]

log = logging.getLogger(__name__)

Where = tuple[str, int, int]  # topic, partition, offset
MAX_GAP = 500  # wanted offsets closer than this are read in one pass
READ_BATCH = 500


class Fetched(NamedTuple):
    """One answer: the record, or None and why it could not be read."""

    where: Where
    record: RecordLike | None  # a confluent_kafka.Message
    reason: str | None = None


# What reading by offset needs, whatever the configuration it is given: no commits, no
# end-of-partition events, and a deleted offset read from the first one still there.
_REQUIRED = {"enable.auto.commit": False, "enable.partition.eof": False,
             "auto.offset.reset": "earliest"}


def fetcher_config(settings: Settings) -> dict[str, Any]:
    """The Source's consumer settings (security included), for reading by offset."""
    conf = consumer_config(settings)
    for key in ("statistics.interval.ms", "partition.assignment.strategy"):
        conf.pop(key, None)
    return conf


class RecordFetcher:
    """Reads records by offset on its own thread. `want`, `poll`, `pending` and `close`
    are called from one thread (the loop); the consumer is used only by the fetcher's
    thread, built at the first `want` (no network before)."""

    def __init__(
        self,
        conf: dict[str, Any],
        *,
        max_wanted: int = 100_000,
        timeout: float = 10.0,
        tries: int = 3,
        consumer_factory: Callable[[dict[str, Any]], Consumer] = Consumer,
    ) -> None:
        self._conf = {**conf, **_REQUIRED, "logger": librdkafka_logger()}
        self._factory = consumer_factory
        self._timeout = timeout
        self._tries = tries
        self._inbox: queue.Queue[tuple[Where, int]] = queue.Queue(max_wanted)
        self._out: queue.SimpleQueue[Fetched] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._open: set[Where] = set()  # wanted, not answered yet
        self._again: list[tuple[Where, int]] = []  # the thread's: to read again (tries)
        self._wanted = 0  # asked for and not yet collected by `poll` (loop thread only)

    @property
    def pending(self) -> int:
        """Records asked for whose answer `poll` has not returned yet."""
        return self._wanted

    def want(self, topic: str, partition: int, offset: int) -> bool:
        """Ask for one record (once: asking again while it is wanted changes nothing);
        False when `max_wanted` are queued or after `close` (ask again later)."""
        where = (topic, partition, offset)
        with self._lock:
            if where in self._open:
                return True
            if self._stop.is_set():
                return False
            try:
                self._inbox.put_nowait((where, 0))
            except queue.Full:
                return False
            self._open.add(where)
        self._wanted += 1
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="record-fetcher",
                                            daemon=True)
            self._thread.start()
        return True

    def poll(self) -> list[Fetched]:
        """The answers that arrived since the last call; never blocks."""
        out: list[Fetched] = []
        while True:
            try:
                out.append(self._out.get_nowait())
            except queue.Empty:
                break
        self._wanted -= len(out)
        return out

    def close(self, timeout: float) -> list[Fetched]:
        """Stop within `timeout` seconds (at shutdown); returns the answers not polled
        yet, and every record still wanted as `CLOSED`."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        out = self.poll()
        with self._lock:  # answers the thread gives after this are dropped
            out.extend(Fetched(where, None, CLOSED) for where in sorted(self._open))
            self._open.clear()
        self._wanted = 0
        return out

    # --- the fetcher's thread -----------------------------------------------------------

    def _run(self) -> None:
        consumer: Consumer | None = None
        try:
            consumer = self._factory(self._conf)
            while not self._stop.is_set():
                wanted = self._take()
                by_part: dict[tuple[str, int], dict[int, int]] = defaultdict(dict)
                for (topic, partition, offset), tries in wanted:
                    by_part[(topic, partition)][offset] = tries
                for (topic, partition), offsets in by_part.items():
                    if self._stop.is_set():
                        break
                    self._read_partition(consumer, topic, partition, offsets)
        except Exception:  # a bug here must not lose what was wanted: close() reports it
            log.exception("record fetcher failed")
        finally:
            if consumer is not None:
                consumer.close()

    def _take(self) -> list[tuple[Where, int]]:
        out, self._again = self._again, []
        if not out:
            try:
                out.append(self._inbox.get(timeout=0.2))
            except queue.Empty:
                return []
        while len(out) < 10 * READ_BATCH:
            try:
                out.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        return out

    def _answer(self, topic: str, partition: int, offset: int, record: Any,
                reason: str | None = None) -> None:
        where = (topic, partition, offset)
        with self._lock:
            if where in self._open:  # not answered as CLOSED by `close` already
                self._open.discard(where)
                self._out.put(Fetched(where, record, reason))

    def _read_partition(self, consumer: Consumer, topic: str, partition: int,
                        offsets: dict[int, int]) -> None:
        """Read the wanted `offsets` (-> tries so far) of one partition; those not read
        in time go back to the inbox, or are answered `TIMED_OUT` after `tries`."""
        left = dict(offsets)
        try:
            # Only the low mark: some brokers (tansu) report a wrong high one; a record
            # past the end is answered TIMED_OUT after `tries` passes.
            low, _high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=self._timeout)
        except KafkaException as exc:
            self._retry(topic, partition, left, f"watermarks: {_name(exc)}")
            return
        for offset in [o for o in left if o < low]:
            self._answer(topic, partition, offset, None, DELETED)
            del left[offset]
        for run in _runs(sorted(left)):
            self._read_run(consumer, topic, partition, run, left)
        if left:
            self._retry(topic, partition, left, "not read in time")

    def _read_run(self, consumer: Consumer, topic: str, partition: int, run: list[int],
                  left: dict[int, int]) -> None:
        """One pass from `run[0]` to `run[-1]`; what it reads is removed from `left`."""
        consumer.assign([TopicPartition(topic, partition, run[0])])
        deadline = time.monotonic() + self._timeout
        todo = set(run)
        try:
            while todo and not self._stop.is_set():
                wait = deadline - time.monotonic()
                if wait <= 0:
                    return
                for msg in consumer.consume(min(READ_BATCH, run[-1] - run[0] + 1), min(wait, 1.0)):
                    err, offset = msg.error(), msg.offset() or 0
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            continue
                        log.warning("record fetcher: read error", extra={
                            "topic": topic, "partition": partition, "error": err.name()})
                        continue
                    self._skipped(topic, partition, todo, left, offset)
                    if offset in todo:
                        todo.discard(offset)
                        del left[offset]
                        self._answer(topic, partition, offset, msg)
        finally:
            consumer.unassign()

    def _skipped(self, topic: str, partition: int, todo: set[int], left: dict[int, int],
                 reached: int) -> None:
        """Wanted offsets below `reached` that the log did not have."""
        for offset in [o for o in todo if o < reached]:
            todo.discard(offset)
            del left[offset]
            self._answer(topic, partition, offset, None, NOT_IN_LOG)

    def _retry(self, topic: str, partition: int, left: dict[int, int], why: str) -> None:
        gave_up = [o for o, tries in left.items() if tries + 1 >= self._tries]
        for offset in gave_up:
            del left[offset]
            self._answer(topic, partition, offset, None, TIMED_OUT)
        if gave_up:
            log.warning("record fetcher: records could not be read", extra={
                "topic": topic, "partition": partition, "records": len(gave_up), "why": why})
        self._again.extend(((topic, partition, o), tries + 1) for o, tries in left.items())


def _runs(offsets: list[int]) -> list[list[int]]:
    """Sorted offsets cut where the gap to the next exceeds `MAX_GAP`."""
    runs: list[list[int]] = []
    for offset in offsets:
        if runs and offset - runs[-1][-1] <= MAX_GAP:
            runs[-1].append(offset)
        else:
            runs.append([offset])
    return runs


def _name(exc: KafkaException) -> str:
    err = exc.args[0] if exc.args else None
    return err.name() if isinstance(err, KafkaError) else type(exc).__name__
