"""Each metric of the public contract, on a fresh registry, after driving the pipeline's
own pieces with stub records (no broker: the Pipeline opens no connection until run)."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from confluent_kafka import TopicPartition
from prometheus_client import CollectorRegistry

from connector.config import parse
from connector.core import CoreSettings, DeliveryCore, Item, Run
from connector.event_json import encode_items
from connector.factory import build_pipeline
from connector.gameball import Action, Answer, GameballClient, Verdict
from connector.mapping import Mapper
from connector.records import Event, SourceRecord
from connector.sender import Delivery
from connector.sender_reports import SenderReports
from connector.source import Source
from connector.telemetry import Health, Metrics

CONFIG = """
kafka: {bootstrap_servers: "127.0.0.1:1", topics: [orders]}
gameball:
  base_url: "http://127.0.0.1:1"
  api_key: key-123456
  secret_key: secret-123456
  rate_limit: {enabled: false}
batch: {max_items: 10, linger_ms: 0}
mappings:
  - topic: orders
    when: "type == 'order'"
    customer_id: customer
    event: place_order
    metadata: {id: id}
"""


def with_route(extra: str) -> str:
    """CONFIG with `extra` lines added to its route."""
    return CONFIG.replace("    metadata: {id: id}\n", "    metadata: {id: id}\n" + extra)


class Built:
    def __init__(self, batch: str | None = None, dead_letters: Any = None,
                 source_type: type[Source] = Source, route_extra: str = "",
                 dead_letter: str = "{topic: orders-dlq}") -> None:
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.health = Health(60)
        config = with_route(route_extra)
        if batch is not None:
            config = config.replace("batch: {max_items: 10, linger_ms: 0}", f"batch: {batch}")
        # No consumer here to hold a partition at a bad record (on_error: stop).
        config += (f"dead_letter: {dead_letter}\n" if dead_letters is not None
                   else "dead_letter: {on_error: drop}\n")
        settings = parse(config, {})
        self.client = GameballClient(settings.gameball, 2)
        self.pipeline = build_pipeline(settings, Mapper(settings.mappings), self.client,
                                       self.metrics, self.health, dead_letters,
                                       source_type=source_type)

    def value(self, name: str, **labels: str) -> float:
        got = self.registry.get_sample_value(name, labels)
        return 0.0 if got is None else got


def assign(b: Built, partition: int = 0) -> None:
    """What librdkafka's assign callback does through the Source: owned, then assigned."""
    b.pipeline.source.assigned.add(("orders", partition))
    b.pipeline.rebalance.on_assign([("orders", partition)])


def rec(offset: int, value: dict[str, Any] | bytes | None, partition: int = 0) -> SourceRecord:
    raw = orjson.dumps(value) if isinstance(value, dict) else value
    two_seconds_ago = int(time.time() * 1000) - 2000
    return SourceRecord("orders", raw, partition, offset, timestamp_ms=two_seconds_ago)


def one_item(record: SourceRecord) -> list[Item]:
    """The core items of a one-event request for `record` (customer c1), as cut by a core."""
    core = DeliveryCore(CoreSettings(max_items=10, linger_s=0.0))
    ev = Event("c1", "place_order", {}, record)
    core.ingest([Run(record.topic(), record.partition(), [
        (record.offset(), "c1", "place_order", ev)])], 0.0)
    batch = core.next_batch(0.0, force=True)
    assert batch is not None
    return batch.items


def test_consumed_records_are_counted_per_topic_across_partition_runs() -> None:
    b = Built()
    order = {"type": "order", "customer": "c1", "id": 1}
    b.pipeline.ingest([
        rec(0, order), rec(1, order),
        SourceRecord("clicks", b"{}", 0, 0), SourceRecord("clicks", b"{}", 0, 1),
        rec(0, order, partition=1),
        SourceRecord("clicks", b"{}", 2, 7),
    ])
    consumed = "gameball_connector_records_consumed_total"
    assert b.value(consumed, topic="orders") == 3
    assert b.value(consumed, topic="clicks") == 3
    assert b.pipeline.core.buffered == 3  # the orders; clicks has no route


def test_record_counters_follow_what_the_mapper_decided() -> None:
    b = Built()
    assign(b)
    b.pipeline.ingest([
        rec(0, {"type": "order", "customer": "c1", "id": 1}),
        rec(1, {"type": "view", "customer": "c1"}),  # no route takes it: unmatched
        rec(2, None),  # tombstone
        rec(3, b"{not json"),  # decode error
        rec(4, {"type": "order", "id": 2}),  # no customer id: mapping error
    ])
    assert b.value("gameball_connector_records_consumed_total", topic="orders") == 5
    skipped = "gameball_connector_records_skipped_total"
    assert b.value(skipped, topic="orders", reason="unmatched") == 1
    assert b.value(skipped, topic="orders", reason="tombstone") == 1
    failed = {s.labels["stage"]: s.value for s in b.registry.collect()
              for s in s.samples if s.name == "gameball_connector_records_failed_total"}
    assert failed == {"decode": 1, "mapping": 1}
    assert b.value("gameball_connector_assigned_partitions") == 1
    assert b.value("gameball_connector_rebalances_total", kind="assign") == 1


