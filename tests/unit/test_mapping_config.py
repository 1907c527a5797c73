"""Bad mapping config fails at load time with the key path and the reason, before connecting.

Checked through the real loader (`connector.config.parse`) plus `Mapper` construction,
which is what `run`, `validate` and `map` do at start-up.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from connector.config import parse
from connector.mapping import Mapper
from connector.mapping_schema import RouteSettings, route_subscription
from connector.records import ConfigError

HEAD = {
    "kafka": {"bootstrap_servers": "127.0.0.1:9092"},
    "gameball": {"api_key": "k", "secret_key": "s"},
}
GOOD = {"topic": "shop.orders", "customer_id": "customer.id", "event": "place_order"}


def problems(*routes: dict[str, Any]) -> list[str]:
    text = yaml.safe_dump({**HEAD, "mappings": list(routes)})
    try:
        settings = parse(text, env={})
        Mapper(settings.mappings)
    except ConfigError as exc:
        return exc.problems
    return []


def with_(**changes: Any) -> dict[str, Any]:
    out = dict(GOOD)
    for key, value in changes.items():
        if value is None:
            out.pop(key)
        else:
            out[key] = value
    return out


CASES = [
    ("invalid when", with_(when="type =="), "mappings[1].when: invalid expression 'type =='"),
    ("invalid customer_id", with_(customer_id="a["), "mappings[1].customer_id: invalid expression"),
    (
        "invalid metadata",
        with_(metadata={"amount": "total.["}),
        "mappings[1].metadata.amount.path: invalid expression 'total.['",
    ),
    (
        "invalid metadata path",
        with_(metadata={"amount": {"path": "x y"}}),
        "mappings[1].metadata.amount.path: invalid expression 'x y'",
    ),
    ("unknown function", with_(when="lower(type) == 'x'"), "unknown function lower()"),
    ("unknown envelope field", with_(customer_id="@kee"), "unknown envelope field @kee"),
    (
        "hand-written envelope call",
        with_(customer_id="_gb_envelope('kee')"),
        "mappings[1].customer_id: invalid expression \"_gb_envelope('kee')\": _gb_envelope() "
        "takes one of 'key', 'headers', 'topic', 'partition', 'offset', 'timestamp'",
    ),
    (
        "hand-written envelope call beside @key",
        with_(customer_id="@key", when="_gb_envelope(kind) == 'x'"),
        "mappings[1].when: invalid expression \"_gb_envelope(kind) == 'x'\": _gb_envelope() takes",
    ),
    (
        "bad regex",
        with_(topic=None, topic_pattern="orders("),
        "mappings[1].topic_pattern: not a valid",
    ),
    (
        "no topic",
        with_(topic=None),
        "mappings[1]: a route needs exactly one of 'topic' or 'topic_pattern'",
    ),
    ("two topics", with_(topic_pattern="x.*"), "exactly one of 'topic' or 'topic_pattern'"),
    ("no event", with_(event=None), "mappings[1]: a route needs exactly one of 'event'"),
    ("two events", with_(event_from="type"), "exactly one of 'event'"),
    (
        "event_map without event_from",
        with_(event_map={"a": "b"}),
        "'event_map' and 'event_default' need 'event_from'",
    ),
    (
        "bad event_default",
        with_(event=None, event_from="t", event_default="drop"),
        "mappings[1].event_default: must be 'skip', 'dead_letter' or {name: <event name>}",
    ),
    (
        "empty mapped name",
        with_(event=None, event_from="t", event_map={"a": ""}),
        "mappings[1].event_map: a: event name is empty",
    ),
    (
        "blank mapped name",
        with_(event=None, event_from="t", event_map={"a": "  "}),
        "mappings[1].event_map: a: event name is empty",
    ),
    ("blank literal name", with_(event=" \t"), "mappings[1].event: event name is blank"),
    (
        "blank default name",
        with_(event=None, event_from="t", event_default={"name": " "}),
        "mappings[1].event_default.FixedEvent.name: event name is blank",
    ),
    ("unknown key", with_(evnet="x"), "mappings[1].evnet: Extra inputs are not permitted"),
    ("missing customer_id", with_(customer_id=None), "mappings[1].customer_id: Field required"),
    (
        "path and value",
        with_(metadata={"a": {"path": "x", "value": 1}}),
        "give exactly one of 'path'",
    ),
    ("neither path nor value", with_(metadata={"a": {"default": 1}}), "give exactly one of 'path'"),
    (
        "constant with type",
        with_(metadata={"a": {"value": 1, "type": "string"}}),
        "a constant 'value' takes no",
    ),
    (
        "unit without timestamp",
        with_(metadata={"a": {"path": "x", "unit": "ms"}}),
        "'unit' applies only to type: timestamp",
    ),
    (
        "unknown type",
        with_(metadata={"a": {"path": "x", "type": "date"}}),
        "mappings[1].metadata.a.type: Input should be 'string', 'number'",
    ),
    (
        "metadata not a mapping",
        with_(metadata={"a": 5}),
        "mappings[1].metadata: a: must be an expression string or a mapping",
    ),
    ("big constant", with_(metadata={"a": {"value": 2**70}}), "constant cannot be sent as JSON"),
    (
        "bad include",
        with_(include=["a["]),
        "mappings[1].include: invalid expression 'a['",
    ),
    (
        "bad exclude",
        with_(exclude=["a..b"]),
        "mappings[1].exclude: exclude entries are dotted",
    ),
    (
        "bad value_format",
        with_(value_format="xml"),
        "mappings[1].value_format: Input should be 'json', 'string', 'bytes-base64', 'avro', "
        "'protobuf' or 'json_schema'",
    ),
    (
        "duplicate names",
        with_(name="orders"),
        "mappings[1].name: duplicate route name 'orders' (also mappings[0])",
    ),
]


@pytest.mark.parametrize(("route", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_config_errors_have_key_paths(route: dict[str, Any], expected: str) -> None:
    first = {**GOOD, "name": "orders"}
    found = problems(first, route)
    assert any(expected in p for p in found), found


def test_every_problem_is_reported_at_once() -> None:
    found = problems(with_(when="a =="), with_(customer_id="b ==", event=None))
    assert any(p.startswith("mappings[0].when") for p in found)
    assert any(p.startswith("mappings[1].customer_id") for p in found)


def test_mapper_reports_name_clashes_and_compiles_the_rest() -> None:
    routes = [RouteSettings.model_validate({**GOOD, "name": "x"}) for _ in range(3)]
    with pytest.raises(ConfigError) as caught:
        Mapper(routes)
    assert caught.value.problems == [
        "mappings[1].name: duplicate route name 'x' (also mappings[0])",
        "mappings[2].name: duplicate route name 'x' (also mappings[0])",
    ]


def test_the_skeleton_shape_still_loads() -> None:
    text = """
kafka: {bootstrap_servers: "127.0.0.1:9092", topics: [shop.orders]}
gameball: {api_key: k, secret_key: s}
mappings:
  - topic: shop.orders
    when: "type == 'order_placed'"
    customer_id: customer.id
    event: place_order
    metadata: {order_id: id, amount: total.amount}
"""
    settings = parse(text, env={})
    assert Mapper(settings.mappings).route_names == ["shop.orders/place_order"]


def test_json_config_loads() -> None:
    text = (
        '{"kafka": {"bootstrap_servers": "b:1"}, "gameball": {"api_key": "k", "secret_key": "s"},'
    )
    text += ' "mappings": [{"topic": "t", "customer_id": "@key", "event": "e"}]}'
    assert parse(text, env={}).mappings[0].customer_id == "@key"


def test_subscription_from_routes() -> None:
    exact = [RouteSettings.model_validate(GOOD)]
    assert route_subscription(exact) == ["shop.orders"]
    mixed = [*exact, RouteSettings.model_validate(with_(topic=None, topic_pattern=r"app\..*"))]
    (regex,) = route_subscription(mixed)
    import re

    assert re.search(regex, "app.activity") and re.search(regex, "shop.orders")
    assert not re.search(regex, "shop.orders.dlq")
