"""The dashboard and alert rules against a real Prometheus scraping the real connector.

Real broker, the sandbox with faults (errors, lost answers, failed job items), the CLI
as a subprocess, and Debian's `prometheus` on loopback scraping it every second. Every
dashboard query (variables substituted as Grafana would) must return data; the
variables' label queries must list the scraped labels; the alert rules must load and
evaluate without errors; /healthz and /readyz answer 200.
"""

from __future__ import annotations

import signal
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from connector.localbroker import LocalBroker, free_port
from connector.sandbox.faults import Faults
from connector.sandbox.server import SandboxServer
from tests.support import API_KEY, SECRET_KEY, ConnectorProcess, connector_config, produce, unique
from tests.support import wait_until as _wait_until
from tests.unit.test_dashboard import load_dashboard, panels

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "helm" / "gameball-connector" / "rules" / "alerts.yaml"
NAMESPACE, POD = "it-shop", "gc-it-0"
RATE_INTERVAL = "1m"  # what Grafana picks for a few hours' range at a 15 s scrape


def wait_until(check: Any, timeout: float, what: str) -> Any:
    return _wait_until(check, timeout, what, every=0.25)


def http_get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return int(answer.status), bytes(answer.read())
    except urllib.error.HTTPError as err:
        return int(err.code), bytes(err.read())
    except OSError:
        return 0, b""


class Prometheus:
    """Debian's prometheus on a loopback port, storing in a temp dir."""

    def __init__(self, workdir: Path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {
                    "job_name": "gameball-connector",
                    # What a Kubernetes PodMonitor attaches to every series.
                    "static_configs": [
                        {"targets": [target], "labels": {"namespace": NAMESPACE, "pod": POD}}
                    ],
                }
            ],
        }
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.data = workdir / "tsdb"
        self.log_path = workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Prometheus:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.data}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until(lambda: http_get(self.url + "/-/ready")[0] == 200, 30, "prometheus ready")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def api(self, path: str, **params: str) -> Any:
        status, body = http_get(f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}")
        assert status == 200, f"{path} {params}: HTTP {status} {body[:300]!r}"
        answer = orjson.loads(body)
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data["resultType"])
        return list(data["result"])

    def value(self, expr: str) -> float:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else float("nan")


def substitute(expr: str, topic: str) -> str:
    """Grafana's expansion of the dashboard variables for this deployment."""
    return (
        expr.replace("$__rate_interval", RATE_INTERVAL)
        .replace("$namespace", NAMESPACE)
        .replace("$pod", POD)
        .replace("$topic", topic)
    )


def records(wave: int, n: int) -> list[dict[str, Any] | bytes | None]:
    """Orders of ~20 customers (one whose job items fail), plus a record no route takes,
    a tombstone and one that is not JSON, so that every panel has something to show."""
    out: list[dict[str, Any] | bytes | None] = [
        {
            "type": "order_placed",
            "id": f"o-{wave}-{i}",
            "customer": {"id": "c-fail" if i % 25 == 0 else f"c-{i % 20}"},
            "total": {"amount": 10 + i},
        }
        for i in range(n)
    ]
    out += [{"type": "cart_viewed", "id": f"v-{wave}"}, None, b"{not json"]
    return out


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    faults = Faults(error_rate=0.2, drop_rate=0.1, job_fail_customers=["c-fail"], seed=5)
    with SandboxServer(faults=faults) as server:
        yield server


