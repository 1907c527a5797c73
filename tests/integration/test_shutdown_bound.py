"""SIGTERM ends the process within drain_seconds + close_seconds + 2 s (issue 13, Why 4),
whatever Gameball and the dead-letter producer do: here Gameball holds every request
without an answer (the sandbox's stall, far longer than the client's read timeout)
and the dead-letter topic's broker is gone, so neither a request nor a dead-letter
copy can finish. Nothing unfinished may be committed."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from connector.localbroker import LocalBroker
from connector.sandbox.faults import Faults
from connector.sandbox.server import SandboxServer
from connector.shutdown import HARD_S, SLACK_S
from tests.support import (
    ConnectorProcess,
    committed,
    connector_config,
    orders,
    produce,
    unique,
    wait_until,
)

DRAIN, CLOSE = 3.0, 3.0


def metric(port: int, name: str) -> float:
    """The sum of a metric's samples on the connector's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(
        s.value for fam in text_string_to_metric_families(text) for s in fam.samples
        if s.name == name
    )


def test_sigterm_with_gameball_stalled_and_dead_letters_down_exits_within_the_bound(
    broker: LocalBroker, tmp_path: Path
) -> None:
    topic, group, dlq = unique("bound"), unique("g-bound"), unique("bound-dlq")
    broker.create_topics([topic], partitions=1)
    dead_letter_broker = LocalBroker().start()
    try:
        dead_letter_broker.create_topics([dlq], partitions=1)
        with SandboxServer() as sandbox:
            config = connector_config(
                broker.bootstrap, sandbox.url, topic, group,
                # the read timeout (30 s) is far past the bound: the bound must not wait for it
                gameball={"timeout_seconds": 30},
                batch={"max_items": 10, "linger_ms": 20, "max_in_flight": 2},
                dead_letter={"topic": dlq,
                             "properties": {"bootstrap.servers": dead_letter_broker.bootstrap}},
                shutdown={"drain_seconds": DRAIN, "close_seconds": CLOSE},
            )
            with ConnectorProcess(config, tmp_path) as proc:
                port = proc.metrics_port()
                ends = produce(broker.bootstrap, topic, orders(10, customers=10))
                wait_until(lambda: committed(broker.bootstrap, group, topic, 1)[0] == ends[0],
                           30, "the first records delivered and committed")
                dead_letter_broker.stop()
                sandbox.set_faults(Faults(stall_seconds=600))
                produce(broker.bootstrap, topic, [b"not json", *orders(40, customers=40)])
                wait_until(lambda: metric(port, "gameball_connector_records_failed_total") >= 1
                           and metric(port, "gameball_connector_inflight_requests") >= 1,
                           20, "a dead-letter copy queued and requests held by Gameball")

                started = time.monotonic()
                proc.signal(signal.SIGTERM)
                code = proc.wait(DRAIN + CLOSE + SLACK_S + 30)
                took = time.monotonic() - started
                logs = proc.logs()
            print(f"SIGTERM to exit: {took:.2f}s (bound {DRAIN + CLOSE + SLACK_S:.0f}s)")
            assert took < DRAIN + CLOSE + SLACK_S, proc.text()[-3000:]
            assert code == 0, proc.text()[-3000:]
            msgs = [e.get("msg") for e in logs]
            assert "drain time over: abandoning what is still in flight" in msgs
            assert not any(str(m).startswith("shutdown bound reached") for m in msgs)
            stopped = next(e for e in logs if e.get("msg") == "connector stopped")
            assert stopped["drained"] is False
            # Neither the bad record (its copy unacknowledged) nor anything after it.
            assert committed(broker.bootstrap, group, topic, 1)[0] == ends[0]
            # librdkafka's complaints about the dead broker came through the logging setup:
            # JSON lines like every other (logger=), nothing raw on stderr.
            assert any(e.get("logger") == "librdkafka" and "Connection refused" in e["msg"]
                       for e in logs)
            assert all(line.startswith("{") for line in proc.text().splitlines() if line)
    finally:
        dead_letter_broker.stop()


FROZEN = """
import re, sys
from connector.shutdown import ShutdownBudget
budget = ShutdownBudget(0.5, 0.5, watchdog=True)
budget.begin()
print("frozen", flush=True)
re.match(r"(a+)+b", "a" * 64)  # backtracks for hours inside C, holding the GIL
"""


def test_the_bound_holds_even_when_no_python_thread_can_run() -> None:
    """What froze a replica in the replicas test (docs/delivery.md, "Shutdown budget"): a
    C call that holds the GIL. The watchdog thread cannot run; faulthandler's can."""
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", FROZEN], capture_output=True, text=True,
                          timeout=30)
    took = time.monotonic() - started
    assert proc.stdout == "frozen\n"
    assert proc.returncode == 1
    assert 0.5 + 0.5 + HARD_S <= took < 0.5 + 0.5 + SLACK_S + 1.0  # + the interpreter's start
    assert "Timeout (0:00:02.900000)!" in proc.stderr and 'File "<string>", line 7' in proc.stderr