@pytest.mark.parametrize(("route_extra", "code"), [
    ("", "generated"),  # the route's generated rows encode it
    ("    drop_nulls: true\n", "closures"),  # the ingest encodes the route's Event
])
def test_metadata_without_a_json_form_fails_its_record_at_ingest(
    route_extra: str, code: str
) -> None:
    """Each event's metadata is encoded once, at ingest: one that cannot be (orjson
    writes 254 levels at most) fails its record there, with stage `encode`, and the
    rest of the chunk waits to be sent as usual."""
    b = Built(route_extra=route_extra)
    assert [info.code for info in Mapper(parse(with_route(route_extra), {}).mappings)
            .route_info()] == [code]
    assign(b)
    deep = b'{"d":' * 300 + b'"bottom"' + b"}" * 300
    b.pipeline.ingest([
        rec(0, {"type": "order", "customer": "c1", "id": 1}),
        rec(1, b'{"type": "order", "customer": "c2", "id": ' + deep + b"}"),
        rec(2, {"type": "order", "customer": "c3", "id": 3}),
    ])
    assert b.value("gameball_connector_records_failed_total", topic="orders", stage="encode",
                   reason="unencodable") == 1
    assert b.pipeline.core.waiting == 2  # c1's and c3's events; c2's record was dropped
    batch = b.pipeline.core.next_batch(time.monotonic() + 60, force=True)
    assert batch is not None
    assert orjson.loads(encode_items(batch.items)) == {"body": [
        {"customerId": "c1", "events": {"place_order": {"id": 1}}},
        {"customerId": "c3", "events": {"place_order": {"id": 3}}}]}


def test_acceptance_drives_events_latency_and_commits() -> None:
    b = Built()
    b.pipeline.rebalance.on_assign([("orders", 0)])
    b.pipeline.ingest([rec(i, {"type": "order", "customer": f"c{i}", "id": i}) for i in range(3)])
    b.pipeline.dispatch(time.monotonic() + 1, force=True)
    # the sender thread cannot reach 127.0.0.1:1; build its answer the way it would
    assert b.value("gameball_connector_inflight_requests") == 1
    assert b.value("gameball_connector_resend_exposure_events") == 3  # what a kill re-sends
    b.pipeline.senders.abandon()  # the real sender gives up; replace its outcome:
    (delivery,) = b.pipeline.senders.finished(wait=30)
    accepted = Delivery(delivery.batch, accepted=[(delivery.batch.items, 7)])
    b.pipeline.completed(accepted)
    assert b.value("gameball_connector_events_accepted_total", endpoint="batch") == 3
    assert b.value("gameball_connector_end_to_end_seconds_count") == 1
    assert b.value("gameball_connector_end_to_end_seconds_sum") >= 2.0
    assert b.pipeline.core.commits() == [("orders", 0, 3)]
    b.pipeline.commits.on_commit(None, [TopicPartition("orders", 0, 3)])
    assert b.value("gameball_connector_commits_total", result="ok") == 1
    assert b.value("gameball_connector_committed_offset", topic="orders", partition="0") == 3


def test_sender_hooks_count_requests_retries_duplicates_and_waits() -> None:
    b = Built()
    hooks = SenderReports(b.metrics, b.health, "batch")
    hooks.request_done(200, 0.05, 10)
    hooks.request_done(None, 1.0, 10)
    items = one_item(rec(9, {}))
    hooks.retrying("server_error", Answer(500), items)
    hooks.possible_duplicate(items)
    hooks.rate_limited(0.25)
    assert b.value("gameball_connector_requests_total", endpoint="batch", code="200") == 1
    assert b.value("gameball_connector_requests_total", endpoint="batch", code="error") == 1
    assert b.value("gameball_connector_request_duration_seconds_count", endpoint="batch") == 2
    assert b.value("gameball_connector_batch_items_sum") == 20
    assert b.value("gameball_connector_retries_total", endpoint="batch", reason="server_error") == 1
    assert b.value("gameball_connector_possible_duplicates_total") == 1
    assert b.value("gameball_connector_rate_limit_delay_seconds_total") == 0.25
    hooks.halted(Answer(401, {"code": 1001}), Verdict(Action.HALT, "auth"))
    assert b.health.ready() == (False, "starting")
    b.health.started = True
    assert b.health.ready()[0] is False and b.health.auth_failing
    hooks.recovered()
    assert b.health.ready() == (True, "ok")


