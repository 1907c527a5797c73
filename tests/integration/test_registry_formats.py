"""Issue 15: topics written by confluent-kafka's own Avro, Protobuf and JSON Schema
serializers, read through a Schema Registry (the test peer, basic auth on) by
`gameball-connector run` into the sandbox.

Every good record arrives once with the right customer, event and metadata values;
poison records (wrong magic byte, unknown schema id, truncated payload) are dead-lettered
with stage=decode and their reason; offsets reach the end; the registry secret is in no
log line. Expectations come from how the records were made.
"""

from __future__ import annotations

import struct
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from connector.localbroker import LocalBroker
from connector.sandbox.server import SandboxServer
from tests.registry_peer import RegistryPeer
from tests.schema_records import OrderWriters, placed_at
from tests.support import (
    ConnectorProcess,
    committed_to_end,
    connector_config,
    produce,
    read_all,
    unique,
    wait_until,
)

GOOD = 40
SECRET = "reg-s3cret-9f4e"
USER_INFO = f"reg-user:{SECRET}"
STATUSES = ("NEW", "PAID", "REFUNDED")


def route(topic: str, fmt: str) -> dict[str, Any]:
    return {
        "name": fmt,
        "topic": topic,
        "value_format": fmt,
        "customer_id": "customer.id",
        "event": "place_order",
        "metadata": {
            "status": "status",
            "placed_at": "placed_at",
            "amount": "amount",
            "items": "items",
            "n": "@headers.n",
        },
    }


def poison(good: bytes) -> dict[str, bytes]:
    """Bad records made from a good one: each reason the decoder must name."""
    return {
        "wrong_magic_byte": b"\x01" + good[1:],
        "unknown_schema_id": b"\x00" + struct.pack(">I", 4242) + good[5:],
        "truncated_payload": good[:-4],
    }


def readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def metric(port: int, name: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


def events(items: list[dict[str, Any]]) -> list[int]:
    """The `items` metadata (unique per record) of every event the sandbox accepted."""
    return [meta["items"] for item in items for meta in item["events"].values()]


def test_avro_protobuf_json_schema_topics_delivered_poison_dead_lettered(
    broker: LocalBroker, tmp_path: Path
) -> None:
    topics = {fmt: unique(f"orders-{fmt}") for fmt in ("avro", "protobuf", "json_schema")}
    dlq, group = unique("reg-dlq"), unique("g-reg")
    broker.create_topics([*topics.values()], partitions=1)
    broker.create_topics([dlq], partitions=1)
    peer = RegistryPeer(user_info=USER_INFO).start()
    writers = OrderWriters(peer.url, USER_INFO)
    make = {
        "avro": writers.avro_bytes,
        "protobuf": writers.protobuf_bytes,
        "json_schema": writers.json_bytes,
    }
    expected: Counter[tuple[str, str, str]] = Counter()  # (customer, format, n)
    bad: dict[str, tuple[str, str]] = {}  # n -> (format, reason)
    ends: dict[str, dict[int, int]] = {}
    for fmt, topic in topics.items():
        values: list[bytes] = []
        for i in range(GOOD):
            values.append(make[fmt](topic, f"c{i % 7}", STATUSES[i % 3], i))
            expected[(f"c{i % 7}", fmt, f"{fmt}-{len(values) - 1}")] += 1
        for reason, raw in poison(values[0]).items():
            bad[f"{fmt}-{len(values)}"] = (fmt, reason)
            values.append(raw)
        ends[fmt] = produce(
            broker.bootstrap,
            topic,
            values,
            headers=lambda i, fmt=fmt: [("n", f"{fmt}-{i}".encode())],  # type: ignore[misc]
        )

    with SandboxServer() as sandbox:
        config = connector_config(
            broker.bootstrap,
            sandbox.url,
            topics["avro"],
            group,
            mappings=[route(t, fmt) for fmt, t in topics.items()],
            kafka={"topics": list(topics.values())},
            dead_letter={"topic": dlq},
            schema_registry={"url": peer.url, "basic_auth_user_info": "${SR_USER_INFO}"},
        )
        env = {"SR_USER_INFO": USER_INFO}
        with ConnectorProcess(config, tmp_path, env=env) as proc:
            for fmt, topic in topics.items():
                wait_until(
                    lambda t=topic, e=ends[fmt]: committed_to_end(  # type: ignore[misc]
                        broker.bootstrap, group, t, e
                    ),
                    60,
                    f"{fmt} topic committed to its end",
                )
            proc.stop()
        items = sandbox.items()
    peer.stop()

    got: Counter[tuple[str, str, str]] = Counter()
    for item in items:
        for name, meta in item["events"].items():
            assert name == "place_order"
            fmt, i = meta["n"].rsplit("-", 1)
            got[(item["customerId"], fmt, meta["n"])] += 1
            i_ = int(i)
            assert meta["status"] == STATUSES[i_ % 3]
            assert meta["placed_at"] == placed_at(i_).isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"
            )
            assert meta["amount"] == i_ + 0.25
            assert meta["items"] == 5_000_000_000 + i_  # int64 as a JSON number
    assert got == expected  # every good record once, nothing else

    letters = read_all(broker.bootstrap, dlq, quiet=2.0)
    seen = {}
    for msg in letters:
        headers = {k: (v.decode() if v is not None else "") for k, v in msg.headers() or []}
        seen[headers["n"]] = (headers["gameball.error.stage"], headers["gameball.error.reason"])
    assert seen == {n: ("decode", reason) for n, (_fmt, reason) in bad.items()}

    log = proc.text()
    assert SECRET not in log
    assert "reg-user" not in log


