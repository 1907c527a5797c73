"""/metrics, /healthz and /readyz over real HTTP on loopback."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request

from connector.telemetry import TelemetryServer
from tests.support import wait_until
from tests.unit.test_telemetry import Built


def test_readiness_follows_auth_and_metrics_hide_secrets() -> None:
    b = Built()
    server = TelemetryServer("127.0.0.1", 0, b.health, b.metrics).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        try:
            urllib.request.urlopen(base + "/readyz")
            raise AssertionError("not ready before the pipeline started")
        except urllib.error.HTTPError as err:
            assert err.code == 503
        b.health.started = True
        with urllib.request.urlopen(base + "/readyz") as resp:
            assert resp.status == 200
        b.health.auth_failing = True
        try:
            urllib.request.urlopen(base + "/readyz")
            raise AssertionError("readyz must fail while Gameball refuses the credentials")
        except urllib.error.HTTPError as err:
            assert err.code == 503
            assert b"credentials" in err.read()
        body = urllib.request.urlopen(base + "/metrics").read().decode()
        assert "gameball_connector_ready 0.0" in body
        assert 'gameball_connector_build_info{version="' in body
        assert "key-123456" not in body and "secret-123456" not in body
        with urllib.request.urlopen(base + "/healthz") as resp:
            assert resp.status == 200
    finally:
        server.stop()


def raw(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send `data` on a fresh connection; everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_keep_alive_head_and_what_the_server_refuses() -> None:
    b = Built()
    server = TelemetryServer("127.0.0.1", 0, b.health, b.metrics, timeout=1.0).start()
    try:
        two = raw(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                               b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert two.startswith(b"HTTP/1.1 200 OK\r\n")  # one connection, two answers
        assert b"\r\n\r\nok\nHTTP/1.1 503 Service Unavailable\r\n" in two
        assert two.endswith(b"\r\n\r\nstarting\n")
        head = raw(server.port, b"HEAD /metrics HTTP/1.0\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
        assert int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]) > 1000
        assert raw(server.port, b"POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}") \
            .startswith(b"HTTP/1.1 405 ")
        assert raw(server.port, b"hello\r\n\r\n").startswith(b"HTTP/1.1 400 ")
        assert raw(server.port, b"GET /nope HTTP/1.1\r\n\r\n", 3).startswith(b"HTTP/1.1 404 ")
        # A client that never finishes its request is closed after the timeout, unanswered.
        started = time.monotonic()
        assert raw(server.port, b"GET /metrics HTTP/1.1\r\n") == b""
        assert 0.9 < time.monotonic() - started < 3.0
        wait_until(lambda: server.connections == 0, 5, "every connection closed")
    finally:
        server.stop()
