"""How long a commit takes to be stored on the local broker (tansu): synchronous commits
and asynchronous ones until their `on_commit` answer. Run: `python -m bench.commit_latency`.

Why it matters: a crash re-sends everything accepted since the last *stored* commit, so
the delivery core's crash budget (docs/core.md) waits for these answers.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from connector.localbroker import LocalBroker

PARTITIONS = 6


def main() -> int:
    with LocalBroker() as broker:
        broker.create_topics(["latency"], partitions=PARTITIONS)
        producer = Producer({"bootstrap.servers": broker.bootstrap})
        for i in range(PARTITIONS * 100):
            producer.produce("latency", value=b"x", partition=i % PARTITIONS)
        producer.flush(10)
        answered: dict[str, float] = {}

        def on_commit(_err: Any, _parts: Any) -> None:
            answered["at"] = time.monotonic()

        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "latency",
                             "enable.auto.commit": False, "auto.offset.reset": "earliest",
                             "on_commit": on_commit})
        consumer.subscribe(["latency"])
        deadline = time.monotonic() + 20
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(0.2)
        assigned = time.monotonic()
        while not consumer.consume(1, 0.05) and time.monotonic() < deadline:
            pass  # as the pipeline: the first commit follows the first records
        first_record = time.monotonic() - assigned
        tps = [TopicPartition("latency", p, 1) for p in range(PARTITIONS)]
        started = time.monotonic()
        consumer.commit(offsets=tps, asynchronous=True)  # the first, as the pipeline's
        while "at" not in answered:
            consumer.poll(0.001)
        first_async = answered["at"] - started
        sync, async_ = [], []
        for offset in range(2, 60):
            tps = [TopicPartition("latency", p, offset) for p in range(PARTITIONS)]
            started = time.monotonic()
            consumer.commit(offsets=tps, asynchronous=False)
            sync.append(time.monotonic() - started)
        for offset in range(60, 100):
            tps = [TopicPartition("latency", p, offset) for p in range(PARTITIONS)]
            answered.clear()
            started = time.monotonic()
            consumer.commit(offsets=tps, asynchronous=True)
            while "at" not in answered:
                consumer.poll(0.001)
            async_.append(answered["at"] - started)
        consumer.close()

    def ms(xs: list[float]) -> str:
        return f"median {statistics.median(xs) * 1000:.1f} ms, max {max(xs) * 1000:.1f} ms"

    print(f"first record {first_record * 1000:.0f} ms after the assignment; "
          f"first commit (asynchronous, until on_commit) {first_async * 1000:.1f} ms; then "
          f"synchronous: {ms(sync)}; asynchronous until on_commit: {ms(async_)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
