"""Every config/examples/<name>/ mapping, through the real `map` command as a subprocess.

Each example holds config.yaml, records.jsonl (values, or envelope lines with @key and
@headers) and expected.jsonl (the reviewed output). A mismatch shows the diff.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "config" / "examples"
NAMES = sorted(p.name for p in EXAMPLES.iterdir() if (p / "config.yaml").is_file())
CLI = Path(sys.executable).with_name("gameball-connector")


def map_command(*args: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GAMEBALL_", "KAFKA_"))}
    return subprocess.run(
        [str(CLI), "map", *args], input=stdin, capture_output=True, env=env, timeout=60, check=False
    )


def test_there_are_at_least_three_examples() -> None:
    assert len(NAMES) >= 3, NAMES


@pytest.mark.parametrize("name", NAMES)
def test_example_output_matches_expected(name: str) -> None:
    folder = EXAMPLES / name
    proc = map_command(
        "--config", str(folder / "config.yaml"), stdin=(folder / "records.jsonl").read_bytes()
    )
    assert proc.returncode == 0, proc.stderr.decode()
    got = [orjson.loads(line) for line in proc.stdout.splitlines()]
    expected = [
        orjson.loads(line) for line in (folder / "expected.jsonl").read_bytes().splitlines()
    ]
    assert got == expected


@pytest.mark.parametrize("name", NAMES)
def test_example_explain_names_the_route_of_every_event(name: str) -> None:
    folder = EXAMPLES / name
    proc = map_command(
        "--config",
        str(folder / "config.yaml"),
        "--explain",
        stdin=(folder / "records.jsonl").read_bytes(),
    )
    assert proc.returncode == 0, proc.stderr.decode()
    lines = [orjson.loads(line) for line in proc.stdout.splitlines()]
    events = [line for line in lines if "events" in line]
    assert events and all(line["route"] and line["explain"] for line in events)
    for line in lines:
        outcomes = {t["outcome"] for t in line["explain"]}
        assert outcomes <= {"event", "when_false", "topic", "filtered", "error", "not_reached"}


def test_map_reports_config_errors_with_key_paths(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "kafka: {bootstrap_servers: 'b:1'}\n"
        "gameball: {api_key: k, secret_key: s}\n"
        "mappings:\n"
        "  - {topic: t, customer_id: 'a[', event: e}\n"
    )
    proc = map_command("--config", str(bad), stdin=b"{}\n")
    assert proc.returncode == 2
    assert "mappings[0].customer_id: invalid expression 'a['" in proc.stderr.decode()
    assert proc.stdout == b""


def test_map_needs_a_topic_when_the_config_has_several(tmp_path: Path) -> None:
    cfg = tmp_path / "two.yaml"
    cfg.write_text(
        "kafka: {bootstrap_servers: 'b:1'}\n"
        "gameball: {api_key: k, secret_key: s}\n"
        "mappings:\n"
        "  - {topic: a, customer_id: id, event: ea}\n"
        "  - {topic: b, customer_id: id, event: eb}\n"
    )
    lines = b'{"id": 1}\n{"@topic": "a", "@value": {"id": 2}}\n'
    proc = map_command("--config", str(cfg), stdin=lines)
    assert proc.returncode == 1
    out = [orjson.loads(line) for line in proc.stdout.splitlines()]
    assert out[0]["error"] == "invalid_input"
    assert out[1] == {"customerId": "2", "events": {"ea": {}}}
    proc = map_command("--config", str(cfg), "--topic", "b", stdin=lines)
    assert [orjson.loads(line) for line in proc.stdout.splitlines()] == [
        {"customerId": "1", "events": {"eb": {}}},
        {"customerId": "2", "events": {"ea": {}}},
    ]
