"""connector/failures.py's letters with the real fetcher, dead-letter producer and broker:
the pipeline keeps no record for a waiting event, so an event Gameball rejected is
copied to the dead-letter topic with its record re-read by offset; one whose record
cannot be read becomes a reference copy holding the event as sent; one whose partition
was revoked meanwhile is not copied. Each acks its event in the core, and only then
does the commit pass it."""

from __future__ import annotations

import time

import orjson
import yaml
from prometheus_client import CollectorRegistry

from connector.config import parse
from connector.core import CoreSettings, DeliveryCore, Run
from connector.deadletter import DeadLetters
from connector.event_json import item_json
from connector.factory import build_pipeline
from connector.failures import Failures
from connector.gameball import Answer, GameballClient
from connector.ingest import acker
from connector.localbroker import LocalBroker
from connector.mapping import Mapper
from connector.records import SourceRecord
from connector.refetch import TIMED_OUT
from connector.sender import Delivery
from connector.telemetry import Health, Metrics
from tests.support import (
    API_KEY,
    SECRET_KEY,
    connector_config,
    dead_letter_parts,
    produce,
    read_all,
    three_records,
    unique,
    wait_until,
)

REJECTED = Answer(412, {"code": 2000, "type": "Request Error", "message": "bad customer"},
                  request_id="r-1")


def test_rejected_events_are_copied_with_their_records_read_again(
    broker: LocalBroker,
) -> None:
    topic, dlq = three_records(broker)
    registry, metrics, dead_letters, bad, letters = dead_letter_parts(
        broker.bootstrap, topic, dlq)
    failures = Failures(bad, metrics, letters)
    # Offsets 0 and 1 were read; 77 stands for a record the log no longer has.
    core = DeliveryCore(CoreSettings(max_items=100, linger_s=0.0, resend_bound=10_000))
    rows = [(off, f"c{off}", "place_order", item_json(f"c{off}", "place_order", {"n": off}), -1)
            for off in (0, 1, 77)]
    core.ingest([Run(topic, 0, rows)], 0.0)
    batch = core.next_batch(0.0, force=True)
    assert batch is not None
    bad_items = [item for item in batch.items if item.customer_id in ("c1", "c77")]
    done = core.complete(batch, 0.0, [(item, REJECTED) for item in bad_items])
    assert sorted(letter.offset for letter in done.letters) == [1, 77]
    for letter in done.letters:
        failures.letter(letter, acker(core, letter))
    # nothing past a copy not yet acknowledged
    assert all(offset <= 1 for _t, _p, offset in core.commits())

    def copied() -> bool:
        letters.poll()
        bad.poll()
        return core.dead_letters_pending == 0

    wait_until(copied, 60, "both copies acknowledged")
    assert letters.idle
    assert core.commits() == [(topic, 0, 78)]
    copies = {dict(m.headers())["gameball.error.offset"]: m
              for m in read_all(broker.bootstrap, dlq, quiet=2.0)}
    assert sorted(copies) == [b"1", b"77"]
    msg = copies[b"1"]
    headers = dict(msg.headers())
    assert (msg.key(), msg.value()) == (b"k1", b'{"n": 1}')  # the record as it was read
    assert headers["src"] == b"shop"
    assert headers["gameball.error.reason"] == b"rejected"
    assert headers["gameball.error.status"] == b"412"
    assert headers["gameball.error.requestId"] == b"r-1"
    assert headers["gameball.error.customerId"] == b"c1"
    assert "gameball.error.value_replaced" not in headers
    msg = copies[b"77"]
    headers = dict(msg.headers())
    assert orjson.loads(msg.value()) == {"topic": topic, "partition": 0, "offset": 77,
                                         "customerId": "c77", "event": "place_order",
                                         "metadata": {"n": 77}}
    assert headers["gameball.error.value_replaced"] == b"unavailable"
    assert headers["gameball.error.unavailable"] == TIMED_OUT.encode()
    assert headers["gameball.error.reason"] == b"rejected"
    assert registry.get_sample_value("gameball_connector_dead_letter_replaced_total") == 1
    letters.close(1.0)
    dead_letters.flush(5.0)


