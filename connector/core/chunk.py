"""From consumed messages to the core's runs: the shell's half of `ingest`.

`map_chunk` walks one consumed batch once, asks the mapper for each run's per-topic
function (as `Pipeline._ingest` does), and sorts the outcomes into per-partition `Run`s
of rows, plus what the shell must report: bad records (to dead-letter with the tickets
`DeliveryCore.ingest` returns, in the same order), skips by reason, records consumed by
topic, and consumer error events. Pure: the messages are only read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from connector.core.rows import Row, Run
from connector.records import Event, RecordError, Skip


@dataclass(slots=True)
class Chunk:
    """One consumed batch, mapped."""

    runs: list[Run] = field(default_factory=list)
    failures: list[tuple[Any, RecordError]] = field(default_factory=list)  # (message, why)
    skipped: dict[tuple[str, str], int] = field(default_factory=dict)  # (topic, reason)
    consumed: dict[str, int] = field(default_factory=dict)  # topic -> records
    errors: list[Any] = field(default_factory=list)  # consumer error events (KafkaError)


def map_chunk(msgs: Sequence[Any], for_topic: Callable[[str], Callable[[Any], Any]]) -> Chunk:
    """Map `msgs` (confluent-kafka Messages or `SourceRecord`s) into a `Chunk`.

    The mapper returns an `Event`, a list of them, a `Skip` or a `RecordError` per
    record (`MapperLike`). Failures are listed in offset order within each run, which is
    the order of `DeliveryCore.ingest`'s tickets.
    """
    out = Chunk()
    runs, consumed, skipped = out.runs, out.consumed, out.skipped
    topic: str | None = None
    partition = -1
    rows: list[Row] = []
    skips: list[int] = []
    failed: list[int] = []
    map_one: Callable[[Any], Any] | None = None
    keep = rows.append
    start = 0  # records of the current run: len(msgs) - errors, counted once a run
    seen = 0
    for msg in msgs:
        err = msg.error()
        if err is not None:
            out.errors.append(err)
            continue
        t, p = msg.topic(), msg.partition()
        if p != partition or t != topic or map_one is None:
            # consumed batches come in runs of one partition: look things up once a run
            if topic is not None:
                runs.append(Run(topic, partition, rows, skips, failed))
                consumed[topic] = consumed.get(topic, 0) + seen - start
            start = seen
            topic, partition = t, p
            rows, skips, failed = [], [], []
            keep = rows.append
            map_one = for_topic(t)
        seen += 1
        result = map_one(msg)
        kind = result.__class__
        offset = msg.offset()
        if kind is Event:  # the common case: one event, no list
            stamp, ts = msg.timestamp()
            keep((offset, result.customer_id, result.name, result.metadata, ts if stamp else -1))
        elif kind is list:
            stamp, ts = msg.timestamp()
            ts = ts if stamp else -1
            for ev in result:
                keep((offset, ev.customer_id, ev.name, ev.metadata, ts))
        elif isinstance(result, Skip):
            skips.append(offset)
            key = (t, result.reason)
            skipped[key] = skipped.get(key, 0) + 1
        else:
            failed.append(offset)
            out.failures.append((msg, result))
    if topic is not None:
        runs.append(Run(topic, partition, rows, skips, failed))
        consumed[topic] = consumed.get(topic, 0) + seen - start
    return out
