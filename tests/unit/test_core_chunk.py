"""map_chunk: consumed messages -> the core's runs, with what the shell reports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connector.core import CoreSettings, DeliveryCore, map_chunk
from connector.records import Event, MappingError, RecordLike, Skip, SourceRecord


def mapper(topic: str) -> Callable[[Any], Any]:
    """A stand-in with the mapper's contract (MapperLike.for_topic): by the value."""

    def map_one(rec: RecordLike) -> Any:
        value = rec.value()
        if value == b"two":
            return [Event("a", "buy", {"n": 1}, rec), Event("a", "visit", {"n": 2}, rec)]
        if value == b"skip":
            return Skip("filtered")
        if value == b"bad":
            return MappingError("missing_customer", "no customerId")
        return Event(str(value, "utf-8"), "buy", {"t": topic}, rec)

    return map_one


def test_runs_follow_partitions_and_outcomes_are_sorted() -> None:
    msgs = [SourceRecord("t", b"c1", 0, 5, timestamp_ms=1000),
            SourceRecord("t", b"two", 0, 6),
            SourceRecord("t", b"skip", 0, 7),
            SourceRecord("t", b"bad", 1, 3),
            SourceRecord("t", b"c2", 1, 4, timestamp_ms=2000)]
    chunk = map_chunk(msgs, mapper)
    assert [(r.topic, r.partition) for r in chunk.runs] == [("t", 0), ("t", 1)]
    first, second = chunk.runs
    assert list(first.rows) == [(5, "c1", "buy", {"t": "t"}, 1000),
                                (6, "a", "buy", {"n": 1}, -1), (6, "a", "visit", {"n": 2}, -1)]
    assert list(first.skipped) == [7] and list(second.failed) == [3]
    assert chunk.skipped == {("t", "filtered"): 1} and chunk.consumed == {"t": 5}
    ((msg, err),) = chunk.failures
    assert msg.offset() == 3 and err.reason == "missing_customer"

    core = DeliveryCore(CoreSettings(max_items=10, linger_s=0.0))
    letters = core.ingest(chunk.runs, 0.0)
    assert [(lt.partition, lt.offset) for lt in letters] == [(1, 3)]  # pairs with failures
    batch = core.next_batch(0.0)
    assert batch is not None and batch.events == 4
    core.complete(batch, 0.0)
    core.dead_lettered(letters[0])
    assert sorted(core.commits()) == [("t", 0, 8), ("t", 1, 5)]
