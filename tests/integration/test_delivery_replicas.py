"""Replicas (issue 4): two, then three, then two replicas in one group, one account.

Each replica takes the share of the account's rate limit that its partitions give it
(owned / total), recomputed on every rebalance. The sandbox enforces the account's
limit (20 requests/s, 400 per 30 s); the replicas' requests together must fit both
windows, no request may meet a 429, nothing may be missing, and nothing may be sent
twice without being counted as a possible duplicate.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient

from connector.localbroker import LocalBroker
from connector.sandbox.faults import Faults
from connector.sandbox.server import SandboxServer
from connector.shutdown import SLACK_S
from tests.support import (
    ConnectorProcess,
    by_customer,
    committed_to_end,
    connector_config,
    delivered_orders,
    max_in_window,
    orders,
    produce,
    unique,
    wait_until,
)

PARTITIONS = 3
# The issue gives no number: > 30 s of requests at the account's limit with cooperative
# rebalances; eager ones stop every replica each time, so fewer records keep it < 60 s.
RECORDS = {"cooperative-sticky": 8_000, "range": 5_000}
MAX_ITEMS = 20
PER_SECOND, PER_30_SECONDS = 20, 400
SHUTDOWN = {"drain_seconds": 10, "close_seconds": 10}
STOP_MARGIN_S = 5  # the process's own exit after the bound, on a loaded machine
QUIET_S = 5.0  # no rebalance callback for this long: tansu's joins take ~3 s (heartbeat 1 s)


def owned(proc: ConnectorProcess) -> set[int]:
    """The partitions a replica owns, from its assign and revoke log lines."""
    mine: set[int] = set()
    for e in proc.logs():
        if e.get("msg") not in ("partitions assigned", "partitions revoked"):
            continue
        parts = {int(p.rsplit("[", 1)[1].rstrip("]")) for p in e["partitions"]}
        if e["msg"] == "partitions assigned":
            mine |= parts
        else:
            mine -= parts
    return mine


def settled(bootstrap: str, group: str, procs: list[ConnectorProcess]) -> bool:
    """Every partition owned by exactly one of `procs`, no rebalance callback for QUIET_S,
    and the coordinator calls the group stable. A replica stopped while a cooperative
    rebalance is unfinished closes into it; on tansu that close waited 16-30+ s inside
    confluent-kafka holding the GIL (docs/delivery.md): a broker quirk this test is not
    about, so it stops replicas only in a settled group."""
    owners = [owned(p) for p in procs]
    if sorted(p for o in owners for p in o) != list(range(PARTITIONS)):
        return False
    stamps = [e["ts"] for p in procs for e in p.logs()
              if e.get("msg") in ("partitions assigned", "partitions revoked")]
    last = datetime.fromisoformat(max(stamps).replace("Z", "+00:00"))
    if (datetime.now(UTC) - last).total_seconds() < QUIET_S:
        return False
    admin = AdminClient({"bootstrap.servers": bootstrap})
    state = admin.describe_consumer_groups([group])[group].result(10).state
    return bool(state == ConsumerGroupState.STABLE)


def stop_settled(bootstrap: str, group: str, proc: ConnectorProcess,
                 procs: list[ConnectorProcess]) -> None:
    """Wait until the group of `procs` is settled, then SIGTERM `proc`: exit 0 within its
    shutdown bound, drain + close + 2 s (docs/delivery.md, "Shutdown budget")."""
    wait_until(lambda: settled(bootstrap, group, procs), 60, "a settled group", every=0.5)
    shutdown = proc.config["shutdown"]
    proc.stop(shutdown["drain_seconds"] + shutdown["close_seconds"] + SLACK_S + STOP_MARGIN_S)


@pytest.mark.parametrize("strategy", ["cooperative-sticky", "range"])
def test_replicas_share_the_account_limit_through_rebalances(
    broker: LocalBroker, tmp_path: Path, strategy: str
) -> None:
    topic, group = unique("replicas"), unique("g-replicas")
    broker.create_topics([topic], partitions=PARTITIONS)
    records = orders(RECORDS[strategy], customers=700)
    ends = produce(broker.bootstrap, topic, records, key=by_customer(700))
    faults = Faults(latency_ms=20, rate_per_second=PER_SECOND, rate_per_30_seconds=PER_30_SECONDS)

    with SandboxServer(faults=faults) as sandbox:
        config = connector_config(
            broker.bootstrap, sandbox.url, topic, group,
            kafka={"properties": {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000,
                                  "partition.assignment.strategy": strategy}},
            gameball={"rate_limit": {"enabled": True, "per_second": PER_SECOND,
                                     "per_30_seconds": PER_30_SECONDS}},
            batch={"max_items": MAX_ITEMS, "linger_ms": 50, "max_in_flight": 4},
            shutdown=SHUTDOWN,
        )

        def accepted() -> int:
            return int(sandbox.stats(arrivals=False)["items_accepted"])

        procs = [ConnectorProcess(config, tmp_path, name=f"replica{i}") for i in range(3)]
        try:
            procs[0].start()
            procs[1].start()
            wait_until(lambda: accepted() >= 1_000, 40, "two replicas delivering")
            procs[2].start()  # rebalance: 2 -> 3 replicas
            wait_until(lambda: owned(procs[2]), 30, "the third replica owning a partition")
            mark = accepted()
            wait_until(lambda: accepted() >= mark + 500, 40, "three replicas delivering")
            stop_settled(broker.bootstrap, group, procs[0], procs)  # rebalance: 3 -> 2
            wait_until(lambda: committed_to_end(broker.bootstrap, group, topic, ends),
                       90, "committed offsets == end offsets", every=0.5)
            stop_settled(broker.bootstrap, group, procs[1], procs[1:])
            stop_settled(broker.bootstrap, group, procs[2], procs[2:])
        finally:
            for proc in procs:
                proc.kill()
        stats = sandbox.stats()
        items = sandbox.items()

    got = delivered_orders(items)
    assert set(got) == {r["id"] for r in records}, "events missing"
    duplicates = sum(n - 1 for n in got.values())
    # Duplicates are allowed (at least once: tansu answers commits made during a rebalance
    # with ILLEGAL_GENERATION, eager ones always, cooperative ones sometimes), silent ones
    # are not: every event sent twice must have been counted and logged with its offsets.
    stopped = [e for p in procs for e in p.logs() if e.get("msg") == "connector stopped"]
    assert len(stopped) == len(procs)
    possible = sum(int(e["possible_duplicates"]) for e in stopped)
    warned = [e for p in procs for e in p.logs()
              if e.get("msg", "").startswith("partitions left before")]
    assert duplicates <= possible, (duplicates, possible, warned)
    assert possible == sum(int(e["events"]) for e in warned)

    # Every replica saw the rebalances and took its share of the quota each time.
    shares = [[e["share"] for e in p.logs() if e.get("msg") == "rate limit share"] for p in procs]
    assert all(shares), shares
    assert any(s < 0.5 for s in shares[2])  # the third replica never had it all

    sends = [a for a in stats["arrivals"] if a["path"].endswith("/batch/events")]
    times = [a["t"] for a in sends]
    limited = [a for a in sends if a["status"] == 429]
    per_second, per_30 = max_in_window(times, 1.0), max_in_window(times, 30.0)
    span = max(times) - min(times)
    print(f"replicas ({strategy}): {len(sends)} requests in {span:.1f}s, max {per_second}/1s, "
          f"{per_30}/30s, 429s={len(limited)}, duplicates={duplicates}/{possible} counted")
    assert not limited
    assert per_second <= PER_SECOND and per_30 <= PER_30_SECONDS
    if strategy == "cooperative-sticky":
        assert span > 30.0  # the 30 s window was in play...
        assert per_30 >= 0.6 * PER_30_SECONDS  # ...and the replicas used most of the quota


def test_partitions_paused_before_an_eager_rebalance_are_read_again(
    broker: LocalBroker, tmp_path: Path
) -> None:
    """librdkafka keeps a pause across a rebalance: a partition paused for backpressure,
    revoked and assigned back must still be read once Gameball keeps up again."""
    topic, group = unique("paused"), unique("g-paused")
    broker.create_topics([topic], partitions=PARTITIONS)
    records = orders(3_000, customers=300)
    ends = produce(broker.bootstrap, topic, records, key=by_customer(300))
    with SandboxServer(faults=Faults(stall_seconds=12)) as sandbox:  # A pauses meanwhile
        config = connector_config(
            broker.bootstrap, sandbox.url, topic, group,
            kafka={"properties": {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000,
                                  "partition.assignment.strategy": "range"}},
            batch={"max_items": 100, "linger_ms": 50, "max_in_flight": 2},
            # short drains: the eager revoke must not wait long for stalled requests
            shutdown={"drain_seconds": 2, "close_seconds": 10},
        )
        a = ConnectorProcess(config, tmp_path, name="a").start()
        b = ConnectorProcess(config, tmp_path, name="b")
        try:
            wait_until(lambda: any(e.get("msg", "").startswith("paused partitions")
                                   for e in a.logs()), 20, "replica a paused")
            b.start()  # eager rebalance: a gives up everything, then gets some of it back
            wait_until(lambda: sum(e.get("msg") == "partitions assigned" for e in a.logs()) >= 2,
                       30, "replica a assigned again")
            wait_until(lambda: committed_to_end(broker.bootstrap, group, topic, ends),
                       40, "committed offsets == end offsets after the stall", every=0.5)
            stop_settled(broker.bootstrap, group, a, [a, b])
            stop_settled(broker.bootstrap, group, b, [b])
        finally:
            a.kill()
            b.kill()
        got = delivered_orders(sandbox.items())
    assert set(got) == {r["id"] for r in records}
