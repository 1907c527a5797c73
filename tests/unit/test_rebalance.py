"""The pipeline's revoke and loss handling, with the consumer's commit calls recorded:
what a partition takes with it uncommitted is committed once more or counted."""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from prometheus_client import CollectorRegistry

from connector.config import parse
from connector.core import Batch
from connector.factory import build_pipeline
from connector.gameball import GameballClient
from connector.mapping import Mapper
from connector.pipeline import Pipeline
from connector.sender import Delivery
from connector.source import Source
from connector.telemetry import Health, Metrics
from tests.support import wait_until
from tests.unit.test_telemetry import CONFIG, Built, rec

DUPLICATES = "gameball_connector_possible_duplicates_total"


class Commits(Source):
    """A Source whose consumer's commit and pause calls are recorded; the broker confirms
    synchronous commits (or, in `Refusing`, does not)."""

    confirm = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, list[tuple[str, int, int]]]] = []
        self.pauses: list[str] = []

    def commit_async(self, offsets: list[tuple[str, int, int]]) -> None:
        self.calls.append(("async", offsets))

    def commit_sync(self, offsets: list[tuple[str, int, int]]) -> set[tuple[str, int]]:
        self.calls.append(("sync", offsets))
        return {(t, p) for t, p, _ in offsets} if self.confirm else set()

    def pause_all(self) -> int:
        self.pauses.append("pause")
        return 1

    def resume_all(self) -> int:
        self.pauses.append("resume")
        return 1


class Refusing(Commits):
    confirm = False


def recorded(confirm: bool = True, batch: str | None = None) -> tuple[Built, Commits]:
    """A pipeline over a recording Source, and that Source."""
    b = Built(batch=batch, source_type=Commits if confirm else Refusing)
    source = b.pipeline.source
    assert isinstance(source, Commits)
    return b, source


def take(b: Built) -> Batch:
    """The pipeline's next batch, as its dispatch hands it to a sender thread."""
    cut = b.pipeline.core.next_batch(time.monotonic() + 60, force=True)
    assert cut is not None
    return cut


def accept_three(b: Built) -> None:
    """Records 0-2 of orders[0] accepted by Gameball, their commit handed over
    asynchronously and not answered yet."""
    b.pipeline.rebalance.on_assign([("orders", 0)])
    b.pipeline.ingest([rec(i, {"type": "order", "customer": f"c{i}", "id": i}) for i in range(3)])
    batch = take(b)
    b.pipeline.completed(Delivery(batch, accepted=[(batch.items, 7)]))
    b.pipeline.commits.commit(asynchronous=True)


@pytest.mark.parametrize("confirmed", [True, False])
def test_revoke_commits_again_what_an_unanswered_async_commit_carried(confirmed: bool) -> None:
    b, commits = recorded(confirm=confirmed)
    accept_three(b)
    assert commits.calls == [("async", [("orders", 0, 3)])]
    b.pipeline.rebalance.on_revoke([("orders", 0)], lost=False)
    assert commits.calls[1:] == [("sync", [("orders", 0, 3)])]
    # refused: the next owner reads records 0-2 again, and that is counted
    assert b.value(DUPLICATES) == (0 if confirmed else 3)


def test_lost_partitions_count_accepted_and_in_flight_events_not_the_buffered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    b, commits = recorded()
    accept_three(b)
    b.pipeline.ingest([rec(3, {"type": "order", "customer": "c9", "id": 3})])
    take(b)  # record 3 in flight
    b.pipeline.ingest([rec(4, {"type": "order", "customer": "c9", "id": 4})])  # waits for c9
    with caplog.at_level(logging.WARNING, "connector.pipeline"):
        b.pipeline.rebalance.on_revoke([("orders", 0)], lost=True)
    assert [kind for kind, _ in commits.calls] == ["async"]  # a lost partition is not ours
    assert b.value(DUPLICATES) == 4  # 3 accepted + 1 in flight; record 4 was never sent
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.__dict__["accepted_uncommitted"] == 3
    assert warning.__dict__["in_flight"] == 1
    assert warning.__dict__["offsets"] == ["orders[0]@?-3"]
    assert b.pipeline.core.in_flight == 1  # record 3's batch is still out
    assert b.pipeline.core.waiting == 0  # record 4 was dropped for the next owner


