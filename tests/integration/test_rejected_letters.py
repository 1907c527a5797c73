"""connector/failures.py's letters with the real fetcher, dead-letter producer and broker:
the pipeline keeps no record for a waiting event, so an event Gameball rejected is
copied to the dead-letter topic with its record re-read by offset; one whose record
cannot be read becomes a reference copy holding the event as sent; one whose partition
was revoked meanwhile is not copied. Each acks its event in the core, and only then
does the commit pass it.

At shutdown (the real CLI, the last two tests) a record still being re-read holds the
drain: its copy is made and the final commit passes it; one the drain's budget cannot
wait for is neither copied nor committed past, and the next run meets it again."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

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
from connector.sandbox.faults import Faults
from connector.sandbox.server import SandboxServer
from connector.sender import Delivery
from connector.shutdown import SLACK_S
from connector.telemetry import Health, Metrics
from tests.support import (
    API_KEY,
    SECRET_KEY,
    ConnectorProcess,
    committed,
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
    rows = [(off, f"c{off}", "place_order", item_json(f"c{off}", "place_order", {"n": off}))
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
                               item_json("c0", "place_order", {"n": 0}))])], 0.0)
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


# --- shutdown while a rejected event's record is re-read (the real CLI) ------------------

BAD = "c7"  # the sandbox rejects this customer's events: 412, code 2000


def slow_fetches(hold_ms: int) -> dict[str, Any]:
    """librdkafka properties under which the broker holds every fetch `hold_ms` (it waits
    for 10 MB that never come, as Kafka's long poll does): the record fetcher's re-read
    takes that long, and so do the connector's own reads."""
    return {"fetch.min.bytes": 10_000_000, "fetch.wait.max.ms": hold_ms}


def good_bad_good(broker: LocalBroker) -> tuple[str, str, list[bytes]]:
    """A fresh one-partition topic holding orders of c1, `BAD`, c2 at offsets 0, 1, 2
    (keyed by customer, a `trace` header each), and a fresh dead-letter topic."""
    topic, dlq = unique("orders"), unique("dlq")
    broker.create_topics([topic, dlq], partitions=1)
    values = [orjson.dumps({"type": "order_placed", "id": f"o-{i}", "customer": {"id": c},
                            "total": {"amount": i}}) for i, c in enumerate(["c1", BAD, "c2"])]
    produce(broker.bootstrap, topic, values, key=lambda i: ["c1", BAD, "c2"][i].encode(),
            headers=lambda i: [("trace", f"t-{i}".encode())], partition=lambda i: 0)
    return topic, dlq, values


def reread_config(broker: LocalBroker, sandbox: SandboxServer, topic: str, group: str,
                  dlq: str, hold_ms: int, drain_seconds: int,
                  close_seconds: int) -> dict[str, Any]:
    """One item a request (no bisecting), fetches held `hold_ms`, the given shutdown
    budget, dead letters to `dlq`."""
    return connector_config(
        broker.bootstrap, sandbox.url, topic, group,
        kafka={"properties": slow_fetches(hold_ms)},
        batch={"max_items": 1, "linger_ms": 0, "max_in_flight": 3},
        dead_letter={"topic": dlq},
        shutdown={"drain_seconds": drain_seconds, "close_seconds": close_seconds},
    )


def run_until_rejected(config: dict[str, Any], sandbox: SandboxServer, tmp_path: Path,
                       name: str, rejections: int) -> ConnectorProcess:
    """Start the CLI; once the sandbox has answered `rejections` 412s in all and stored
    c1's and c2's events, send SIGTERM (the rejected record's re-read is then under way,
    or starts in the drain, which collects the answer) and expect exit 0 within the
    shutdown bound."""
    shutdown = config["shutdown"]
    with ConnectorProcess(config, tmp_path, name) as proc:

        def answered() -> bool:
            stats = sandbox.stats()
            stored = {item["customerId"] for item in sandbox.items()}
            return (sum(a["status"] == 412 for a in stats["arrivals"]) == rejections
                    and {"c1", "c2"} <= stored)

        wait_until(answered, 60, f"{BAD}'s event rejected, c1's and c2's stored")
        proc.stop(timeout=shutdown["drain_seconds"] + shutdown["close_seconds"] + SLACK_S + 5)
    return proc


def left_for_next_owner(proc: ConnectorProcess) -> list[int]:
    """Offsets the CLI logged as rejected events left unacked at shutdown."""
    return [int(e["offset"]) for e in proc.logs()
            if str(e.get("msg", "")).startswith("rejected event left for the partition's")]


def test_the_shutdown_drain_waits_for_a_rejected_events_record_to_be_read_again(
    broker: LocalBroker, tmp_path: Path
) -> None:
    """The broker holds each fetch 6 s, so the re-read of the rejected record outlasts
    the close phase's own wait for re-reads (at most 2 s) but not the drain (30 s): the
    drain must wait for it. Then the copy holds the record as written and the final
    commit passes it; without that wait the event is left for the next owner."""
    topic, dlq, values = good_bad_good(broker)
    group = unique("g-drain-reread")
    with SandboxServer(faults=Faults(reject_customers=[BAD])) as sandbox:
        config = reread_config(broker, sandbox, topic, group, dlq, hold_ms=6000,
                               drain_seconds=30, close_seconds=10)
        proc = run_until_rejected(config, sandbox, tmp_path, "connector", rejections=1)
    assert committed(broker.bootstrap, group, topic, 1) == {0: 3}  # past the rejected one
    copies = read_all(broker.bootstrap, dlq, quiet=2.0)
    assert [(m.key(), m.value()) for m in copies] == [(BAD.encode(), values[1])]
    headers = dict(copies[0].headers())
    assert headers["trace"] == b"t-1"  # the record as it was written
    assert headers["gameball.error.reason"] == b"rejected"
    assert headers["gameball.error.status"] == b"412"
    assert headers["gameball.error.customerId"] == BAD.encode()
    assert headers["gameball.error.offset"] == b"1"
    assert left_for_next_owner(proc) == []
    (stopped,) = [e for e in proc.logs() if e.get("msg") == "connector stopped"]
    assert stopped["drained"] is True  # done within the drain's budget, not cut short


def test_a_record_still_being_read_again_at_shutdown_is_left_for_the_next_owner(
    broker: LocalBroker, tmp_path: Path
) -> None:
    """The broker holds each fetch 8 s: longer than the whole shutdown (drain 1 s, the
    close phase's wait for re-reads at most 2 s), so the rejected event's record cannot
    be read again in time. The event is not copied and the commit does not pass it; the
    next run (ordinary fetches) meets the record again, and copies it then: one copy in
    all, nothing lost."""
    topic, dlq, values = good_bad_good(broker)
    group = unique("g-closed-reread")
    with SandboxServer(faults=Faults(reject_customers=[BAD])) as sandbox:
        config = reread_config(broker, sandbox, topic, group, dlq, hold_ms=8000,
                               drain_seconds=1, close_seconds=3)
        first = run_until_rejected(config, sandbox, tmp_path, "first", rejections=1)
        # Not past offset 1; a commit passes a consumed chunk's segment only when all of
        # it is done (docs/core.md), so it may stop before c1's accepted event, too.
        assert committed(broker.bootstrap, group, topic, 1)[0] in (0, 1)
        assert read_all(broker.bootstrap, dlq, quiet=2.0) == []
        assert left_for_next_owner(first) == [1]

        # The next owner of the group, with ordinary fetches: it reads from offset 1,
        # sends the event again, meets the rejection again and copies the record.
        config["kafka"]["properties"] = {
            k: v for k, v in config["kafka"]["properties"].items() if not k.startswith("fetch.")}
        with ConnectorProcess(config, tmp_path, "second") as second:
            wait_until(lambda: committed(broker.bootstrap, group, topic, 1) == {0: 3}, 60,
                       "the second run's commit past the rejected record")
            second.stop()
        rejected = [a for a in sandbox.stats()["arrivals"] if a["status"] == 412]
    assert len(rejected) == 2  # once per run: the second run met the record again
    copies = read_all(broker.bootstrap, dlq, quiet=2.0)
    assert [(m.key(), m.value()) for m in copies] == [(BAD.encode(), values[1])]
    assert dict(copies[0].headers())["trace"] == b"t-1"
    assert left_for_next_owner(second) == []
