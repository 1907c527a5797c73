"""The dead-letter producer's own logic, with librdkafka's Producer replaced by a
scripted stand-in (the real one is exercised in tests/integration/
test_delivery_bad_records.py): errors never escape, retries come from `poll` with
backoff, a copy too large becomes a reference, a fatal producer is replaced."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException

from connector.config import parse
from connector.deadletter import REPLACED, DeadLetterHooks, DeadLetters, error_headers
from connector.records import SourceRecord

CONFIG = """
kafka: {bootstrap_servers: "127.0.0.1:1", topics: [orders]}
gameball: {api_key: k, secret_key: s}
mappings: [{topic: orders, customer_id: c, event: e}]
dead_letter:
  topic: dlq
  retry_initial_backoff_ms: 125
  retry_max_backoff_ms: 500
"""

Report = Callable[[KafkaError | None, Any], None]


class ScriptedProducer:
    """`produce` raises what `raises` holds next, else queues the copy; `poll` answers
    each queued copy with the next of `answers` (None: acknowledged)."""

    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = conf
        self.raises: list[BaseException] = []
        self.answers: list[KafkaError | None] = []
        self.queued: list[tuple[dict[str, Any], Report]] = []
        self.written: list[dict[str, Any]] = []
        self.purged = False
        self.stuck = False  # poll answers nothing (a producer in a fatal state)

    def produce(self, topic: str, value: Any, key: Any, headers: Any, on_delivery: Report) -> None:
        if self.raises:
            raise self.raises.pop(0)
        self.queued.append(({"topic": topic, "value": value, "key": key,
                             "headers": headers}, on_delivery))

    def poll(self, _timeout: float) -> int:
        if self.stuck:
            return 0
        queued, self.queued = self.queued, []
        for copy, report in queued:
            err = self.answers.pop(0) if self.answers else None
            if err is None:
                self.written.append(copy)
            report(err, None)
        return len(queued)

    def flush(self, _timeout: float) -> int:
        self.poll(0)
        return 0

    def purge(self) -> None:
        self.purged = True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Built:
    def __init__(self, extra: str = "") -> None:
        self.producers: list[ScriptedProducer] = []
        self.clock = Clock()
        self.failures: list[str] = []
        self.replaced = 0

        def make(conf: dict[str, Any]) -> ScriptedProducer:
            self.producers.append(ScriptedProducer(conf))
            return self.producers[-1]

        def replaced() -> None:
            self.replaced += 1

        self.dlq = DeadLetters(parse(CONFIG + extra, {}),
                               DeadLetterHooks(self.failures.append, replaced),
                               self.clock, make)
        self.done: list[int] = []

    @property
    def producer(self) -> ScriptedProducer:
        return self.producers[-1]

    def send(self, offset: int, value: bytes = b"{broken", key: bytes | None = b"k") -> None:
        record = SourceRecord("orders", value, 0, offset, key_=key)
        headers = error_headers(record, "decode", "invalid_json", "bad", now=0)
        self.dlq.send(record, headers, lambda: self.done.append(offset))


def test_a_produce_error_is_retried_from_poll_with_backoff_never_raised() -> None:
    b = Built()
    b.producer.raises = [KafkaException(KafkaError(KafkaError._UNKNOWN_TOPIC)), BufferError()]
    b.send(1)  # refused: no exception comes out
    assert b.dlq.pending == 1 and b.dlq.failing == 1 and b.failures == ["_unknown_topic"]
    b.dlq.poll()
    assert b.done == [] and b.producer.written == []  # not due yet (125 ms)
    b.clock.now += 0.125
    b.dlq.poll()  # due: produce raises BufferError (queue full), again without raising
    assert b.failures == ["_unknown_topic", "_queue_full"]
    b.clock.now += 0.125
    b.dlq.poll()  # written, acknowledged at the next poll
    b.dlq.poll()
    assert b.done == [1] and b.dlq.pending == 0 and b.dlq.failing == 0


def test_unacknowledged_copies_back_off_exponentially_up_to_the_maximum() -> None:
    b = Built()
    timeout = KafkaError(KafkaError._MSG_TIMED_OUT)
    b.producer.answers = [timeout] * 4
    b.send(1)
    due: list[float] = []
    for _ in range(4):
        start = b.clock.now
        b.dlq.poll()  # the broker's answer: timed out
        while not b.producer.queued:  # step the clock until poll writes it again
            b.clock.now += 1 / 64  # exact in binary: no rounding at the due time
            b.dlq.poll()
        due.append(round(b.clock.now - start, 3))
    assert due == [0.125, 0.25, 0.5, 0.5]
    b.dlq.poll()
    assert b.done == [1] and b.failures == ["_msg_timed_out"] * 4
    assert b.dlq.oldest_wait() == 0.0


def test_oldest_wait_is_what_readiness_reads() -> None:
    b = Built()
    b.producer.answers = [KafkaError(KafkaError._MSG_TIMED_OUT)]
    b.send(1)
    b.clock.now += 7
    b.send(2)
    assert b.dlq.oldest_wait() == 7.0
    b.dlq.poll()  # 1 timed out, 2 acknowledged
    assert b.done == [2] and b.dlq.oldest_wait() == 7.0 and b.dlq.failing == 1


def test_a_copy_over_message_max_bytes_is_written_as_a_reference() -> None:
    b = Built("  properties: {message.max.bytes: 10000}\n")
    b.send(5, value=b"v" * 20_000)
    b.dlq.poll()
    (copy,) = b.producer.written
    assert orjson.loads(copy["value"])["size"] == 20_000
    assert copy["key"] == b"k" and (REPLACED, b"reference") in copy["headers"]
    assert b.done == [5] and b.replaced == 1


def test_the_broker_refusing_the_size_makes_it_a_reference_then_key_and_headers_too() -> None:
    b = Built()
    too_large = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    b.producer.answers = [too_large, too_large]
    b.send(3, value=b"v" * 5000)
    b.dlq.poll()  # refused as it was: written again at once as a reference
    b.dlq.poll()
    b.dlq.poll()  # refused again: key and original headers replaced too
    b.dlq.poll()
    (copy,) = b.producer.written
    assert copy["key"] is None and (REPLACED, b"key") in copy["headers"]
    assert orjson.loads(copy["value"])["key_size"] == 1
    assert b.done == [3] and b.failures == ["msg_size_too_large"] * 2


def test_a_fatal_error_replaces_the_producer_and_sends_the_copies_again() -> None:
    b = Built()
    first = b.producer
    first.stuck = True
    b.send(1)  # queued in the old producer, never answered by it
    first.raises = [KafkaException(KafkaError(KafkaError._FATAL, "fenced", fatal=True))]
    b.send(2)  # refused with a fatal error: the producer is unusable
    b.clock.now += 1
    b.dlq.poll()
    assert len(b.producers) == 2 and first.purged
    first.stuck = False
    first.poll(0)  # a late report from the old producer: ignored, not acked twice
    assert b.done == []
    b.dlq.poll()
    assert sorted(b.done) == [1, 2] and b.dlq.pending == 0
    assert len(b.producer.written) == 2
