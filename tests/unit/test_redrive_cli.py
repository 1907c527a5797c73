"""`gameball-connector redrive` refuses bad options and configs before it connects
anywhere: exit 2 with a one-line reason (the broker address here listens nowhere)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

CONFIG = {
    "kafka": {"bootstrap_servers": "127.0.0.1:9", "topics": ["shop.orders"]},
    "gameball": {"base_url": "http://127.0.0.1:9", "api_key": "k", "secret_key": "s"},
    "mappings": [{"topic": "shop.orders", "customer_id": "customer.id", "event": "order"}],
}


def _redrive(tmp_path: Path, config: dict[str, object], *args: str) -> tuple[int, str]:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    out = subprocess.run(
        [sys.executable, "-m", "connector.cli", "redrive", "--config", str(path), *args],
        capture_output=True, text=True, timeout=60)
    return out.returncode, out.stderr


@pytest.mark.parametrize(("config", "args", "says"), [
    (CONFIG, (), "no dead-letter topic"),
    ({**CONFIG, "dead_letter": {"topic": "dlq"}}, ("--since", "yesterday"), "UTC time"),
    ({**CONFIG, "dead_letter": {"topic": "dlq"}}, ("--max-attempts", "0"), "at least 1"),
    ({**CONFIG, "dead_letter": {"topic": "dlq"}}, ("--follow", "--to-offset", "5"),
     "--to-offset"),
    ({**CONFIG, "mappings": []}, ("--topic", "dlq"), "mappings"),
])
def test_bad_options_exit_2_before_connecting(
    tmp_path: Path, config: dict[str, object], args: tuple[str, ...], says: str
) -> None:
    code, stderr = _redrive(tmp_path, config, *args)
    assert code == 2, stderr
    assert says in stderr
    assert "Traceback" not in stderr
