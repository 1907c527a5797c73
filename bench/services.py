"""What the benchmark runs beside the measured programs: the sandbox, offset checks, configs.

Used by bench.run. The sandbox is a subprocess (`python -m connector.sandbox`) so its
CPU never counts against the connector; a fresh one per run keeps its statistics
separate. Nothing here is measured.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from bench.mapping_bench import BENCH_ROUTE
from connector.localbroker import free_port


class Sandbox:
    """`python -m connector.sandbox` on a free loopback port, with fault flags."""

    def __init__(self, log_path: Path, flags: list[str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.flags = flags or []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> Sandbox:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "connector.sandbox", "--port", str(self.port),
                 *self.flags],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sandbox exited with {self.proc.returncode}; see "
                                   f"{self.log_path}")
            try:
                self.stats(arrivals=False)
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sandbox did not answer within {timeout}s; see {self.log_path}")

    def stats(self, arrivals: bool = False) -> dict[str, Any]:
        """GET /_sandbox/stats (arrivals: every API request with its wall-clock time)."""
        url = f"{self.url}/_sandbox/stats?arrivals={'1' if arrivals else '0'}"
        with urllib.request.urlopen(url, timeout=30) as resp:
            data: dict[str, Any] = json.loads(resp.read())
        return data

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> Sandbox:
        # `with Sandbox(...).start() as s` must not start a second process on the port
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class CommitWatcher:
    """Reads a group's committed offsets without joining the group."""

    def __init__(self, bootstrap: str, group: str, topic: str, partitions: int) -> None:
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
        self._tps = [TopicPartition(topic, p) for p in range(partitions)]

    def committed(self) -> dict[int, int]:
        """Next offset to read per partition; negative when nothing is committed yet."""
        return {tp.partition: tp.offset for tp in self._consumer.committed(self._tps, 10)}

    def close(self) -> None:
        self._consumer.close()


def connector_config(
    bootstrap: str, topic: str, group: str, base_url: str, rate_limit: dict[str, Any]
) -> dict[str, Any]:
    """The connector config of the benchmark runs: production defaults, except
    group-join timing for tansu, a 200 ms commit interval and the given rate limit."""
    return {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "group_id": group,
            "topics": [topic],
            "properties": {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000},
            "commit_interval_ms": 200,
        },
        "gameball": {
            "base_url": base_url,
            "api_key": "${GAMEBALL_API_KEY}",
            "secret_key": "${GAMEBALL_SECRET_KEY}",
            "rate_limit": rate_limit,
        },
        "batch": {"max_items": 1000},
        "mappings": [{**BENCH_ROUTE, "topic": topic}],
        "metrics": {"host": "127.0.0.1", "port": 0},
        "logging": {"level": "INFO", "format": "json"},
    }


def log_time(log_path: Path, message: str) -> float | None:
    """Wall-clock time of the first JSON log line whose msg is `message`."""
    try:
        lines = log_path.read_bytes().splitlines()
    except OSError:
        return None
    for line in lines:
        if not line.startswith(b"{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("msg") == message and "ts" in entry:
            return datetime.fromisoformat(str(entry["ts"]).replace("Z", "+00:00")).timestamp()
    return None


def log_lines(log_path: Path, level: str) -> list[dict[str, Any]]:
    """JSON log entries at `level` (WARNING, ERROR) for the report's notes."""
    out: list[dict[str, Any]] = []
    try:
        lines = log_path.read_bytes().splitlines()
    except OSError:
        return out
    for line in lines:
        if line.startswith(b"{"):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("level") == level:
                out.append(entry)
    return out