def test_a_confirmed_commit_leaves_nothing_to_count() -> None:
    b, _commits = recorded()
    accept_three(b)
    b.pipeline.commits.on_commit(None, [TopicPartition("orders", 0, 3)])
    b.pipeline.rebalance.on_revoke([("orders", 0)], lost=True)
    assert b.value(DUPLICATES) == 0


def test_dispatch_stops_before_a_crash_could_resend_more_than_max_resend_events() -> None:
    """In flight plus accepted-but-not-confirmed-as-committed stays within the limit,
    counting the batch about to go; accepted events count until the broker confirms a
    commit past them (docs/core.md, "Crash exposure")."""
    b, commits = recorded(batch="{max_items: 10, linger_ms: 0, max_in_flight: 8, "
                                "max_resend_events: 25}")
    p = b.pipeline
    later = time.monotonic() + 60
    p.rebalance.on_assign([("orders", 0)])
    p.ingest([rec(i, {"type": "order", "customer": f"c{i}", "id": i}) for i in range(30)])
    first = take(b)
    assert first.events == 10
    # 10 in flight + 10 more would pass 25 less the reserve, although 7 senders are free
    assert p.core.next_batch(later, force=True) is None
    p.completed(Delivery(first, accepted=[(first.items, None)]))
    p.commits.commit(asynchronous=True)  # handed, not confirmed: still what a kill re-sends
    assert p.core.exposure == 10
    head = take(b)  # only the oldest unfinished records may go: they free the commit
    assert [item.customer_id for item in head.items] == ["c10", "c11"]
    assert p.core.next_batch(later, force=True) is None
    p.completed(Delivery(head, accepted=[(head.items, None)]))
    assert p.core.exposure == 12
    p.commits.commit(asynchronous=True)
    assert commits.calls == [("async", [("orders", 0, 6)]), ("async", [("orders", 0, 12)])]
    p.commits.on_commit(None, [TopicPartition("orders", 0, 12)])  # the broker stored it
    assert p.core.exposure == 0
    assert take(b).events == 10


def test_at_the_buffer_bound_the_loop_stops_reading_and_pauses_only_after_a_second() -> None:
    """A pause throws librdkafka's prefetch away: at `max_buffered_events` the loop first
    stops reading; only a second without a send pauses the partitions."""
    b, source = recorded(batch="{max_items: 10, linger_ms: 0, max_buffered_events: 5}")
    p = b.pipeline
    calls = source.pauses
    p.rebalance.on_assign([("orders", 0)])
    p.ingest([rec(i, {"type": "order", "customer": "c1", "id": i}) for i in range(6)])
    assert p.flow.held_back() and not p.core.blocked()  # 6 buffered, no full batch
    p.flow.update(100.0)
    p.flow.update(100.9)
    assert calls == []  # held back, not yet paused
    p.flow.update(101.0)
    assert calls == ["pause"]
    batch = take(b)
    p.completed(Delivery(batch, accepted=[(batch.items, None)]))
    assert not p.flow.held_back()
    p.flow.update(101.1)
    assert calls == ["pause", "resume"]



class WaitingGroup:
    """Stands in for confluent_kafka.Consumer: its first consume() assigns orders[0] and
    returns `records`; later ones run the rebalance callback the test queues in
    `pending`, as librdkafka runs them only inside a consume; unsubscribe() revokes the
    assignment at the next consume."""

    def __init__(self, records: list[Any], more: list[Any] | None = None) -> None:
        self.records = records
        self.more = more or []  # fetched later, returned unless paused
        self.paused = False
        self.pending: list[TopicPartition] = []
        self.leaving = False

    def subscribe(self, topics: list[str], on_assign: Any, on_revoke: Any, on_lost: Any) -> None:
        self.on_assign, self.on_revoke = on_assign, on_revoke

    def consume(self, n: int, timeout: float) -> list[Any]:
        if self.records:
            self.on_assign(self, [TopicPartition("orders", 0)])
            out, self.records = self.records, []
            return out
        if self.pending:
            self.on_assign(self, self.pending)
            self.pending = []
        if self.leaving:
            self.leaving = False
            self.on_revoke(self, [TopicPartition("orders", 0), TopicPartition("orders", 1)])
        if self.more and not self.paused:
            return [self.more.pop(0)]
        return []

    def unsubscribe(self) -> None:
        self.leaving = True

    def close(self) -> None:
        pass