def test_a_rejected_event_of_a_revoked_partition_is_acked_without_a_copy(
    broker: LocalBroker,
) -> None:
    topic, dlq = unique("orders"), unique("dlq")
    broker.create_topics([topic, dlq], partitions=1)
    produce(broker.bootstrap, topic, [b'{"n": 0}'], partition=lambda i: 0)
    _registry, metrics, dead_letters, bad, letters = dead_letter_parts(
        broker.bootstrap, topic, dlq)
    failures = Failures(bad, metrics, letters)
    core = DeliveryCore(CoreSettings(max_items=100, linger_s=0.0, resend_bound=10_000))
    core.ingest([Run(topic, 0, [(0, "c0", "place_order",
                               item_json("c0", "place_order", {"n": 0}), -1)])], 0.0)
    batch = core.next_batch(0.0, force=True)
    assert batch is not None
    (letter,) = core.complete(batch, 0.0, [(batch.items[0], REJECTED)]).letters
    failures.letter(letter, acker(core, letter))
    core.revoke([(topic, 0)])  # the next owner reads it again and meets the rejection

    def answered() -> bool:
        letters.poll()
        return letters.idle

    wait_until(answered, 60, "the record re-read")
    assert core.dead_letters_pending == 0
    assert dead_letters.pending == 0
    letters.close(1.0)
    assert read_all(broker.bootstrap, dlq, quiet=2.0) == []


def test_a_revoke_drain_copies_rejected_events_before_it_gives_the_partition_up(
    broker: LocalBroker,
) -> None:
    """The pipeline's revoke drain (`Pipeline.drain_revoked`) waits for rejected events'
    records to be re-read and their copies acknowledged, so the partition leaves with
    nothing undone; the copies hold the records as they were written."""
    topic, dlq = unique("orders"), unique("dlq")
    broker.create_topics([topic, dlq], partitions=1)
    values = [orjson.dumps({"type": "order_placed", "id": f"o-{i}", "customer": {"id": f"c{i}"},
                            "total": {"amount": i}}) for i in range(3)]
    produce(broker.bootstrap, topic, values, partition=lambda i: 0)
    config = connector_config(broker.bootstrap, "http://127.0.0.1:9", topic, unique("g"),
                              dead_letter={"topic": dlq}, shutdown={"drain_seconds": 30})
    settings = parse(yaml.safe_dump(config),
                     env={"GAMEBALL_API_KEY": API_KEY, "GAMEBALL_SECRET_KEY": SECRET_KEY})
    registry = CollectorRegistry()
    pipeline = build_pipeline(settings, Mapper(settings.mappings),
                              GameballClient(settings.gameball, 2), Metrics(registry),
                              Health(60.0), DeadLetters(settings))
    pipeline.rebalance.on_assign([(topic, 0)])
    pipeline.ingest([SourceRecord(topic, v, offset_=i) for i, v in enumerate(values)])
    batch = pipeline.core.next_batch(time.monotonic() + 60, force=True)
    assert batch is not None and batch.events == 3
    bad = [item for item in batch.items if item.customer_id != "c1"]
    pipeline.completed(Delivery(batch, accepted=[([i for i in batch.items if i not in bad],
                                                  None)],
                                rejected=[(item, REJECTED) for item in bad]))
    assert pipeline.core.undone([(topic, 0)]) == 2
    assert pipeline.drain_revoked([(topic, 0)])  # within drain_seconds
    assert pipeline.core.undone([(topic, 0)]) == 0
    copies = read_all(broker.bootstrap, dlq, quiet=2.0)
    assert sorted(m.value() for m in copies) == [values[0], values[2]]
    assert registry.get_sample_value("gameball_connector_dead_letter_records_total",
                                     {"topic": topic, "reason": "rejected"}) == 2
