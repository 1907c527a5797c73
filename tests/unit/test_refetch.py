"""connector/refetch.py with a stand-in consumer, for what tansu cannot do: records
removed by retention (tansu has no DeleteRecords). The stand-in follows librdkafka's
documented behaviour: `get_watermark_offsets` gives the partition's first offset (the
low watermark; below it the log was deleted), `assign` at an offset then `consume`
returns the records from there; an offset the log skipped (compaction) is simply not
returned. The real broker is used in tests/integration/test_refetch.py."""

from __future__ import annotations

from typing import Any

from confluent_kafka import TopicPartition

from connector.records import SourceRecord
from connector.refetch import DELETED, NOT_IN_LOG, Fetched, RecordFetcher
from tests.support import wait_until


class Log:
    """One partition's log from `low` on, without the `skipped` offsets."""

    def __init__(self, low: int, high: int, skipped: set[int]) -> None:
        self.low, self.high = low, high
        self.records = {o: SourceRecord("t", f"v{o}".encode(), partition_=0, offset_=o)
                        for o in range(low, high) if o not in skipped}
        self.position: int | None = None
        self.closed = False

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        return self.low, self.high

    def assign(self, parts: list[TopicPartition]) -> None:
        self.position = max(parts[0].offset, self.low)

    def unassign(self) -> None:
        self.position = None

    def consume(self, num: int, timeout: float) -> list[Any]:
        assert self.position is not None
        out = [self.records[o] for o in range(self.position, self.high) if o in self.records]
        self.position = self.high
        return _Msg.wrap(out[:num])

    def close(self) -> None:
        self.closed = True


class _Msg:
    """A consumed record: `error()` None, the rest from the record."""

    def __init__(self, record: SourceRecord) -> None:
        self.record = record

    @classmethod
    def wrap(cls, records: list[SourceRecord]) -> list[Any]:
        return [cls(r) for r in records]

    def error(self) -> None:
        return None

    def offset(self) -> int:
        return self.record.offset()

    def value(self) -> bytes | None:
        return self.record.value_


def test_deleted_and_skipped_records_are_answered_with_their_reason() -> None:
    log = Log(low=10, high=20, skipped={13})
    fetcher = RecordFetcher({}, consumer_factory=lambda conf: log)  # type: ignore[arg-type,return-value]
    for offset in (3, 9, 12, 13, 15):
        assert fetcher.want("t", 0, offset)
    got: dict[int, Fetched] = {}

    def all_in() -> bool:
        got.update((f.where[2], f) for f in fetcher.poll())
        return len(got) == 5

    wait_until(all_in, 10, "five answers")
    assert {o: f.reason for o, f in got.items()} == {
        3: DELETED, 9: DELETED, 13: NOT_IN_LOG, 12: None, 15: None}
    assert got[12].record is not None and got[12].record.value() == b"v12"
    assert fetcher.close(5) == []
    assert log.closed
