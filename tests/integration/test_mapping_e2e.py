"""Issue 3 end to end: one topic with mixed event types, keys and headers, through a real
broker and `gameball-connector run` (subprocess) to the sandbox.

Every expected event arrives exactly once; every unmappable record is in the dead-letter
topic, unchanged, with headers naming the error, stage, route and source coordinates;
skipped records are committed too. Expectations come from how the records were made,
not from running the mapper.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from connector.localbroker import LocalBroker
from connector.sandbox.server import SandboxServer
from tests.support import (
    ConnectorProcess,
    connector_config,
    produce,
    read_all,
    stop_when_committed,
    unique,
)

PARTITIONS = 3
RECORDS = 900
CUSTOMERS = 40
T0_MS = 1_714_557_600_000  # 2024-05-01T10:00:00Z


def mappings(topic: str) -> list[dict[str, Any]]:
    return [
        {
            "name": "orders",
            "topic": topic,
            "when": "@headers.source == 'shop'",
            "customer_id": "customer.id",
            "event_from": "type",
            "event_map": {
                "order_placed": "place_order",
                "order_refunded": "refund",
                "cart_viewed": None,
            },
            "event_default": "dead_letter",
            "metadata": {"uid": "uid", "amount": {"path": "amount", "type": "number"}},
            "source_key": "_source",
        },
        {
            "name": "first-order",
            "topic": topic,
            "when": "@headers.source == 'shop' && type == 'order_placed' && first == `true`",
            "customer_id": "customer.id",
            "event": "first_order",
            "metadata": {"uid": "uid"},
        },
        {
            "name": "app",
            "topic": topic,
            "when": "@headers.source == 'app'",
            "customer_id": "@key",
            "event_from": "@headers.event_type",
            "event_map": {"login": "login", "screen": "view_screen"},
            "event_default": "skip",
            "metadata": {
                "uid": "uid",
                "occurred_at": {"path": '@headers."event-time"', "type": "timestamp"},
            },
        },
    ]


class Made:
    """The records, and what each should become."""

    def __init__(self) -> None:
        self.values: list[bytes | None] = []
        self.keys: list[bytes | None] = []
        self.headers: list[list[tuple[str, bytes]]] = []
        self.events: Counter[tuple[str, str, str]] = Counter()  # (customerId, name, uid)
        self.bad: dict[str, tuple[str, str, str]] = {}  # uid -> (stage, reason, route)
        self.event_time: dict[str, str] = {}  # uid -> expected ISO time of app events

    def add(self, value: Any, key: str | None, headers: dict[str, str]) -> None:
        # Every record also carries its number in a header, to find dead letters by.
        self.values.append(
            value if value is None or isinstance(value, bytes) else orjson.dumps(value)
        )
        self.keys.append(None if key is None else key.encode())
        all_headers = {**headers, "n": str(len(self.headers))}
        self.headers.append([(k, v.encode()) for k, v in all_headers.items()])


def make() -> Made:
    made = Made()
    bad_kinds = [
        "invalid_json",
        "missing_customer_id",
        "unmapped_event",
        "coercion_failed",
        "no_key",
    ]
    for i in range(RECORDS):
        cid = f"c{i % CUSTOMERS}"
        uid = f"u{i}"
        shop = {"source": "shop", "trace": f"t-{i}"}
        order = {"uid": uid, "customer": {"id": cid}, "amount": str(i % 100), "first": False}
        kind = i % 9
        if kind == 0:
            made.add({**order, "type": "order_placed", "first": True}, cid, shop)
            made.events[(cid, "place_order", uid)] += 1
            made.events[(cid, "first_order", uid)] += 1
        elif kind == 1:
            made.add({**order, "type": "order_placed"}, cid, shop)
            made.events[(cid, "place_order", uid)] += 1
        elif kind == 2:
            made.add({**order, "type": "order_refunded"}, cid, shop)
            made.events[(cid, "refund", uid)] += 1
        elif kind == 3:
            made.add({**order, "type": "cart_viewed"}, cid, shop)  # filtered
        elif kind in (4, 5, 6):
            name = {4: "login", 5: "screen", 6: "heartbeat"}[kind]
            at = T0_MS + i * 1000
            made.add(
                {"uid": uid}, cid, {"source": "app", "event_type": name, "event-time": str(at)}
            )
            if kind != 6:  # heartbeat: event_default skip
                made.events[(cid, "login" if kind == 4 else "view_screen", uid)] += 1
                iso = datetime.fromtimestamp(at / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
                made.event_time[uid] = iso
        elif kind == 7:
            bad = bad_kinds[(i // 9) % len(bad_kinds)]
            if bad == "invalid_json":
                made.add(b'{"uid": "' + uid.encode() + b'", "type": ', cid, shop)
                made.bad[uid] = ("decode", "invalid_json", "orders")
            elif bad == "missing_customer_id":
                made.add({**order, "type": "order_placed", "customer": {}}, cid, shop)
                made.bad[uid] = ("mapping", "missing_customer_id", "orders")
            elif bad == "unmapped_event":
                made.add({**order, "type": "order_exchanged"}, cid, shop)
                made.bad[uid] = ("mapping", "unmapped_event", "orders")
            elif bad == "coercion_failed":
                made.add({**order, "type": "order_placed", "amount": "lots"}, cid, shop)
                made.bad[uid] = ("mapping", "coercion_failed", "orders")
            else:
                made.add(
                    {"uid": uid}, None, {"source": "app", "event_type": "login", "event-time": "1"}
                )
                made.bad[uid] = ("mapping", "missing_customer_id", "app")
        elif i % 2:
            made.add(None, cid, {})  # tombstone
        else:
            made.add({"uid": uid, "customer": {"id": cid}}, cid, {"source": "crm"})  # unmatched
    return made


def test_mixed_topic_through_broker_connector_and_sandbox(
    broker: LocalBroker, tmp_path: Path
) -> None:
    topic, dlq, group = unique("mixed"), unique("mixed-dlq"), unique("g-mixed")
    broker.create_topics([topic], partitions=PARTITIONS)
    broker.create_topics([dlq], partitions=1)
    made = make()
    ends = produce(
        broker.bootstrap,
        topic,
        made.values,
        key=lambda i: made.keys[i],
        headers=lambda i: made.headers[i],
        partition=lambda i: i % PARTITIONS,
    )

    with SandboxServer() as sandbox:
        config = connector_config(
            broker.bootstrap,
            sandbox.url,
            topic,
            group,
            mappings=mappings(topic),
            batch={"max_items": 50, "linger_ms": 50, "max_in_flight": 4},
            dead_letter={"topic": dlq},
        )
        with ConnectorProcess(config, tmp_path) as proc:
            stop_when_committed(proc, broker.bootstrap, group, topic, ends, timeout=90, every=0.5)
        items = sandbox.items()

    got: Counter[tuple[str, str, str]] = Counter()
    for item in items:
        for name, meta in item["events"].items():
            got[(item["customerId"], name, meta["uid"])] += 1
            if name in ("login", "view_screen"):
                assert meta["occurred_at"] == made.event_time[meta["uid"]]
            if name in ("place_order", "refund"):
                assert meta["_source"]["topic"] == topic
                assert meta["_source"]["partition"] == int(meta["uid"][1:]) % PARTITIONS
                assert meta["amount"] == int(meta["uid"][1:]) % 100
    assert got == made.events  # every expected event, exactly once, nothing else

    letters = read_all(broker.bootstrap, dlq, quiet=2.0)
    seen: dict[str, dict[str, str]] = {}
    for msg in letters:
        headers = {k: (v.decode() if v is not None else "") for k, v in msg.headers() or []}
        value = msg.value()
        i = int(headers["n"])
        uid = f"u{i}"
        assert uid not in seen, f"{uid} dead-lettered twice"
        seen[uid] = headers
        # The record as it was: value, key and original headers kept.
        assert value == made.values[i]
        assert msg.key() == made.keys[i]
        for k, v in made.headers[i]:
            assert headers[k] == v.decode()
        stage, reason, route = made.bad[uid]
        assert headers["gameball.error.stage"] == stage
        assert headers["gameball.error.reason"] == reason
        assert headers["gameball.error.route"] == route
        assert headers["gameball.error.message"]
        assert headers["gameball.error.topic"] == topic
        assert int(headers["gameball.error.partition"]) == i % PARTITIONS
        assert int(headers["gameball.error.offset"]) >= 0
        assert headers["gameball.error.time"].endswith("Z")
    assert set(seen) == set(made.bad)
