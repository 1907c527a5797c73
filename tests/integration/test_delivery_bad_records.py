"""Bad records and dead-letter faults (issue 13): no single record, nor the dead-letter
producer, stops the connector or loses a record silently. Real broker, the CLI as a
subprocess, the sandbox over HTTP; docs/delivery.md "Faults and what the connector does".
"""

from __future__ import annotations

import hashlib
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import yaml
from prometheus_client.parser import text_string_to_metric_families

from connector.localbroker import LocalBroker
from connector.sandbox.server import SandboxServer
from tests.faults import ForwardedBroker
from tests.support import (
    BIN,
    ConnectorProcess,
    committed,
    connector_config,
    delivered_orders,
    produce,
    read_all,
    stop_when_committed,
    unique,
    wait_until,
)

BIG = 1_010_000  # a default broker takes up to 1,048,588; the producer's default is 1,000,000


def order(i: int, customer: str = "c1", **extra: Any) -> dict[str, Any]:
    return {"type": "order_placed", "id": f"o-{i}", "customer": {"id": customer},
            "total": {"amount": i}, **extra}


def http(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return int(answer.status), answer.read().decode()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read().decode()
    except OSError:
        return 0, ""


def metric(port: int, name: str, **labels: str) -> float:
    """One sample from the connector's /metrics (0 when absent)."""
    _, text = http(f"http://127.0.0.1:{port}/metrics")
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def headers_of(msg: Any) -> dict[str, str]:
    return {k: v.decode() for k, v in msg.headers() or [] if v is not None}


def test_a_record_too_large_for_the_producer_is_dead_lettered_as_a_reference(
    broker: LocalBroker, tmp_path: Path
) -> None:
    topic, dlq, group = unique("big"), unique("dlq"), unique("g-big")
    broker.create_topics([topic], partitions=1)  # the dead-letter topic: created at start
    big = orjson.dumps({"type": "order_placed", "id": "o-big", "pad": "x" * (BIG - 45)})
    assert len(big) == BIG  # no customer: a mapping error, with a copy too large to write
    values: list[Any] = [order(0), big, *(order(i) for i in range(2, 10))]
    ends = produce(broker.bootstrap, topic, values, config={"message.max.bytes": 2_000_000})
    with SandboxServer() as sandbox:
        config = connector_config(broker.bootstrap, sandbox.url, topic, group,
                                  dead_letter={"topic": dlq})
        with ConnectorProcess(config, tmp_path) as proc:
            stop_when_committed(proc, broker.bootstrap, group, topic, ends, timeout=60)
        got = delivered_orders(sandbox.items())
    assert got == {f"o-{i}": 1 for i in (0, *range(2, 10))}  # later records delivered
    assert committed(broker.bootstrap, group, topic, 1) == {0: 10}
    letters = read_all(broker.bootstrap, dlq, quiet=2.0)
    assert len(letters) == 1
    h = headers_of(letters[0])
    assert h["gameball.error.value_replaced"] == "reference"
    assert h["gameball.error.stage"] == "mapping"
    assert h["gameball.error.reason"] == "missing_customer_id"
    assert orjson.loads(letters[0].value()) == {
        "topic": topic, "partition": 0, "offset": 1, "size": len(big),
        "sha256": hashlib.sha256(big).hexdigest(),
    }
    assert '"connector failed"' not in proc.text()


def test_validate_and_run_refuse_an_invalid_dead_letter_topic_name(tmp_path: Path) -> None:
    config = connector_config("127.0.0.1:1", "http://127.0.0.1:1", "orders", "g",
                              dead_letter={"topic": "bad/topic name!"})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {"GAMEBALL_API_KEY": "k", "GAMEBALL_SECRET_KEY": "s", "PATH": "/usr/bin:/bin"}
    for command in ("validate", "run"):
        out = subprocess.run([str(BIN), command, "--config", str(path)], env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 2, (command, out.stdout, out.stderr)
        assert "dead_letter.topic: 'bad/topic name!' is not a valid Kafka topic name" in (
            out.stderr), (command, out.stderr)

    # A valid name whose cluster does not answer: `run` stops at start, naming the key.
    dead = connector_config("127.0.0.1:1", "http://127.0.0.1:1", "orders", "g",
                            dead_letter={"topic": "dlq", "check_timeout_seconds": 2,
                                         "properties": {"bootstrap.servers": "127.0.0.1:1"}})
    path.write_text(yaml.safe_dump(dead))
    out = subprocess.run([str(BIN), "run", "--config", str(path)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "dead_letter.topic: 'dlq': cannot read the cluster's topics" in out.stderr, out.stderr


def test_dead_letter_writes_that_fail_hold_commits_and_readiness_until_they_succeed(
    broker: LocalBroker, tmp_path: Path
) -> None:
    topic, dlq, group = unique("dlq-down"), unique("dlq"), unique("g-dlq-down")
    broker.create_topics([topic], partitions=1)
    with SandboxServer() as sandbox, ForwardedBroker() as second:
        config = connector_config(
            broker.bootstrap, sandbox.url, topic, group,
            dead_letter={"topic": dlq, "unready_after_seconds": 3,
                         "retry_initial_backoff_ms": 100, "retry_max_backoff_ms": 1000,
                         "properties": {"bootstrap.servers": second.bootstrap,
                                        "message.timeout.ms": 2000,
                                        "reconnect.backoff.max.ms": 500}},
        )
        with ConnectorProcess(config, tmp_path) as proc:
            port = proc.metrics_port()
            ready = f"http://127.0.0.1:{port}/readyz"
            wait_until(lambda: http(ready)[0] == 200, 30, "/readyz 200")
            second.forwarder.off()  # the dead-letter topic's cluster is now a dead address
            ends = produce(broker.bootstrap, topic,
                           [order(0), b"{broken", *(order(i) for i in range(2, 6))])
            wait_until(lambda: delivered_orders(sandbox.items()).get("o-5"), 30,
                       "the records after the bad one delivered")
            status = wait_until(lambda: (s := http(ready))[0] == 503 and s, 20, "/readyz 503")
            assert "dead-letter copies unacknowledged" in status[1]
            assert metric(port, "gameball_connector_dead_letter_failing") == 1
            assert metric(port, "gameball_connector_dead_letter_pending") == 1
            assert metric(port, "gameball_connector_dead_letter_errors_total",
                          reason="_msg_timed_out") >= 1
            # Nothing is committed past the bad record while its copy is not written.
            wait_until(lambda: committed(broker.bootstrap, group, topic, 1) == {0: 1}, 20,
                       "the commit at the bad record")
            assert committed(broker.bootstrap, group, topic, 1) == {0: 1}

            second.forwarder.on()  # it comes back: the copy is written, the rest committed
            stop_when_committed(proc, broker.bootstrap, group, topic, ends, timeout=60)
        letters = read_all(second.bootstrap, dlq, quiet=2.0)
    assert [m.value() for m in letters] == [b"{broken"]
    assert headers_of(letters[0])["gameball.error.reason"] == "invalid_json"
    failures = [e for e in proc.logs() if e.get("msg", "").startswith("dead-letter write failed")]
    assert failures and all(e["record"] == f"{topic}[0]@1" for e in failures)
    assert any(e.get("msg") == "dead-letter copies are acknowledged again" for e in proc.logs())


def test_metadata_too_deep_to_encode_is_dead_lettered_with_stage_encode(
    broker: LocalBroker, tmp_path: Path
) -> None:
    topic, dlq, group = unique("deep"), unique("dlq"), unique("g-deep")
    broker.create_topics([topic], partitions=1)
    # orjson decodes 1,024 levels but encodes only 254: written out by hand
    deep = b'{"d":' * 300 + b'"bottom"' + b"}" * 300
    bad = orjson.dumps(order(1, customer="c2"))[:-1] + b',"extra":' + deep + b"}"
    values = [order(0), bad, *(order(i) for i in range(2, 6))]
    mapping = [{"topic": topic, "customer_id": "customer.id", "event": "place_order",
                "metadata": {"order_id": "id", "extra": "extra"}}]
    ends = produce(broker.bootstrap, topic, values)
    with SandboxServer() as sandbox:
        config = connector_config(broker.bootstrap, sandbox.url, topic, group, mapping,
                                  dead_letter={"topic": dlq})
        with ConnectorProcess(config, tmp_path) as proc:
            stop_when_committed(proc, broker.bootstrap, group, topic, ends, timeout=60)
        got = delivered_orders(sandbox.items())
    assert got == {f"o-{i}": 1 for i in (0, 2, 3, 4, 5)}
    letters = read_all(broker.bootstrap, dlq, quiet=2.0)
    assert len(letters) == 1
    h = headers_of(letters[0])
    assert (h["gameball.error.stage"], h["gameball.error.reason"]) == ("encode", "unencodable")
    assert h["gameball.error.offset"] == "1"
    assert orjson.loads(letters[0].value())["id"] == "o-1"


def test_without_a_dead_letter_topic_a_bad_record_stops_its_partition_by_default(
    broker: LocalBroker, tmp_path: Path
) -> None:
    topic, group = unique("stop"), unique("g-stop")
    broker.create_topics([topic], partitions=1)
    values = [order(0), b"{broken", *(order(i) for i in range(2, 6))]
    ends = produce(broker.bootstrap, topic, values)
    with SandboxServer() as sandbox:
        config = connector_config(broker.bootstrap, sandbox.url, topic, group)
        for run in ("first", "second"):  # each run meets the record and says so again
            with ConnectorProcess(config, tmp_path, name=run) as proc:
                port = proc.metrics_port()
                ready = f"http://127.0.0.1:{port}/readyz"
                status = wait_until(
                    lambda url=ready: (s := http(url))[0] == 503  # type: ignore[misc]
                    and "held at a bad record" in s[1] and s, 30, "/readyz 503 at the bad record")
                assert f"{topic}[0]@1" in status[1]
                wait_until(lambda: committed(broker.bootstrap, group, topic, 1) == {0: 1}, 20,
                           "the commit up to the bad record")
                assert metric(port, "gameball_connector_records_halted") == 1
                proc.stop()
            errors = [e for e in proc.logs() if e.get("level") == "ERROR"
                      and "on_error is 'stop'" in e.get("msg", "")]
            assert [(e["topic"], e["partition"], e["offset"]) for e in errors] == [(topic, 0, 1)]
            assert committed(broker.bootstrap, group, topic, 1) == {0: 1}
        # Nothing past the bad record was sent, in either run.
        assert delivered_orders(sandbox.items()) == {"o-0": 1}
    assert ends == {0: 6}


def test_drop_is_explicit_counted_and_logged_with_the_offsets(
    broker: LocalBroker, tmp_path: Path
) -> None:
    topic, group = unique("drop"), unique("g-drop")
    broker.create_topics([topic], partitions=1)
    values = [order(0), b"{broken", *(order(i) for i in range(2, 6))]
    ends = produce(broker.bootstrap, topic, values)
    with SandboxServer() as sandbox:
        config = connector_config(broker.bootstrap, sandbox.url, topic, group,
                                  dead_letter={"on_error": "drop"})
        with ConnectorProcess(config, tmp_path) as proc:
            port = proc.metrics_port()
            wait_until(lambda: committed(broker.bootstrap, group, topic, 1) == {0: 6}, 60,
                       "everything committed")
            assert metric(port, "gameball_connector_records_dropped_total", topic=topic,
                          stage="decode", reason="invalid_json") == 1
            assert http(f"http://127.0.0.1:{port}/readyz")[0] == 200
            proc.stop()
        assert delivered_orders(sandbox.items()) == {f"o-{i}": 1 for i in (0, 2, 3, 4, 5)}
    dropped = [e for e in proc.logs() if e.get("msg", "").startswith("record dropped")]
    assert [(e["level"], e["offset"], e["reason"]) for e in dropped] == [
        ("ERROR", 1, "invalid_json")
    ]
    assert ends == {0: 6}


def test_copies_waiting_for_a_dead_cluster_bound_what_is_read(
    broker: LocalBroker, tmp_path: Path
) -> None:
    """At `dead_letter.max_pending` unacknowledged copies the loop stops reading and
    pauses its partitions (memory stays bounded); it reads on once they are written."""
    topic, dlq, group = unique("dlq-bound"), unique("dlq"), unique("g-dlq-bound")
    broker.create_topics([topic], partitions=1)
    with SandboxServer() as sandbox, ForwardedBroker() as second:
        config = connector_config(
            broker.bootstrap, sandbox.url, topic, group,
            dead_letter={"topic": dlq, "max_pending": 1, "retry_max_backoff_ms": 500,
                         "properties": {"bootstrap.servers": second.bootstrap,
                                        "message.timeout.ms": 2000,
                                        "reconnect.backoff.max.ms": 500}},
        )
        with ConnectorProcess(config, tmp_path) as proc:
            port = proc.metrics_port()
            wait_until(lambda: http(f"http://127.0.0.1:{port}/readyz")[0] == 200, 30, "ready")
            second.forwarder.off()
            produce(broker.bootstrap, topic, [b"{broken"])
            wait_until(lambda: metric(port, "gameball_connector_dead_letter_pending") == 1, 20,
                       "one copy pending")
            ends = produce(broker.bootstrap, topic, [order(i) for i in range(1, 6)])
            wait_until(lambda: metric(port, "gameball_connector_paused_partitions") == 1, 20,
                       "the partition paused")
            consumed = "gameball_connector_records_consumed_total"
            assert metric(port, consumed, topic=topic) == 1  # nothing read past the bound
            assert sandbox.items() == []
            second.forwarder.on()
            stop_when_committed(proc, broker.bootstrap, group, topic, ends, timeout=60)
        assert delivered_orders(sandbox.items()) == {f"o-{i}": 1 for i in range(1, 6)}
    assert ends == {0: 6}
