"""`validate --check-credentials` against the sandbox: the real CLI, real HTTP.

One harmless request, a verdict a person can act on (the reference's meaning of the
code), exit 1 when refused, and never a key in the output. Plus the `validate` warning
for `endpoint: events` without a secret.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from connector.sandbox.server import SandboxServer
from tests.support import API_KEY, BIN, SECRET_KEY, connector_config

pytestmark = pytest.mark.integration


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer() as server:
        yield server


def validate(tmp_path: Path, base_url: str, api_key: str = API_KEY,
             secret_key: str | None = SECRET_KEY, endpoint: str = "batch",
             check: bool = True) -> subprocess.CompletedProcess[str]:
    config = connector_config("127.0.0.1:9", base_url, "orders", "g",
                              gameball={"endpoint": endpoint})
    env = {**os.environ, "GAMEBALL_API_KEY": api_key}
    if secret_key is None:
        del config["gameball"]["secret_key"]
    else:
        env["GAMEBALL_SECRET_KEY"] = secret_key
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    command = [str(BIN), "validate", "--config", str(path)]
    result = subprocess.run(command + (["--check-credentials"] if check else []),
                            capture_output=True, text=True, env=env, timeout=60)
    for secret in (api_key, secret_key or "-no-secret-"):
        assert secret not in result.stdout and secret not in result.stderr
    return result


def test_accepted_keys_pass_and_nothing_is_stored(tmp_path: Path,
                                                  sandbox: SandboxServer) -> None:
    result = validate(tmp_path, sandbox.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "credentials: credentials accepted" in result.stdout
    stats = sandbox.stats()
    assert stats["requests_total"] == 1 and sandbox.items() == []
    [(route, codes)] = stats["requests"].items()
    assert route == "GET /api/v4.0/integrations/batches/{id}/status" and codes == {"404": 1}


def test_a_wrong_api_key_is_reported_with_the_codes_meaning(tmp_path: Path,
                                                            sandbox: SandboxServer) -> None:
    result = validate(tmp_path, sandbox.url, api_key="live-key-for-another-account")
    assert result.returncode == 1
    assert "credentials refused: HTTP 401 code 1000: Unauthorized" in result.stdout
    assert "Test and Live keys" in result.stdout


def test_a_wrong_secret_key_is_refused(tmp_path: Path, sandbox: SandboxServer) -> None:
    result = validate(tmp_path, sandbox.url, secret_key="not-the-secret")
    assert result.returncode == 1 and "HTTP 401 code 1000" in result.stdout


def test_events_without_a_secret_warns_and_high_security_refuses(tmp_path: Path) -> None:
    with SandboxServer(high_security=True) as sandbox:
        result = validate(tmp_path, sandbox.url, secret_key=None, endpoint="events")
        assert sandbox.items() == []
    assert result.returncode == 1
    assert "High Security Mode accounts will refuse these requests" in result.stdout
    assert "HTTP 401 code 1001: Secret Key Required" in result.stdout
    with SandboxServer() as normal:  # without the mode the apikey alone passes
        result = validate(tmp_path, normal.url, secret_key=None, endpoint="events")
        assert normal.items() == []  # the deliberately empty body stores nothing
    assert result.returncode == 0 and "credentials accepted" in result.stdout


def test_no_warning_with_a_secret_or_on_the_batch_endpoint(tmp_path: Path,
                                                           sandbox: SandboxServer) -> None:
    for endpoint in ("events", "batch"):
        result = validate(tmp_path, sandbox.url, endpoint=endpoint, check=False)
        assert result.returncode == 0 and "High Security Mode" not in result.stdout
    assert sandbox.stats()["requests_total"] == 0  # without the option nothing connects


def test_a_wrong_base_url_and_no_answer(tmp_path: Path, sandbox: SandboxServer) -> None:
    result = validate(tmp_path, sandbox.url + "/not-gameball")
    assert result.returncode == 1 and "check gameball.base_url" in result.stdout
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    result = validate(tmp_path, f"http://127.0.0.1:{closed}")
    assert result.returncode == 1 and "no answer from Gameball" in result.stdout