def test_registry_outage_holds_records_then_delivers_them(
    broker: LocalBroker, tmp_path: Path
) -> None:
    topic, dlq, group = unique("orders-outage"), unique("outage-dlq"), unique("g-outage")
    broker.create_topics([topic], partitions=2)
    broker.create_topics([dlq], partitions=1)
    peer = RegistryPeer(user_info=USER_INFO).start()
    writers = OrderWriters(peer.url, USER_INFO)
    before = [writers.avro_bytes(topic, f"c{i % 5}", "PAID", i) for i in range(20)]
    # Written now (the producer registers version 2) and produced during the outage: the
    # connector has not seen this schema id yet, so it must ask the registry.
    during = [writers.avro_bytes(topic, f"c{i % 5}", "NEW", i, version=2) for i in range(20, 40)]
    with SandboxServer() as sandbox:
        config = connector_config(
            broker.bootstrap,
            sandbox.url,
            topic,
            group,
            mappings=[route(topic, "avro")],
            dead_letter={"topic": dlq},
            schema_registry={
                "url": peer.url,
                "basic_auth_user_info": USER_INFO,
                "retry_initial_backoff_ms": 100,
                "retry_max_backoff_ms": 400,
            },
        )
        with ConnectorProcess(config, tmp_path) as proc:
            port = proc.metrics_port()
            ends = produce(broker.bootstrap, topic, before, partition=lambda i: i % 2)
            wait_until(
                lambda: committed_to_end(broker.bootstrap, group, topic, ends),
                60,
                "records before the outage committed",
            )
            assert readyz(port) == 200

            peer.stop()
            peer.forget()  # restarted without its storage: the test registers again
            more = produce(broker.bootstrap, topic, during, partition=lambda i: i % 2)
            wait_until(lambda: readyz(port) == 503, 20, "/readyz 503 during the outage")
            assert metric(port, "gameball_connector_schema_registry_unreachable") == 1
            wait_until(
                lambda: (metric(port, "gameball_connector_paused_partitions") or 0) >= 1,
                10,
                "partitions paused",
            )
            wait_until(
                lambda: (
                    (metric(port, "gameball_connector_schema_registry_failures_total") or 0) >= 3
                ),
                10,
                "retries with backoff",
            )
            assert not committed_to_end(broker.bootstrap, group, topic, more)
            delivered_during_outage = events(sandbox.items())
            assert sorted(delivered_during_outage) == [5_000_000_000 + i for i in range(20)]

            peer.start()
            again = OrderWriters(peer.url, USER_INFO)
            assert again.register_avro(topic) == [1, 2]  # the ids the records carry
            wait_until(
                lambda: committed_to_end(broker.bootstrap, group, topic, more),
                60,
                "records from the outage committed after it",
            )
            wait_until(lambda: readyz(port) == 200, 10, "/readyz 200 after the outage")
            assert metric(port, "gameball_connector_schema_registry_unreachable") == 0
            proc.stop()
        items = sandbox.items()
    peer.stop()

    got = Counter(events(items))
    assert got == Counter(5_000_000_000 + i for i in range(40))  # each once, none lost
    assert SECRET not in proc.text()  # not in the outage warnings either
    assert "schema registry unreachable" in proc.text()
    assert read_all(broker.bootstrap, dlq, quiet=1.0) == []  # nothing dead-lettered
