"""The consumer wrapper's shutdown bound: a close stuck in the group protocol must not
keep a stopping connector alive (the offsets are committed before it)."""

from __future__ import annotations

import threading
import time
from typing import Any

from confluent_kafka import TopicPartition

from connector.config import parse
from connector.source import Source, consumer_config

CONFIG = """
kafka: {bootstrap_servers: "127.0.0.1:1", topics: [orders]}
gameball: {api_key: key-123456, secret_key: secret-123456}
mappings: [{topic: orders, customer_id: customer, event: place_order}]
"""


class StuckConsumer:
    """Stands in for librdkafka's close waiting on a coordinator that never answers."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.closing = threading.Event()

    def subscribe(self, topics: list[str], **_callbacks: Any) -> None:
        pass

    def unsubscribe(self) -> None:
        pass

    def close(self) -> None:
        self.closing.set()
        self.release.wait(30)


def test_close_gives_up_after_its_bound_and_only_once() -> None:
    stuck = StuckConsumer()
    source = Source(parse(CONFIG, {}), on_assign=lambda _p: None, on_revoke=lambda _p, _l: None,
                    consumer_factory=lambda _conf: stuck)  # type: ignore[arg-type,return-value]
    source.open()
    started = time.monotonic()
    assert source.close(0.3) is False
    assert 0.3 <= time.monotonic() - started < 5
    assert stuck.closing.is_set()
    assert source.close(0.3) is True  # nothing left to close
    stuck.release.set()


def test_close_reports_a_close_that_finished() -> None:
    stuck = StuckConsumer()
    stuck.release.set()
    source = Source(parse(CONFIG, {}), on_assign=lambda _p: None, on_revoke=lambda _p, _l: None,
                    consumer_factory=lambda _conf: stuck)  # type: ignore[arg-type,return-value]
    source.open()
    assert source.close(5) is True


def test_the_revoke_inside_close_can_still_commit() -> None:
    """librdkafka runs the final revoke callback inside close(); it commits through the
    consumer, which must still be there."""
    seen: list[object] = []

    class RevokingConsumer:
        def subscribe(self, topics: list[str], **_callbacks: Any) -> None:
            pass

        def unsubscribe(self) -> None:
            pass

        def close(self) -> None:
            seen.append(source.consumer)  # what _revoked -> pipeline -> commit_sync uses

    consumer = RevokingConsumer()
    source = Source(parse(CONFIG, {}), on_assign=lambda _p: None, on_revoke=lambda _p, _l: None,
                    consumer_factory=lambda _conf: consumer)  # type: ignore[arg-type,return-value]
    source.open()
    assert source.close(5) is True
    assert seen == [consumer]


class GroupConsumer:
    """Stands in for confluent_kafka.Consumer in a group: unsubscribe() revokes the
    assignment at the next consume(), as librdkafka does; every call is recorded."""

    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = conf
        self.calls: list[str] = []
        self.revoke: Any = None
        self.unsubscribed = False

    def subscribe(self, topics: list[str], on_assign: Any, on_revoke: Any, on_lost: Any) -> None:
        self.calls.append("subscribe")
        self.assign, self.revoke = on_assign, on_revoke

    def consume(self, n: int, timeout: float) -> list[Any]:
        self.calls.append("consume")
        if self.unsubscribed and self.revoke is not None:
            self.revoke(self, [TopicPartition("orders", 0), TopicPartition("orders", 1)])
            self.revoke = None
        return []

    def unsubscribe(self) -> None:
        self.calls.append("unsubscribe")
        self.unsubscribed = True

    def commit(self, offsets: Any, asynchronous: bool) -> list[Any]:
        self.calls.append("commit")
        return []

    def close(self) -> None:
        self.calls.append("close")


def test_close_gives_the_assignment_up_before_closing() -> None:
    """A rebalance callback inside close() can freeze the process (librdkafka 4527, 4041:
    confluent-kafka's fallback waits holding the GIL): the revoke must run before it, in
    a consume() of its own, and the final commit before that."""
    revoked: list[list[tuple[str, int]]] = []
    made: list[GroupConsumer] = []

    def factory(conf: dict[str, Any]) -> GroupConsumer:
        made.append(GroupConsumer(conf))
        return made[0]

    source = Source(parse(CONFIG, {}), on_assign=lambda _p: None,
                    on_revoke=lambda parts, _lost: revoked.append(parts),
                    consumer_factory=factory)  # type: ignore[arg-type]
    source.open()
    (consumer,) = made
    consumer.assign(consumer, [TopicPartition("orders", 0), TopicPartition("orders", 1)])
    assert source.assigned == {("orders", 0), ("orders", 1)}
    assert source.close(5, before=lambda: consumer.calls.append("final commit")) is True
    assert revoked == [[("orders", 0), ("orders", 1)]]
    assert source.assigned == set()
    calls = consumer.calls
    assert calls[:3] == ["subscribe", "final commit", "unsubscribe"]
    assert calls[-1] == "close" and set(calls[3:-1]) == {"consume"}
    assert consumer.conf["enable.auto.commit"] is False  # the factory got the real settings


def test_consumer_properties_are_the_defaults_then_the_users_then_what_commits_need() -> None:
    """The prefetch defaults (docs/configuration.md) hold unless `kafka.properties` says
    otherwise; the commit protocol's settings hold whatever it says."""
    conf = consumer_config(parse(CONFIG, {}))
    assert (conf["fetch.queue.backoff.ms"], conf["queued.max.messages.kbytes"]) == (50, 16384)
    user = CONFIG.replace(
        "topics: [orders]",
        "topics: [orders], properties: {queued.max.messages.kbytes: 65536,"
        " fetch.queue.backoff.ms: 1000, enable.auto.commit: true}")
    conf = consumer_config(parse(user, {}))
    assert (conf["fetch.queue.backoff.ms"], conf["queued.max.messages.kbytes"]) == (1000, 65536)
    assert conf["enable.auto.commit"] is False
