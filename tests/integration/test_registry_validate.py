"""`validate --registry` and `map --input-format raw` against the registry test peer:
route paths checked against the subjects' latest schemas (Avro, Protobuf, JSON Schema),
typos reported with their key paths; wire-format dumps mapped as `run` would."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from tests.registry_peer import RegistryPeer
from tests.schema_records import OrderWriters
from tests.support import BIN

SECRET = "val-s3cret-5e1"
USER_INFO = f"val-user:{SECRET}"


def write_config(tmp_path: Path, url: str, routes: list[dict[str, Any]]) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "kafka": {"bootstrap_servers": "127.0.0.1:1"},
                "gameball": {"api_key": "k", "secret_key": "s", "base_url": "http://127.0.0.1:1"},
                "mappings": routes,
                "schema_registry": {"url": url, "basic_auth_user_info": "${SR_INFO}"},
            }
        )
    )
    return path


def cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), *args],
        input=stdin.decode("latin-1"),
        capture_output=True,
        text=True,
        encoding="latin-1",
        env={"SR_INFO": USER_INFO, "PATH": ""},
        timeout=60,
        check=False,
    )


@pytest.fixture
def registry() -> Any:
    peer = RegistryPeer(user_info=USER_INFO).start()
    writers = OrderWriters(peer.url, USER_INFO)
    writers.avro_bytes("orders", "c1", "PAID", 1)  # registers orders-value (Avro)
    writers.protobuf_bytes("orders-pb", "c1", "PAID", 1)  # orders-pb-value (Protobuf)
    writers.json_bytes("orders-js", "c1", "PAID", 1)  # orders-js-value (JSON Schema)
    yield peer, writers
    peer.stop()


def route(topic: str, fmt: str, **changes: Any) -> dict[str, Any]:
    base = {
        "topic": topic,
        "value_format": fmt,
        "when": "status == 'PAID'",
        "customer_id": "customer.id",
        "event": "place_order",
        "metadata": {"amount": "amount", "at": {"path": "placed_at", "type": "timestamp"}},
    }
    return {**base, **changes}


def test_validate_registry_passes_correct_paths(registry: Any, tmp_path: Path) -> None:
    peer, _ = registry
    routes = [
        route("orders", "avro"),
        route("orders-pb", "protobuf"),
        route("orders-js", "json_schema"),
    ]
    out = cli("validate", "--config", str(write_config(tmp_path, peer.url, routes)), "--registry")
    assert out.returncode == 0, out.stderr
    for subject in ("orders-value", "orders-pb-value", "orders-js-value"):
        assert f"checked against {subject!r}" in out.stdout
    assert SECRET not in out.stdout + out.stderr


def test_validate_registry_reports_misspelled_paths_with_key_paths(
    registry: Any, tmp_path: Path
) -> None:
    peer, _ = registry
    routes = [
        route("orders", "avro", customer_id="custmer.id"),
        route("orders-pb", "protobuf", metadata={"amount": "amout"}),
        route("orders-js", "json_schema", when="customer.idd == 'x'"),
    ]
    path = write_config(tmp_path, peer.url, routes)
    out = cli("validate", "--config", str(path), "--registry")
    assert out.returncode == 2
    assert "mappings[0].customer_id: 'custmer.id': custmer: no field 'custmer' in shop.Order" in (
        out.stderr
    )
    assert "mappings[1].metadata.amount.path: 'amout': amout: no field 'amout' in shop.Order" in (
        out.stderr
    )
    assert "mappings[2].when: \"customer.idd == 'x'\": customer.idd: no field 'idd'" in out.stderr
    assert SECRET not in out.stdout + out.stderr
    # without --registry the same config is valid: nothing is fetched
    before = peer.requests
    assert cli("validate", "--config", str(path)).returncode == 0
    assert peer.requests == before


def test_validate_registry_names_a_missing_subject_and_an_unreachable_registry(
    registry: Any, tmp_path: Path
) -> None:
    peer, _ = registry
    path = write_config(tmp_path, peer.url, [route("nosuch", "avro")])
    out = cli("validate", "--config", str(path), "--registry")
    assert out.returncode == 2
    assert "mappings[0].value_format: subject 'nosuch-value' is not in the schema registry" in (
        out.stderr
    )
    peer.stop()
    out = cli("validate", "--config", str(path), "--registry")
    assert out.returncode == 1
    assert "schema registry unreachable" in out.stderr
    assert SECRET not in out.stdout + out.stderr


def test_map_reads_a_kcat_dump_of_wire_format_values(registry: Any, tmp_path: Path) -> None:
    peer, writers = registry
    good = [writers.avro_bytes("orders", f"c{i}", "PAID", i) for i in range(3)]
    dump = b"".join(b"%d:%s\n" % (len(v), v) for v in good)
    dump += b"-1:\n"  # a tombstone
    dump += b"%d:%s" % (len(good[0]) - 1, b"\x07" + good[0][1:-1])  # wrong magic byte
    config = write_config(tmp_path, peer.url, [route("orders", "avro")])
    out = cli(
        "map", "--config", str(config), "--topic", "orders", "--input-format", "raw", stdin=dump
    )
    assert out.returncode == 0, out.stderr
    lines = [orjson.loads(line) for line in out.stdout.splitlines()]
    assert lines[:3] == [
        {
            "customerId": f"c{i}",
            "events": {"place_order": {"amount": i + 0.25, "at": f"2024-05-01T10:00:0{i}.123Z"}},
        }
        for i in range(3)
    ]
    assert lines[3] == {"skip": "tombstone"}
    assert lines[4]["error"] == "wrong_magic_byte" and lines[4]["stage"] == "decode"

    b64 = base64.b64encode(good[1]) + b"\n"
    out = cli(
        "map",
        "--config",
        str(config),
        "--topic",
        "orders",
        "--input-format",
        "base64",
        "--explain",
        stdin=b64,
    )
    assert out.returncode == 0, out.stderr
    assert orjson.loads(out.stdout)["customerId"] == "c1"


EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "examples" / "cdc-orders"

ROW = {
    "type": "record",
    "name": "Value",
    "namespace": "dbserver1.shop.orders",
    "fields": [
        {"name": "id", "type": "int"},
        {"name": "customer_id", "type": "string"},
        {"name": "status", "type": "string"},
        {
            "name": "total",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2},
        },
        {"name": "currency", "type": "string"},
        {"name": "created_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}
# Debezium's envelope as its Avro converter registers it (fields trimmed to what is used).
DEBEZIUM_SCHEMA = {
    "type": "record",
    "name": "Envelope",
    "namespace": "dbserver1.shop.orders",
    "fields": [
        {"name": "before", "type": ["null", ROW], "default": None},
        {"name": "after", "type": ["null", "Value"], "default": None},
        {
            "name": "source",
            "type": {
                "type": "record",
                "name": "Source",
                "namespace": "io.debezium.connector.postgresql",
                "fields": [
                    {"name": "db", "type": "string"},
                    {"name": "table", "type": "string"},
                    {"name": "ts_ms", "type": "long"},
                ],
            },
        },
        {"name": "op", "type": "string"},
        {"name": "ts_ms", "type": ["null", "long"], "default": None},
    ],
}


def test_cdc_example_maps_the_same_from_debezium_avro_bytes(tmp_path: Path) -> None:
    from datetime import datetime
    from decimal import Decimal

    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    def row(doc: dict[str, Any] | None) -> dict[str, Any] | None:
        if doc is None:
            return None
        at = datetime.fromisoformat(doc["created_at"].replace("Z", "+00:00"))
        return {**doc, "total": Decimal(doc["total"]).quantize(Decimal("0.01")), "created_at": at}

    topic = "dbserver1.shop.orders"
    peer = RegistryPeer(user_info=USER_INFO).start()
    try:
        writers = OrderWriters(peer.url, USER_INFO)
        serialize = AvroSerializer(writers.client, orjson.dumps(DEBEZIUM_SCHEMA).decode())
        dump = b""
        for line in (EXAMPLE / "records.jsonl").read_bytes().splitlines():
            doc = orjson.loads(line)
            if doc == {"@value": None}:
                dump += b"-1:"
                continue
            value = {**doc, "before": row(doc["before"]), "after": row(doc["after"])}
            raw = serialize(value, SerializationContext(topic, MessageField.VALUE))
            dump += b"%d:%s" % (len(raw), raw)
        out = subprocess.run(
            [
                str(BIN),
                "map",
                "--config",
                str(EXAMPLE / "config.yaml"),
                "--topic",
                topic,
                "--input-format",
                "raw",
            ],
            input=dump,
            capture_output=True,
            env={
                "CDC_VALUE_FORMAT": "avro",
                "SCHEMA_REGISTRY_URL": peer.url,
                "SCHEMA_REGISTRY_USER_INFO": USER_INFO,
                "PATH": "",
            },
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, out.stderr.decode()
        got = [orjson.loads(line) for line in out.stdout.splitlines()]
        expected = [orjson.loads(x) for x in (EXAMPLE / "expected.jsonl").read_bytes().splitlines()]
        assert got == expected

        # and validate --registry finds every path of the example in Debezium's schema
        check = subprocess.run(
            [str(BIN), "validate", "--config", str(EXAMPLE / "config.yaml"), "--registry"],
            capture_output=True,
            text=True,
            env={
                "CDC_VALUE_FORMAT": "avro",
                "SCHEMA_REGISTRY_URL": peer.url,
                "SCHEMA_REGISTRY_USER_INFO": USER_INFO,
                "PATH": "",
            },
            timeout=60,
            check=False,
        )
        assert check.returncode == 0, check.stderr
        assert f"checked against '{topic}-value'" in check.stdout
    finally:
        peer.stop()
