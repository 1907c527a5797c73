"""Helpers for integration tests: real broker, real CLI subprocess, deadlines.

Nothing here fakes behaviour: it starts processes, produces real records and reads
real committed offsets.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from prometheus_client import CollectorRegistry

from connector.badrecords import BadRecords
from connector.config import parse
from connector.deadletter import DeadLetters
from connector.job_letters import JobLetters, dead_letter_job_failure
from connector.refetch import RecordFetcher, fetcher_config
from connector.sandbox.server import DEFAULT_API_KEY, DEFAULT_SECRET_KEY
from connector.telemetry import Health, Metrics

API_KEY = DEFAULT_API_KEY  # re-exported for the tests
SECRET_KEY = DEFAULT_SECRET_KEY
BIN = Path(sys.executable).parent / "gameball-connector"


def unique(prefix: str) -> str:
    """A fresh topic or group name per test."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def produce(
    bootstrap: str,
    topic: str,
    values: Iterable[bytes | dict[str, Any] | None],
    key: Callable[[int], bytes | None] = lambda i: None,
    headers: Callable[[int], list[tuple[str, bytes]] | None] = lambda i: None,
    partition: Callable[[int], int] | None = None,
    config: dict[str, Any] | None = None,
) -> dict[int, int]:
    """Produce records; returns end offsets per partition from the delivery reports.
    `config`: extra producer properties (`message.max.bytes` for records over 1 MB).

    tansu's watermarks are wrong after multi-record batches, so end offsets come from
    what the broker acknowledged (test-infrastructure.md).
    """
    ends: dict[int, int] = {}
    errors: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            ends[msg.partition()] = max(ends.get(msg.partition(), 0), msg.offset() + 1)

    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all", **(config or {})}
    )
    for i, value in enumerate(values):
        raw = orjson.dumps(value) if isinstance(value, dict) else value
        kwargs: dict[str, Any] = {"value": raw, "key": key(i), "on_delivery": delivered}
        hdrs = headers(i)
        if hdrs:
            kwargs["headers"] = hdrs
        if partition is not None:
            kwargs["partition"] = partition(i)
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0, "producer did not deliver everything"
    assert not errors, errors[:3]
    return ends


def orders(n: int, customers: int) -> list[dict[str, Any]]:
    """`n` order_placed records (ids `o-0`...) spread over `customers` customers (`c0`...)."""
    return [
        {"type": "order_placed", "id": f"o-{i}", "customer": {"id": f"c{i % customers}"},
         "total": {"amount": i % 1000}}
        for i in range(n)
    ]


def by_customer(customers: int) -> Callable[[int], bytes]:
    """The key for `orders`' record i: a customer's records stay in one partition, in order."""
    return lambda i: f"c{i % customers}".encode()


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets (next to read) per partition; -1001 when none."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        consumer.close()


def committed_to_end(bootstrap: str, group: str, topic: str, ends: dict[int, int]) -> bool:
    """The group's commits reached `ends` (from `produce`) on every partition that got
    records (one without records has nothing to commit: -1001)."""
    assert ends, "no end offsets: nothing was produced, so nothing can be committed"
    got = committed(bootstrap, group, topic, max(ends, default=-1) + 1)
    return all(got.get(p) == end for p, end in ends.items())


def stop_when_committed(
    proc: ConnectorProcess,
    bootstrap: str,
    group: str,
    topic: str,
    ends: dict[int, int],
    timeout: float = 60.0,
    every: float = 0.1,
) -> None:
    """Wait until the group's commits reach `ends`, then stop `proc` cleanly (exit 0)."""
    wait_until(
        lambda: committed_to_end(bootstrap, group, topic, ends), timeout,
        "committed offsets == end offsets", every=every,
    )
    proc.stop()


def delivered_orders(items: Iterable[dict[str, Any]]) -> Counter[str]:
    """The `order_id` of every event in the sandbox `items`, with multiplicity (the
    default mapping of `connector_config` puts the order's id there)."""
    return Counter(meta["order_id"] for item in items for meta in item["events"].values())