def test_every_dashboard_query_returns_data_from_a_live_connector(
    broker: LocalBroker, sandbox: SandboxServer, tmp_path: Path
) -> None:
    topic, dead_letters, group = unique("orders"), unique("dlq"), unique("g")
    broker.create_topics([topic], partitions=3)
    broker.create_topics([dead_letters], partitions=1)
    metrics_port = free_port()
    config = connector_config(
        broker.bootstrap, sandbox.url, topic, group,
        gameball={"job_tracking": {"enabled": True, "poll_interval_ms": 100, "max_polls": 50}},
        batch={"max_items": 20, "linger_ms": 50},
        dead_letter={"topic": dead_letters},
        metrics={"host": "127.0.0.1", "port": metrics_port},
    )
    connector = ConnectorProcess(config, tmp_path).start()
    prometheus = Prometheus(tmp_path, f"127.0.0.1:{metrics_port}")
    try:
        assert connector.metrics_port() == metrics_port
        base = f"http://127.0.0.1:{metrics_port}"
        wait_until(lambda: http_get(base + "/readyz")[0] == 200, 30, "/readyz 200")
        assert http_get(base + "/healthz")[0] == 200

        prometheus.start()
        wait_until(
            lambda: prometheus.value('up{job="gameball-connector"}') == 1, 30, "a first scrape"
        )
        consumed = f'sum(gameball_connector_records_consumed_total{{topic="{topic}"}})'

        # Two waves, so that counters rise while Prometheus watches (rates above zero).
        first, second = records(1, 150), records(2, 150)
        produce(broker.bootstrap, topic, first, key=lambda i: f"k{i}".encode())
        wait_until(lambda: prometheus.value(consumed) >= len(first), 60, "wave 1 scraped")
        produce(broker.bootstrap, topic, second, key=lambda i: f"k{i}".encode())
        total = len(first) + len(second)
        wait_until(lambda: prometheus.value(consumed) >= total, 60, "wave 2 scraped")

        queries = [
            (f"{p['title']} / {t['refId']}", substitute(t["expr"], topic))
            for p in panels(load_dashboard())
            for t in p["targets"]
        ]

        def empty() -> list[str]:
            return [where for where, expr in queries if not prometheus.query(expr)]

        # Jobs finish and librdkafka statistics arrive a few seconds after the records.
        missing: list[str] = []

        def all_have_data() -> bool:
            missing[:] = empty()
            return not missing

        try:
            wait_until(all_have_data, 45, "data for every panel query")
        except AssertionError:
            pytest.fail(f"panel queries without data: {missing}\n{connector.text()[-3000:]}")

        sel = f'namespace="{NAMESPACE}", pod="{POD}"'
        window = f"[{RATE_INTERVAL}]"
        assert prometheus.value(
            f"sum(rate(gameball_connector_records_consumed_total{{{sel}}}{window}))"
        ) > 0
        assert prometheus.value(
            f"sum(rate(gameball_connector_events_accepted_total{{{sel}}}{window}))"
        ) > 0
        skipped = {
            s["metric"]["reason"]: float(s["value"][1])
            for s in prometheus.query(f"gameball_connector_records_skipped_total{{{sel}}}")
        }
        # cart_viewed and None, once per wave (at least once: a rebalance may re-read)
        assert set(skipped) == {"unmatched", "tombstone"}, skipped
        assert min(skipped.values()) >= 2, skipped
        failed = {
            (s["metric"]["stage"], s["metric"]["reason"]): float(s["value"][1])
            for s in prometheus.query(f"gameball_connector_records_failed_total{{{sel}}}")
        }
        assert set(failed) == {("decode", "invalid_json")} and min(failed.values()) >= 2, failed
        # Job tracking saw c-fail's items fail; the pipeline dead-lettered them.
        def dead_letter_reasons() -> dict[str, float]:
            return {
                s["metric"]["reason"]: float(s["value"][1])
                for s in prometheus.query(
                    f"gameball_connector_dead_letter_records_total{{{sel}, topic=\"{topic}\"}}"
                )
            }

        reasons = wait_until(
            lambda: (r := dead_letter_reasons()).get("job_failed", 0) > 0 and r, 30,
            "job_failed dead letters",
        )
        assert reasons["invalid_json"] >= 2, reasons
        assert prometheus.value(f"sum(gameball_connector_job_items_failed_total{{{sel}}})") > 0
        completed = f'sum(gameball_connector_jobs_total{{{sel}, status="completed"}})'
        assert prometheus.value(completed) > 0

        # The variables: label queries list what the scrape attached.
        for label, match, want in (
            ("namespace", "gameball_connector_build_info", NAMESPACE),
            ("pod", f'gameball_connector_build_info{{namespace="{NAMESPACE}"}}', POD),
            ("topic", "gameball_connector_records_consumed_total", topic),
        ):
            assert want in prometheus.api(f"label/{label}/values", **{"match[]": match})

        # The alert rules loaded and evaluate against real series without errors.
        def rules_evaluated() -> list[dict[str, Any]]:
            rules = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
            done = all(r["lastEvaluation"] > "2000" for r in rules)
            return rules if done else []

        rules = wait_until(rules_evaluated, 20, "every rule evaluated")
        assert len(rules) == len(yaml.safe_load(RULES.read_text())["groups"][0]["rules"])
        assert all(r["health"] == "ok" for r in rules), [
            (r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"
        ]

        # Health endpoints, and no secret in what Prometheus scrapes.
        assert http_get(base + "/healthz")[0] == 200
        assert http_get(base + "/readyz")[0] == 200
        status, text = http_get(base + "/metrics")
        assert status == 200
        assert API_KEY.encode() not in text and SECRET_KEY.encode() not in text

        connector.signal(signal.SIGTERM)
        assert connector.wait(30) == 0
    finally:
        connector.kill()
        prometheus.stop()
