"""The benchmark's data: seeded JSON order records, produced fast to a fresh topic.

Called by bench.run before any measured program starts, so every run reads the same
backlog. Each record is about 250 bytes, keyed by its customer id; the partition is
chosen here (customer number modulo partitions) so the end offsets are simply the
counts per partition (tansu's high watermark is wrong after multi-record batches, see
shared/test-infrastructure.md). Delivery errors fail the benchmark.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from confluent_kafka import KafkaError, Message, Producer

EVENT_TYPE = "order_placed"
_TIERS = ("bronze", "silver", "gold", "platinum")
_CHANNELS = ("web", "ios", "android", "store")
_HEAD = (
    '{"id":"ord-%09d","type":"order_placed","created_at":"2024-06-%02dT%02d:%02d:%02d.%03dZ",'
    '"customer":{"id":"cust-%05d","tier":"%s"},'
)
_TAIL = (
    '"total":{"amount":%d.%02d,"currency":"EGP"},'
    '"items":[{"sku":"SKU-%05d","qty":%d,"price":%d.%02d}],"channel":"%s","store":"s%03d"}'
)
_VARIANTS = 4096  # distinct order bodies per seed (formatting each record anew is slow)


@dataclass(frozen=True)
class Produced:
    topic: str
    records: int
    partitions: int
    end_offsets: dict[int, int]  # next offset to read, per partition
    bytes: int
    seconds: float


def _tails(seed: int) -> list[str]:
    rng = random.Random(seed)
    tails = []
    for _ in range(_VARIANTS):
        amount = rng.randrange(500, 500_000)
        qty = 1 + rng.randrange(4)
        each = amount // qty
        tails.append(_TAIL % (amount // 100, amount % 100, rng.randrange(100_000), qty,
                              each // 100, each % 100, _CHANNELS[rng.randrange(4)],
                              rng.randrange(1000)))
    return tails


def records(count: int, customers: int, seed: int, start: int = 0) -> list[tuple[int, bytes]]:
    """(customer number, JSON value) for records start..start+count-1; same seed, same data."""
    rng = random.Random(seed * 1_000_003 + start)
    rand = rng.random
    tails = _tails(seed)
    out: list[tuple[int, bytes]] = []
    for i in range(start, start + count):
        customer = int(rand() * customers)
        ms = i * 7
        head = _HEAD % (i, 1 + (ms // 86_400_000) % 28, (ms // 3_600_000) % 24,
                        (ms // 60_000) % 60, (ms // 1000) % 60, ms % 1000, customer,
                        _TIERS[customer & 3])
        out.append((customer, (head + tails[int(rand() * _VARIANTS)]).encode()))
    return out


def produce(
    bootstrap: str,
    topic: str,
    count: int,
    partitions: int,
    customers: int,
    seed: int,
    timeout: float = 300.0,
) -> Produced:
    """Produce `count` records to `topic` (which must exist, with `partitions`)."""
    started = time.monotonic()
    deadline = started + timeout
    errors: list[str] = []

    def failed(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(str(err))

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.num.messages": 10_000,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "delivery.report.only.error": True,
            "acks": 1,
        }
    )
    ends = dict.fromkeys(range(partitions), 0)
    total_bytes = 0
    chunk = 50_000
    produce_one = producer.produce
    for start in range(0, count, chunk):
        for customer, value in records(min(chunk, count - start), customers, seed, start):
            part = customer % partitions
            key = b"cust-%05d" % customer
            while True:
                try:
                    produce_one(topic, value, key, part, on_delivery=failed)
                    break
                except BufferError:
                    producer.poll(0.05)
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"producing {topic} took over {timeout}s") from None
            ends[part] += 1
            total_bytes += len(value)
        producer.poll(0)
    left = producer.flush(max(1.0, deadline - time.monotonic()))
    if left or errors:
        raise RuntimeError(f"producing {topic}: {left} undelivered, errors: {errors[:3]}")
    return Produced(topic, count, partitions, ends, total_bytes, time.monotonic() - started)