def test_readiness_fails_while_gameball_answers_only_retryable_failures() -> None:
    now = [0.0]
    health = Health(60, clock=lambda: now[0], retrying_timeout=30)
    metrics = Metrics(CollectorRegistry())
    hooks = SenderReports(metrics, health, "batch")
    health.started = True
    batch = one_item(rec(9, {}))

    def fail(status: int | None, reason: str) -> None:
        hooks.request_done(status, 1.0, 1)
        hooks.retrying(reason, Answer(status), batch)

    fail(503, "server_error")
    now[0] = 20.0
    fail(None, "timeout")
    fail(429, "rate_limited")
    now[0] = 30.0
    assert health.ready() == (True, "ok")  # not longer than the threshold yet
    now[0] = 31.0
    fail(408, "request_timeout")
    assert health.ready() == (False, "Gameball has answered only retryable failures for 31s")
    hooks.request_done(422, 0.1, 1)  # 2001: retried, but Gameball is up and answering
    hooks.retrying("concurrent_customer", Answer(422), batch)
    assert health.ready() == (True, "ok")
    fail(500, "server_error")
    now[0] = 70.0
    assert health.ready()[0] is False
    hooks.request_done(200, 0.1, 1)  # one acceptance: delivering again
    assert health.ready() == (True, "ok")
    off = Health(60, clock=lambda: now[0])  # retrying_timeout 0: the check is off
    off.started = True
    off.gameball_retrying()
    now[0] = 10_000.0
    assert off.ready() == (True, "ok")


def test_lag_from_librdkafka_statistics() -> None:
    b = Built()
    b.pipeline.source.assigned.add(("orders", 1))
    stats = {"brokers": {"b1": {"state": "UP"}},
             "topics": {"orders": {"partitions": {"1": {"consumer_lag": 42},
                                                  "-1": {"consumer_lag": -1}}}}}
    b.pipeline.kafka_events.on_stats(orjson.dumps(stats).decode())
    assert b.value("gameball_connector_consumer_lag", topic="orders", partition="1") == 42
    assert b.health.broker_reachable
    stats["brokers"]["b1"]["state"] = "DOWN"
    b.pipeline.kafka_events.on_stats(orjson.dumps(stats).decode())
    assert not b.health.broker_reachable


class AckingDeadLetters:
    """Stands in for the broker's acknowledgement only; headers are kept to check."""

    def __init__(self) -> None:
        self.sent: list[list[tuple[str, bytes]]] = []

        self.pending = 0
        self.failing = 0

    def send(self, record: Any, headers: list[tuple[str, bytes]], on_done: Any) -> None:
        self.sent.append(headers)
        on_done()

    def poll(self) -> None:
        pass

    def oldest_wait(self) -> float:
        return 0.0


def test_rejected_events_whose_records_are_being_read_again_count_against_max_pending() -> None:
    """A rejected event's record is re-read before its copy reaches the producer; until
    then it counts against `dead_letter.max_pending` all the same (the broker here does
    not answer, so the re-read never ends)."""
    dlq = AckingDeadLetters()
    b = Built(dead_letters=dlq, dead_letter="{topic: orders-dlq, max_pending: 3}")
    assign(b)
    b.pipeline.ingest([rec(i, {"type": "order", "customer": f"c{i}", "id": i})
                       for i in range(4)])
    assert not b.pipeline.flow.held_back()
    batch = b.pipeline.core.next_batch(time.monotonic() + 60, force=True)
    assert batch is not None
    rejected = Answer(412, {"code": 2000, "message": "bad customer"})
    b.pipeline.completed(Delivery(batch, rejected=[(item, rejected) for item in batch.items]))
    assert dlq.sent == []  # nothing copied yet: the records are being read again
    assert b.pipeline.flow.letters_pending() == 4
    assert b.pipeline.flow.held_back() and b.pipeline.flow.at_bound()


def test_dead_letters_are_counted_once_acknowledged_and_revoke_drops_partition_series() -> None:
    dlq = AckingDeadLetters()
    b = Built(dead_letters=dlq)
    assign(b)
    b.pipeline.ingest([rec(0, b"{broken"), rec(1, {"type": "order", "customer": "c", "id": 1})])
    dead = "gameball_connector_dead_letter_records_total"
    assert b.value(dead, topic="orders", reason="invalid_json") == 1
    assert (b"gameball.error.stage", b"decode") in [(k.encode(), v) for k, v in dlq.sent[0]]
    b.pipeline.kafka_events.on_stats(orjson.dumps({"topics": {"orders": {"partitions": {
        "0": {"consumer_lag": 5}}}}}).decode())
    assert b.value("gameball_connector_consumer_lag", topic="orders", partition="0") == 5
    b.health.stopping = True  # revoke without draining the unsent event
    b.pipeline.rebalance.on_revoke([("orders", 0)], lost=True)
    assert b.value("gameball_connector_rebalances_total", kind="lost") == 1
    assert b.registry.get_sample_value(
        "gameball_connector_consumer_lag", {"topic": "orders", "partition": "0"}) is None
