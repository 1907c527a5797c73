"""Step 1 of the commit cycle: a consumed chunk, mapped, into the delivery core.

The hot path: one walk over the chunk, the mapper's per-topic function looked up once
per partition run, one `Run` of rows per run for `DeliveryCore.ingest`. Each event leaves
the Kafka message here: it is encoded to JSON once, as its request item (a generated
route's row comes encoded; connector/event_json.py), and the row keeps only that, so a
waiting event holds neither the message nor the mapped dict; a rejected event's record
is re-read by offset (connector/failures.py). Records of a partition held at a bad
record are left unread; a record whose schema the registry cannot give is held with
everything after it (connector/registry_outage.py); records that fail to map or encode
go to `dead_letter.on_error` with the core's tickets. Called by the loop thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from confluent_kafka import KafkaError

from connector.badrecords import BadRecords
from connector.core import DeliveryCore, Letter, Row, Run
from connector.event_json import item_json
from connector.failures import Failures
from connector.records import EncodeError, Event, RecordError, RegistryUnavailable, Skip
from connector.registry_outage import RegistryOutage
from connector.telemetry import Metrics


class MapperLike(Protocol):
    def for_topic(self, topic: str | None) -> Callable[[Any], Any]: ...


def acker(core: DeliveryCore, letter: Letter) -> Callable[[], None]:
    """The dead-letter copy of `letter`'s record was acknowledged: its event is done."""
    return lambda: core.dead_lettered(letter)


class Ingest:
    """Built by the factory; `ingest(msgs)` is one consumed chunk."""

    def __init__(self, mapper: MapperLike, core: DeliveryCore, bad: BadRecords,
                 outage: RegistryOutage, failures: Failures, metrics: Metrics,
                 on_error: Callable[[KafkaError], None], clock: Callable[[], float]) -> None:
        self._mapper = mapper
        self._core = core
        self._bad = bad
        self._outage = outage
        self._failures = failures
        self._m = metrics
        self._on_error = on_error
        self._clock = clock
        self._consumed: dict[str, Any] = {}
        self._skipped: dict[tuple[str, str], Any] = {}

    def __call__(self, msgs: list[Any]) -> None:
        """Map `msgs` into the core (the hot path): one `Run` of rows per partition
        run; a row's payload is its event as request-item JSON (`item_json`)."""
        for_topic = self._mapper.for_topic  # per-topic plans are cached by the mapper
        runs: list[Run] = []
        failures: dict[tuple[str, int, int], tuple[Any, RecordError]] = {}
        counts: dict[str, int] = {}
        last_topic: str | None = None
        last_partition, run = -1, 0
        rows: list[Row] = []
        keep = rows.append
        skips: list[int] = []
        failed: list[int] = []
        map_one: Any = None
        stamp_ms = -1  # the run's first record's timestamp: its segments carry it
        halted = self._bad.halted
        held: int | None = None
        for msg in msgs:
            if msg.error() is not None:
                self._on_error(msg.error())
                continue
            topic = msg.topic()
            partition = msg.partition()
            if partition != last_partition or topic != last_topic or map_one is None:
                # consumed batches come in runs of one partition: look things up once a run
                if last_topic is not None:
                    counts[last_topic] = counts.get(last_topic, 0) + run
                    runs.append(Run(last_topic, last_partition, rows, skips, failed, stamp_ms))
                stamp, stamp_ms = msg.timestamp()
                if not stamp:  # TIMESTAMP_NOT_AVAILABLE
                    stamp_ms = -1
                run = 0
                rows, skips, failed = [], [], []
                keep = rows.append
                map_one = for_topic(topic)
                last_topic, last_partition = topic, partition
                held = halted.get((topic, partition)) if halted else None
            run += 1
            if held is not None and msg.offset() > held:
                continue  # fetched before its partition was held at a bad record
            try:
                out = map_one(msg)
            except RegistryUnavailable as exc:  # not the record's fault: hold, retry later
                run -= 1
                self._outage.hold(msgs[msgs.index(msg):], exc, self._clock())
                break
            kind = out.__class__
            if kind is tuple:  # the common case: a generated route's row, encoded
                keep(out)
                continue
            offset = msg.offset()  # a row has its own: asked only for the other outcomes
            try:
                if kind is Event:  # one event of a route on closures, not yet encoded
                    cid, name = out.customer_id, out.name
                    keep((offset, cid, name, item_json(cid, name, out.metadata)))
                    continue
                if kind is list:  # all of a record's events, or none of them
                    rows.extend([(offset, ev.customer_id, ev.name,
                                  item_json(ev.customer_id, ev.name, ev.metadata))
                                 for ev in out])
                    continue
            except (TypeError, ValueError) as exc:  # orjson.JSONEncodeError is a TypeError
                out = EncodeError("unencodable", str(exc))
            if isinstance(out, Skip):
                skips.append(offset)
                key = (topic, out.reason)
                child = self._skipped.get(key)
                if child is None:
                    child = self._skipped[key] = self._m.records_skipped.labels(*key)
                child.inc()
            else:
                failed.append(offset)
                failures[(topic, partition, offset)] = (msg, out)
        if last_topic is not None:
            counts[last_topic] = counts.get(last_topic, 0) + run
            runs.append(Run(last_topic, last_partition, rows, skips, failed, stamp_ms))
        for letter in self._core.ingest(runs, self._clock()):
            msg, err = failures[(letter.topic, letter.partition, letter.offset)]
            self._failures.record_failed(msg, err, acker(self._core, letter))
        for topic, n in counts.items():
            child = self._consumed.get(topic)
            if child is None:
                child = self._consumed[topic] = self._m.records_consumed.labels(topic)
            child.inc(n)