def max_in_window(times: list[float], seconds: float) -> int:
    """The most timestamps inside any span of `seconds` (rate-limit checks)."""
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - seconds:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def read_all(bootstrap: str, topic: str, quiet: float) -> list[Any]:
    """Every record of partition 0 of `topic`, read until nothing new came for `quiet`
    seconds (dead-letter checks). Assigned, not subscribed: no group join to wait for."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": unique("reader"), "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    out: list[Any] = []
    last = time.monotonic()
    try:
        while time.monotonic() - last < quiet:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                out.append(msg)
                last = time.monotonic()
    finally:
        consumer.close()
    return out


def connector_config(
    bootstrap: str,
    base_url: str,
    topic: str,
    group: str,
    mappings: list[dict[str, Any]] | None = None,
    **sections: Any,
) -> dict[str, Any]:
    """A complete connector config for tests; `sections` override/extend top-level keys."""
    config: dict[str, Any] = {
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
            "rate_limit": {"enabled": False},
            "job_tracking": {"enabled": False},
            "retry": {"initial_backoff_ms": 20, "max_backoff_ms": 500},
        },
        "batch": {"max_items": 1000, "linger_ms": 100, "max_in_flight": 4},
        "mappings": mappings
        or [
            {
                "topic": topic,
                "when": "type == 'order_placed'",
                "customer_id": "customer.id",
                "event": "place_order",
                "metadata": {"order_id": "id", "amount": "total.amount"},
            }
        ],
        "metrics": {"host": "127.0.0.1", "port": 0},
        "logging": {"level": "INFO", "format": "json"},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            merged = dict(config[key])
            for k, v in value.items():
                if isinstance(v, dict) and isinstance(merged.get(k), dict):
                    merged[k] = {**merged[k], **v}
                else:
                    merged[k] = v
            config[key] = merged
        else:
            config[key] = value
    return config


class ConnectorProcess:
    """`gameball-connector run` as a subprocess, its output kept in a log file."""

    def __init__(
        self,
        config: dict[str, Any],
        workdir: Path,
        name: str = "connector",
        env: dict[str, str] | None = None,
    ) -> None:
        self.config_path = workdir / f"{name}.yaml"
        self.config = config  # as written, for tests that derive waits from it
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / f"{name}.log"
        self.env = {
            **os.environ,
            "GAMEBALL_API_KEY": API_KEY,
            "GAMEBALL_SECRET_KEY": SECRET_KEY,
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ConnectorProcess:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(BIN), "run", "--config", str(self.config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        return self

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout)
        self._log.close()
        return code

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, then expect exit code 0 within `timeout` seconds."""
        self.signal(signal.SIGTERM)
        code = self.wait(timeout)
        assert code == 0, f"exit {code}: {self.text()[-3000:]}"

    def __enter__(self) -> ConnectorProcess:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if hasattr(self, "_log"):
            self._log.close()

    def logs(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_bytes().splitlines():
            if line.startswith(b"{"):
                with contextlib.suppress(orjson.JSONDecodeError):
                    out.append(orjson.loads(line))
        return out

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metrics_port(self, timeout: float = 20) -> int:
        """The metrics port the process logged (config uses port 0)."""

        def find() -> int | None:
            for entry in self.logs():
                if entry.get("msg") == "metrics and health served":
                    return int(str(entry["address"]).rsplit(":", 1)[1].split("/")[0])
            return None

        return int(wait_until(find, timeout, "the metrics address in the log"))


class DeadLetterParts(NamedTuple):
    """The loop's dead-letter side for `tests/integration/test_*_letters.py`."""

    registry: CollectorRegistry
    metrics: Metrics
    dead_letters: DeadLetters
    bad: BadRecords
    letters: JobLetters


def dead_letter_parts(bootstrap: str, topic: str, dlq: str) -> DeadLetterParts:
    """A real dead-letter producer to `dlq`, `BadRecords` and `JobLetters` with a real
    record fetcher (1 s a pass, 2 passes), built from a config reading `topic`."""
    config = connector_config(bootstrap, "http://127.0.0.1:9", topic, unique("letters"),
                              dead_letter={"topic": dlq})
    settings = parse(yaml.safe_dump(config),
                     env={"GAMEBALL_API_KEY": API_KEY, "GAMEBALL_SECRET_KEY": SECRET_KEY})
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    dead_letters = DeadLetters(settings)
    bad = BadRecords(settings, metrics, Health(60.0), dead_letters)
    letters = JobLetters(RecordFetcher(fetcher_config(settings), timeout=1.0, tries=2),
                         dead_letter_job_failure(bad, metrics))
    return DeadLetterParts(registry, metrics, dead_letters, bad, letters)


def three_records(broker: Any) -> tuple[str, str]:
    """A fresh one-partition topic holding `{"n": 0..2}` (keys `k0..k2`, a `src: shop`
    header) and a fresh dead-letter topic; returns (topic, dead-letter topic)."""
    topic, dlq = unique("orders"), unique("dlq")
    broker.create_topics([topic, dlq], partitions=1)
    produce(broker.bootstrap, topic, [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}'],
            key=lambda i: f"k{i}".encode(), headers=lambda i: [("src", b"shop")],
            partition=lambda i: 0)
    return topic, dlq
