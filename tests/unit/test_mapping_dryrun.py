"""The dry run's input lines: value lines are raw bytes, envelope lines carry key/headers."""

from __future__ import annotations

import io
from argparse import Namespace
from pathlib import Path

import orjson
import pytest

from connector.dryrun import InputError, parse_line, run

LINES = [
    ("json value", '{"a": 1}', {"value_": b'{"a": 1}', "key_": None, "headers_": ()}),
    ("not json is still a value", "{broken", {"value_": b"{broken"}),
    ("empty object is a value", "{}", {"value_": b"{}"}),
    (
        "object with other keys is a value",
        '{"@key": 1, "x": 2}',
        {"value_": b'{"@key": 1, "x": 2}'},
    ),
    (
        "envelope",
        '{"@key": "k1", "@headers": {"h": "v", "n": null, "j": {"a": 1}}, "@value": {"a": 1}}',
        {
            "key_": b"k1",
            "value_": b'{"a":1}',
            "headers_": (("h", b"v"), ("n", None), ("j", b'{"a":1}')),
        },
    ),
    ("string value is exact text", '{"@value": "plain text"}', {"value_": b"plain text"}),
    ("missing value is a tombstone", '{"@key": "k"}', {"value_": None}),
    ("json key", '{"@key": {"id": 7}, "@value": 1}', {"key_": b'{"id":7}', "value_": b"1"}),
    (
        "coordinates",
        '{"@topic": "x", "@partition": 2, "@offset": 9, "@timestamp": 1714557600250, "@value": 1}',
        {"topic_": "x", "partition_": 2, "offset_": 9, "timestamp_ms": 1714557600250},
    ),
    (
        "iso timestamp is UTC",
        '{"@timestamp": "2024-05-01T10:00:00", "@value": 1}',
        {"timestamp_ms": 1714557600000},
    ),
    ("default offset", '{"@value": 1}', {"offset_": 5, "partition_": 0, "topic_": "t"}),
]


@pytest.mark.parametrize(("line", "expected"), [c[1:] for c in LINES], ids=[c[0] for c in LINES])
def test_parse_line(line: str, expected: dict[str, object]) -> None:
    record = parse_line(line, "t", 5)
    for attr, value in expected.items():
        assert getattr(record, attr) == value, attr


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"@headers": [1], "@value": 1}', "@headers must be an object"),
        ('{"@partition": -1, "@value": 1}', "@partition must be a non-negative integer"),
        ('{"@offset": "x", "@value": 1}', "@offset must be a non-negative integer"),
        ('{"@timestamp": "soon", "@value": 1}', "@timestamp must be epoch milliseconds"),
        ('{"@topic": "", "@value": 1}', "no topic"),
    ],
)
def test_bad_envelopes(line: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_line(line, "t", 0)


def test_value_line_needs_a_topic() -> None:
    with pytest.raises(InputError, match="no topic"):
        parse_line('{"a": 1}', None, 0)


def test_run_in_process(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "kafka: {bootstrap_servers: 'b:1', topics: [t]}\n"
        "gameball: {api_key: k, secret_key: s}\n"
        "mappings:\n"
        "  - {topic: t, customer_id: id, event: e, metadata: {n: n}}\n"
        "  - {topic: t, when: 'n > `1`', customer_id: id, event: big}\n"
    )
    stdin = io.StringIO(
        '{"id": 1, "n": 2}\n\n{"n": 1}\n{"@value": null}\n{"@partition": true, "@value": 1}\n'
    )
    stdout = io.StringIO()
    status = run(Namespace(config=str(cfg), topic=None, explain=False), stdin, stdout)
    lines = [orjson.loads(x) for x in stdout.getvalue().splitlines()]
    assert status == 1
    assert lines == [
        {"customerId": "1", "events": {"e": {"n": 2}}},
        {"customerId": "1", "events": {"big": {}}},
        {
            "error": "missing_customer_id",
            "stage": "mapping",
            "route": "t/e",
            "detail": "customer_id 'id' is missing, null or empty",
        },
        {"skip": "tombstone"},
        {"error": "invalid_input", "detail": "@partition must be a non-negative integer"},
    ]
