"""/metrics, /healthz and /readyz over real HTTP on loopback."""

from __future__ import annotations

import urllib.error
import urllib.request

from connector.telemetry import TelemetryServer
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
