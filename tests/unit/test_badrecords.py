"""dead_letter.on_error decisions and the dead-letter helpers that need no broker."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from connector.badrecords import BadRecords, DropLog
from connector.config import parse
from connector.deadletter import copy_size, error_headers, reference_value
from connector.records import SourceRecord
from connector.telemetry import Health, Metrics

CONFIG = """
kafka: {bootstrap_servers: "127.0.0.1:1", topics: [orders]}
gameball: {api_key: k, secret_key: s}
mappings: [{topic: orders, customer_id: c, event: e}]
"""


def rec(offset: int, partition: int = 0, value: bytes = b"{broken") -> SourceRecord:
    return SourceRecord("orders", value, partition, offset)


def headers(record: SourceRecord) -> list[tuple[str, bytes]]:
    return error_headers(record, "decode", "invalid_json", "unexpected character")


class Built:
    def __init__(self, extra: str = "", dead_letters: Any = None) -> None:
        self.registry = CollectorRegistry()
        self.health = Health(60)
        self.health.started = True
        self.bad = BadRecords(parse(CONFIG + extra, {}), Metrics(self.registry), self.health,
                              dead_letters)
        self.acked: list[int] = []

    def fail(self, record: SourceRecord, committed: bool = False) -> None:
        self.bad.handle(record, headers(record), lambda: self.acked.append(record.offset()),
                        committed=committed)

    def value(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


def test_stop_is_the_default_without_a_topic_and_holds_the_partition_at_its_first_bad_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    b = Built()
    with caplog.at_level(logging.ERROR):
        b.fail(rec(7))
        b.fail(rec(9))
        b.fail(rec(3, partition=1))
    assert b.acked == []  # never acked: nothing past them is committed
    assert b.bad.halted == {("orders", 0): 7, ("orders", 1): 3}
    assert b.bad.held_past("orders", 0, 8) and not b.bad.held_past("orders", 0, 7)
    ok, why = b.health.ready()
    assert not ok and "orders[0]@7" in why and "orders[1]@3" in why
    assert b.value("gameball_connector_records_halted") == 2
    assert [(r.offset, r.partition) for r in caplog.records] == [(7, 0), (9, 0), (3, 1)]  # type: ignore[attr-defined]
    b.bad.release([("orders", 0), ("orders", 1)])  # revoked: the next owner meets them
    assert b.health.ready() == (True, "ok")


def test_drop_acks_counts_and_logs_every_record_by_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    b = Built("dead_letter: {on_error: drop}\n")
    with caplog.at_level(logging.ERROR):
        for offset in range(135):
            b.fail(rec(offset))
        b.bad.flush(0)
    assert b.acked == list(range(135))
    assert b.value("gameball_connector_records_dropped_total", topic="orders", stage="decode",
                   reason="invalid_json") == 135
    lines = [(r.getMessage(), getattr(r, "offsets", None) if hasattr(r, "offsets")
              else getattr(r, "offset", None), getattr(r, "records", 1)) for r in caplog.records]
    assert lines[:10] == [("record dropped (dead_letter.on_error: drop)", i, 1) for i in range(10)]
    assert lines[10:] == [
        ("records dropped (dead_letter.on_error: drop)", "orders[0]@10-109", 100),
        ("records dropped (dead_letter.on_error: drop)", "orders[0]@110-134", 25),
    ]
    assert sum(n for _, _, n in lines) == 135  # every drop is in a line
    assert b.health.ready() == (True, "ok")


def test_a_failed_job_item_cannot_be_held_so_it_is_counted_as_dropped() -> None:
    b = Built()
    b.fail(rec(4), committed=True)
    assert b.acked == [4] and not b.bad.halted
    assert b.value("gameball_connector_records_dropped_total", topic="orders", stage="decode",
                   reason="invalid_json") == 1


class SlowDeadLetters:
    """Stands in for the producer's loop-side answers: pending copies and their wait."""

    def __init__(self) -> None:
        self.pending = 0
        self.failing = 0
        self.wait = 0.0
        self.sent: list[Any] = []

    def send(self, record: Any, hdrs: Any, on_done: Any) -> None:
        self.pending += 1
        self.sent.append(on_done)

    def poll(self) -> None:
        pass

    def oldest_wait(self) -> float:
        return self.wait


def test_readiness_fails_while_a_copy_waits_longer_than_the_threshold() -> None:
    dlq = SlowDeadLetters()
    b = Built("dead_letter: {topic: dlq, unready_after_seconds: 5}\n", dead_letters=dlq)
    b.fail(rec(1))
    dlq.failing, dlq.wait = 1, 4.0
    b.bad.poll()
    assert b.health.ready() == (True, "ok")
    dlq.wait = 6.0
    b.bad.poll()
    assert b.health.ready() == (False, "dead-letter copies unacknowledged for 6s (1 failing)")
    assert b.value("gameball_connector_dead_letter_failing") == 1
    assert b.acked == []
    dlq.sent[0]()  # the broker acknowledged it
    dlq.pending, dlq.failing, dlq.wait = 0, 0, 0.0
    b.bad.poll()
    assert b.acked == [1] and b.health.ready() == (True, "ok")
    assert b.value("gameball_connector_dead_letter_records_total", topic="orders",
                   reason="invalid_json") == 1


def test_a_reference_names_the_original_and_its_digest() -> None:
    value = b"x" * 2_000_000
    record = SourceRecord("orders", value, 2, 41, key_=b"k")
    assert orjson.loads(reference_value(record)) == {
        "topic": "orders", "partition": 2, "offset": 41, "size": 2_000_000,
        "sha256": hashlib.sha256(value).hexdigest(),
    }
    with_key = orjson.loads(reference_value(record, with_key=True))
    assert with_key["key_size"] == 1 and with_key["key_sha256"] == hashlib.sha256(b"k").hexdigest()
    assert copy_size(b"k", value, [("h", b"12")]) == 1 + 2_000_000 + 1 + 2 + 8


def test_drop_log_flush_is_silent_when_nothing_is_held_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = DropLog(logging.getLogger("t"), first=2, every=3)
    with caplog.at_level(logging.ERROR):
        for offset in range(5):
            log.dropped("orders", 0, offset, "decode", "invalid_json", "")
        log.flush()
    assert [getattr(r, "records", 1) for r in caplog.records] == [1, 1, 3]
