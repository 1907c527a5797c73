"""Stall (issue 4): Gameball stops answering for 60 s with a 100,000-record backlog.

The poll loop must keep running (here `max.poll.interval.ms` is 10 s, so a loop that
blocked on the stalled requests would be thrown out of the group), the connector must
pause instead of reading the backlog into memory (peak RSS under the bound documented
in docs/delivery.md), and everything must be delivered once the stall ends.
"""

from __future__ import annotations

import time
from pathlib import Path

from connector.localbroker import LocalBroker
from connector.sandbox.faults import Faults
from connector.sandbox.server import SandboxServer
from tests.support import (
    ConnectorProcess,
    by_customer,
    committed_to_end,
    connector_config,
    delivered_orders,
    orders,
    produce,
    unique,
    wait_until,
)

PARTITIONS = 3
RECORDS = 100_000  # the number
STALL_SECONDS = 60.0  # the number
RSS_BOUND_MIB = 200  # docs/delivery.md, "Backpressure and memory"


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the process's peak resident set size so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def test_a_60s_stall_keeps_the_group_and_memory_bounded(
    broker: LocalBroker, tmp_path: Path
) -> None:
    topic, group = unique("stall"), unique("g-stall")
    broker.create_topics([topic], partitions=PARTITIONS)
    ends = produce(broker.bootstrap, topic, orders(RECORDS, customers=5000), key=by_customer(5000))
    assert sum(ends.values()) == RECORDS

    with SandboxServer() as sandbox:
        config = connector_config(
            broker.bootstrap, sandbox.url, topic, group,
            kafka={"properties": {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000,
                                  "max.poll.interval.ms": 10_000}},
            gameball={"timeout_seconds": 20},
            batch={"max_items": 1000, "linger_ms": 100, "max_in_flight": 4,
                   "max_buffered_events": 20_000},
        )
        sandbox.set_faults(Faults(stall_seconds=STALL_SECONDS))
        stall_ends = time.monotonic() + STALL_SECONDS
        with ConnectorProcess(config, tmp_path) as proc:
            assert proc.proc is not None
            wait_until(lambda: any(e.get("msg") == "partitions assigned" for e in proc.logs()),
                       20, "the first assignment")
            # During the stall: paused, nothing accepted, still in the group.
            wait_until(lambda: any(e.get("msg", "").startswith("paused partitions")
                                   for e in proc.logs()), 30, "partitions paused")
            time.sleep(max(0.0, stall_ends - time.monotonic() - 2))  # the stall itself
            assert sandbox.stats()["items_accepted"] == 0
            during = peak_rss_mib(proc.proc.pid)
            # After it: everything arrives and is committed.
            wait_until(lambda: sandbox.stats(arrivals=False)["items_accepted"] >= RECORDS
                       and len(delivered_orders(sandbox.items())) == RECORDS,
                       60, "every event after the stall", every=1.0)
            wait_until(lambda: committed_to_end(broker.bootstrap, group, topic, ends),
                       30, "committed offsets == end offsets")
            peak = peak_rss_mib(proc.proc.pid)  # before stopping: read from /proc
            proc.stop()

    logs = proc.logs()
    assignments = [e for e in logs if e.get("msg") == "partitions assigned"]
    revokes = [e for e in logs if e.get("msg") == "partitions revoked"]
    assert len(assignments) == 1, assignments  # never left the group...
    assert len(revokes) <= 1 and all(r["lost"] is False for r in revokes)  # ...but at the end
    if revokes:
        assert revokes[0]["ts"] >= next(
            e["ts"] for e in logs if e.get("msg", "").startswith("stopping")
        )
    assert peak < RSS_BOUND_MIB, f"peak RSS {peak:.0f} MiB"
    print(f"stall: peak RSS during the stall {during:.0f} MiB, overall {peak:.0f} MiB")
