"""The metrics server survives its network (issue 13, Why 5): 1,100 idle connections to
the metrics port while /healthz keeps answering and delivery goes on; idle connections
are closed after `metrics.connection_timeout_seconds`; 200 parallel scrapes are all
answered; closing a thousand connections prints nothing but JSON log lines."""

from __future__ import annotations

import contextlib
import resource
import socket
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson

from connector.localbroker import LocalBroker
from connector.sandbox.server import SandboxServer
from tests.support import (
    ConnectorProcess,
    by_customer,
    committed_to_end,
    connector_config,
    orders,
    produce,
    unique,
    wait_until,
)

IDLE = 1_100
TIMEOUT_S = 4.0


def get(port: int, path: str, timeout: float = 2.0) -> tuple[int, float]:
    """(status, seconds) of one request on a fresh connection."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
            resp.read()
            return resp.status, time.monotonic() - started
    except urllib.error.HTTPError as err:
        return err.code, time.monotonic() - started


def closed_by_peer(sock: socket.socket) -> bool:
    """The server closed this connection (end of stream, or reset)."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False  # still open, nothing to read
    except OSError:
        return True


def test_idle_connections_starve_neither_probes_nor_delivery(
    broker: LocalBroker, tmp_path: Path
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = IDLE + 500  # the test's own sockets, the broker client, pytest
    assert hard >= need, f"the hard open-file limit {hard} is below {need}"
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))  # inherited by the CLI too
    topic, group = unique("idle"), unique("g-idle")
    broker.create_topics([topic], partitions=3)
    records = orders(5_000, customers=500)
    with SandboxServer() as sandbox:
        config = connector_config(
            broker.bootstrap, sandbox.url, topic, group,
            batch={"max_items": 100, "linger_ms": 50, "max_in_flight": 2},
            metrics={"connection_timeout_seconds": TIMEOUT_S},
        )
        with ConnectorProcess(config, tmp_path) as proc:
            port = proc.metrics_port()
            idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(IDLE)]
            try:
                ends = produce(broker.bootstrap, topic, records, key=by_customer(500))
                probes: list[float] = []

                def delivered_while_healthy() -> bool:
                    status, took = get(port, "/healthz")
                    assert status == 200, status
                    probes.append(took)
                    return committed_to_end(broker.bootstrap, group, topic, ends)

                wait_until(delivered_while_healthy, 60, "delivery with /healthz answering")
                print(f"{len(probes)} probes during delivery, slowest {max(probes):.3f}s")
                assert max(probes) < 1.0
                # Idle connections do not stay: each is closed within the timeout.
                wait_until(lambda: all(closed_by_peer(s) for s in idle), TIMEOUT_S + 5,
                           "every idle connection closed by the server")
            finally:
                for sock in idle:
                    with contextlib.suppress(OSError):
                        sock.close()

            with ThreadPoolExecutor(50) as pool:
                scrapes = list(pool.map(lambda _: get(port, "/metrics", 10)[0], range(200)))
            assert scrapes == [200] * 200
            proc.stop()
        out = proc.text()
    lines = [line for line in out.splitlines() if line.strip()]
    not_json = [line for line in lines if not line.startswith("{")]
    assert not not_json, not_json[:5]
    assert all(isinstance(orjson.loads(line), dict) for line in lines)
    assert "Traceback" not in out
