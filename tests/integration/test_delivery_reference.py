"""Delivery against a sandbox that behaves as Gameball's reference says (issue 12).

Real broker, the connector's CLI as a subprocess, real HTTP to the sandbox:
(a) High Security Mode: every request needs both keys, on both endpoints;
(c) a 60,000-record backlog drained in 200-item batches while the sandbox enforces the
    "Others" bucket (30/s, 360 per 30 s) on status reads: the tracker's read budget
    keeps every status read under it, and jobs are still tracked.
(b), rejected customers answering 412/2000, is test_delivery_rejected.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.localbroker import LocalBroker
from connector.sandbox.faults import Faults
from connector.sandbox.server import BATCH_PATH, STATUS_NEWEST, SandboxServer
from tests.integration.test_delivery_faults import scrape
from tests.support import (
    ConnectorProcess,
    by_customer,
    connector_config,
    delivered_orders,
    max_in_window,
    orders,
    produce,
    stop_when_committed,
    unique,
    wait_until,
)

STATUS_ROUTE = f"GET {STATUS_NEWEST}"


@pytest.mark.parametrize(("endpoint", "records"), [("events", 300), ("batch", 3_000)])
def test_high_security_mode_every_event_delivered(
    broker: LocalBroker, tmp_path: Path, endpoint: str, records: int
) -> None:
    topic, group = unique(f"hsm-{endpoint}"), unique("g-hsm")
    broker.create_topics([topic], partitions=2)
    data = orders(records, customers=100)
    ends = produce(broker.bootstrap, topic, data, key=by_customer(100))
    with SandboxServer(high_security=True) as sandbox:
        config = connector_config(
            broker.bootstrap, sandbox.url, topic, group,
            gameball={"endpoint": endpoint, "job_tracking": {"enabled": endpoint == "batch"}},
            batch={"max_items": 1 if endpoint == "events" else 200, "linger_ms": 50,
                   "max_in_flight": 4},
        )
        with ConnectorProcess(config, tmp_path) as proc:
            stop_when_committed(proc, broker.bootstrap, group, topic, ends, timeout=90, every=0.5)
        stats = sandbox.stats(arrivals=False)
        items = sandbox.items()
    assert set(delivered_orders(items)) == {r["id"] for r in data}
    # Not one request was refused for a missing secret: both keys went on every request.
    assert all(set(codes) <= {"200", "404"} for codes in stats["requests"].values()), stats


def test_a_backlog_drains_without_a_429_on_status_reads(
    broker: LocalBroker, tmp_path: Path
) -> None:
    records, partitions = 60_000, 3
    topic, group = unique("backlog"), unique("g-backlog")
    broker.create_topics([topic], partitions=partitions)
    data = orders(records, customers=6_000)
    ends = produce(broker.bootstrap, topic, data, key=by_customer(6_000))
    faults = Faults(status_rate_per_second=30, status_rate_per_30_seconds=360)
    with SandboxServer(faults=faults) as sandbox:
        config = connector_config(
            broker.bootstrap, sandbox.url, topic, group,
            # job tracking at its defaults: 10 reads/s, 120 per 30 s
            gameball={"job_tracking": {"enabled": True}},
            batch={"max_items": 200, "linger_ms": 50, "max_in_flight": 4},
        )
        with ConnectorProcess(config, tmp_path) as proc:
            port = proc.metrics_port()
            wait_until(lambda: sandbox.state.item_count() >= records, 120, "the backlog drained",
                       every=0.5)
            # Jobs finish at once here; the tracker reads a sample of them within budget.
            metrics = wait_until(
                lambda: (m := scrape(port)).get(
                    "gameball_connector_jobs_total{status=completed}", 0) >= 5 and m,
                30, "tracked jobs completing")
            stop_when_committed(proc, broker.bootstrap, group, topic, ends, timeout=60, every=0.5)
        stats = sandbox.stats()
        items = sandbox.items()

    assert set(delivered_orders(items)) == {r["id"] for r in data}
    assert stats["status_rate_limited"] == 0  # zero 429s on status reads
    reads = stats["requests"][STATUS_ROUTE]
    assert set(reads) == {"200"} and reads["200"] > 0, reads
    read_times = [a["t"] for a in stats["arrivals"] if a["path"] == STATUS_NEWEST]
    assert max_in_window(read_times, 1.0) <= 10  # the budget, well inside 30/s
    assert max_in_window(read_times, 30.0) <= 120
    jobs = int(stats["requests"][f"POST {BATCH_PATH}"]["200"])
    assert jobs >= records // 200
    # More jobs than the budget can read: a sample was read, the rest counted as skipped.
    assert metrics["gameball_connector_jobs_total{status=completed}"] >= 5
    assert metrics["gameball_connector_jobs_total{status=skipped}"] > 0
    assert metrics["gameball_connector_jobs_total{status=dropped}"] == 0  # sampled, not queued