def held_back_loop(group: WaitingGroup, port: int, buffered: int = 20_000
                   ) -> tuple[Pipeline, Commits]:
    """A pipeline over `group` whose one sender (of 10 items) posts to `port`."""

    class Held(Commits):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, consumer_factory=lambda _conf: group, **kwargs)

        def pause_all(self) -> int:
            group.paused = True
            return super().pause_all()

    config = (CONFIG.replace("http://127.0.0.1:1", f"http://127.0.0.1:{port}")
              .replace("batch: {max_items: 10, linger_ms: 0}",
                       "batch: {max_items: 10, linger_ms: 0, max_in_flight: 1, "
                       f"max_buffered_events: {buffered}}}")
              .replace("rate_limit: {enabled: false}",
                       "rate_limit: {enabled: false}\n  timeout_seconds: 3")
              + "dead_letter: {on_error: drop}\nshutdown: {drain_seconds: 0.2, close_seconds: 2}\n")
    settings = parse(config, {})
    pipeline = build_pipeline(settings, Mapper(settings.mappings),
                              GameballClient(settings.gameball, 2), Metrics(CollectorRegistry()),
                              Health(60), None, source_type=Held)
    assert isinstance(pipeline.source, Commits)
    return pipeline, pipeline.source


def orders_for(customers: range) -> list[Any]:
    return [rec(i, {"type": "order", "customer": f"c{i}", "id": i}) for i in customers]


def test_a_loop_held_back_by_busy_senders_still_runs_the_rebalance_callbacks() -> None:
    """librdkafka runs rebalance callbacks only inside a consume. A loop holding back (a
    whole batch waits for a sender) served none until its senders had sent everything it
    had read: at quota, 1,000 records took seconds, the group's rebalance waited for it,
    and the replica then lost its partitions (test_delivery_replicas[cooperative-sticky])."""
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers: senders busy
    group = WaitingGroup(orders_for(range(30)))
    pipeline, _source = held_back_loop(group, silent.getsockname()[1])
    stop = threading.Event()
    loop = threading.Thread(target=pipeline.run, args=(stop,))
    loop.start()
    try:
        # 10 records in the request that gets no answer, 20 more ready: held back
        wait_until(lambda: pipeline.core.in_flight == 1 and pipeline.flow.held_back(), 5,
                   "the loop held back")
        group.pending = [TopicPartition("orders", 1)]  # the group's rebalance reaches us
        wait_until(lambda: ("orders", 1) in pipeline.source.assigned, 1,
                   "the assign callback run while held back")
        assert pipeline.core.in_flight == 1 and pipeline.flow.held_back()  # still held back
    finally:
        stop.set()
        loop.join(10)
        silent.close()
    assert not loop.is_alive()


def test_at_the_buffer_bound_the_held_back_loop_reads_nothing_more() -> None:
    """Serving the consumer while held back must not read past `max_buffered_events`: at
    the bound (a sender busy, nothing sent for a second) the partitions are paused with
    nothing more read."""
    silent = socket.create_server(("127.0.0.1", 0))
    group = WaitingGroup(orders_for(range(30)), more=orders_for(range(30, 40)))
    pipeline, source = held_back_loop(group, silent.getsockname()[1], buffered=25)
    stop = threading.Event()
    loop = threading.Thread(target=pipeline.run, args=(stop,))
    loop.start()
    try:
        wait_until(lambda: source.pauses == ["pause"], 5, "the partitions paused")
        assert pipeline.core.buffered == 30  # 10 in flight, 20 waiting; none of `more`
    finally:
        stop.set()
        loop.join(10)
        silent.close()
    assert not loop.is_alive()
