"""Config loading: env expansion, every problem with its key path, no secret in output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from connector.config import load, parse
from connector.records import ConfigError

GOOD = """
kafka:
  bootstrap_servers: "127.0.0.1:9092"
  group_id: gameball-connector
  topics: ["shop.orders"]
  auto_offset_reset: earliest
  properties:
    session.timeout.ms: 6000
    sasl.password: "${KAFKA_PASSWORD:-kafka-pass-123}"
gameball:
  base_url: "https://api.gameball.co"
  api_key: "${GAMEBALL_API_KEY}"
  secret_key: "${GAMEBALL_SECRET_KEY}"
  endpoint: batch
batch:
  max_items: 1000
  linger_ms: 500
  max_in_flight: 4
mappings:
  - topic: shop.orders
    when: "type == 'order_placed'"
    customer_id: customer.id
    event: place_order
    metadata:
      order_id: id
      amount: total.amount
dead_letter:
  topic: gameball.dlq
metrics:
  port: 9464
"""
ENV = {"GAMEBALL_API_KEY": "key-abcdef-123", "GAMEBALL_SECRET_KEY": "secret-xyz-789"}


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text, ENV if env is None else env)
    return info.value.problems


def test_the_documented_shape_loads_with_env_and_defaults() -> None:
    s = parse(GOOD, ENV)
    assert s.gameball.api_key.get_secret_value() == "key-abcdef-123"
    assert s.kafka.properties["sasl.password"] == "kafka-pass-123"
    assert s.batch.max_bytes == 1024 * 1024
    assert s.shutdown.drain_seconds == 20
    assert s.subscription() == ["shop.orders"]


def test_what_a_crash_may_resend_defaults_to_three_full_rounds_of_requests() -> None:
    s = parse(GOOD, ENV)
    assert s.batch.max_resend_events is None
    assert s.batch.resend_limit == 3 * 4 * 1000
    own = parse(GOOD.replace("max_in_flight: 4", "max_in_flight: 4\n  max_resend_events: 500"), ENV)
    assert own.batch.resend_limit == 500


def test_json_config_loads_too(tmp_path: Path) -> None:
    import json

    import yaml

    path = tmp_path / "c.json"
    path.write_text(json.dumps(yaml.safe_load(GOOD)))
    assert load(path, ENV).kafka.topics == ["shop.orders"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("max_items: 1000", "max_items: 1001"), "batch.max_items: "),
        (("customer_id: customer.id", "customer_idd: customer.id"), "mappings[0].customer_idd: "),
        (("endpoint: batch", "endpoint: bulk"), "gameball.endpoint: "),
        (("linger_ms: 500", "linger_ms: soon"), "batch.linger_ms: "),
        (
            ('base_url: "https://api.gameball.co"', "base_url: api.gameball.co"),
            "gameball.base_url: ",
        ),
        (("group_id: gameball-connector", "group_id: [a]"), "kafka.group_id: "),
        (("max_in_flight: 4", "max_in_flight: 4\n  max_resend_events: 0"),
         "batch.max_resend_events: "),
        (("endpoint: batch", "endpoint: batch\n  job_tracking:\n    max_reads_per_second: 31"),
         "gameball.job_tracking.max_reads_per_second: "),  # over the Others bucket's 30/s
    ],
)
def test_each_problem_names_its_key_path(change: tuple[str, str], expected: str) -> None:
    found = problems(GOOD.replace(*change))
    assert any(p.startswith(expected) for p in found), found


def test_an_unset_variable_is_an_error_not_an_empty_string() -> None:
    found = problems(GOOD, {"GAMEBALL_SECRET_KEY": "s" * 10})
    assert "gameball.api_key: environment variable GAMEBALL_API_KEY is not set" in found


def test_every_problem_is_listed_at_once() -> None:
    bad = GOOD.replace("max_items: 1000", "max_items: 0").replace("port: 9464", "port: -1")
    found = problems(bad)
    assert {p.split(":")[0] for p in found} >= {"batch.max_items", "metrics.port"}


def test_batch_endpoint_needs_the_secret_key() -> None:
    found = problems(GOOD.replace('  secret_key: "${GAMEBALL_SECRET_KEY}"\n', ""))
    assert any("secret_key is required" in p for p in found)


def test_validate_cli_lists_problems_with_paths_and_never_secrets(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace("max_items: 1000", "max_items: 5000").replace(
        "customer_id: customer.id", "customer_id: customer.id\n    colour: blue"))
    env = {**ENV, "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "connector.cli", "validate", "--config", str(path)],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert out.returncode != 0
    assert "batch.max_items" in out.stderr and "mappings[0].colour" in out.stderr
    head, *lines = out.stderr.strip().splitlines()
    assert head == f"{path}: {len(lines)} problem(s)" and len(lines) >= 2
    assert all(line.startswith("  ") for line in lines)
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    ok = subprocess.run(
        [sys.executable, "-m", "connector.cli", "validate", "--config", str(good), "--show"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    for secret in [*ENV.values(), "kafka-pass-123"]:
        assert secret not in ok.stdout + ok.stderr + out.stdout + out.stderr


def test_routes_name_the_subscription_when_kafka_topics_is_empty() -> None:
    routes = GOOD.replace('  topics: ["shop.orders"]\n', "").replace(
        "  - topic: shop.orders", "  - topic_pattern: 'shop[.].*'"
    )
    s = parse(routes, ENV)
    assert s.subscription() == ["^(?:(?:shop[.].*))$"]
    nothing = GOOD.replace('  topics: ["shop.orders"]\n', "").replace(
        "  - topic: shop.orders\n", "  - when: \"type == 'x'\"\n"
    ).replace("    when: \"type == 'order_placed'\"\n", "")
    assert problems(nothing) == [
        "mappings[0]: a route needs exactly one of 'topic' or 'topic_pattern'"
    ]


def test_topic_settings_reach_the_settings() -> None:
    s = parse(GOOD + "topic_settings:\n  shop.orders: {unmatched: dead_letter}\n", ENV)
    assert s.topic_settings["shop.orders"].unmatched == "dead_letter"
    assert any(p.startswith("topic_settings.shop.orders.unmatched")
               for p in problems(GOOD + "topic_settings:\n  shop.orders: {unmatched: drop}\n"))


def test_one_rule_finds_every_secret_for_logs_and_validate() -> None:
    text = GOOD.replace(
        "  topic: gameball.dlq\n",
        "  topic: gameball.dlq\n  properties:\n    sasl.oauthbearer.token: tok-abc-123\n"
        "    sasl.oauthbearer.config: principal=svc clientSecret=oauth-456\n"
        "    acks: all\n",
    )
    s = parse(text, ENV)
    oauth = "principal=svc clientSecret=oauth-456"
    assert set(s.secret_values()) == {*ENV.values(), "kafka-pass-123", "tok-abc-123", oauth}
    shown = str(s.redacted())
    for secret in ("kafka-pass-123", "tok-abc-123", oauth):
        assert secret not in shown
    assert s.redacted()["dead_letter"]["properties"]["acks"] == "all"


def test_broken_yaml_names_the_place_but_never_quotes_the_line() -> None:
    text = GOOD.replace("  api_key:", '  note: "unterminated hunter2-SECRET\n  api_key:', 1)
    (problem,) = problems(text)
    assert problem.startswith("config: not valid YAML at line ")
    assert "hunter2" not in problem


@pytest.mark.parametrize(
    "topic", ["bad/topic name!", "", ".", "..", "x" * 250, "dlq:1", "ünïcode"]
)
def test_an_invalid_dead_letter_topic_name_is_refused_with_its_key_path(topic: str) -> None:
    found = problems(GOOD.replace("topic: gameball.dlq", f"topic: {topic!r}"))
    assert [p.split(":")[0] for p in found] == ["dead_letter.topic"], found
    assert "is not a valid Kafka topic name" in found[0]


def test_on_error_defaults_follow_the_dead_letter_topic() -> None:
    assert parse(GOOD, ENV).dead_letter.policy == "dead_letter"
    without = GOOD.replace("dead_letter:\n  topic: gameball.dlq\n", "")
    assert parse(without, ENV).dead_letter.policy == "stop"  # no silent loss by default
    dropping = without + "dead_letter: {on_error: drop}\n"
    assert parse(dropping, ENV).dead_letter.policy == "drop"


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("{on_error: dead_letter}", "dead_letter: on_error is 'dead_letter' but no"),
        ("{topic: dlq, on_error: drop}", "dead_letter: on_error is 'drop' but dead_letter.topic"),
        ("{on_error: skip}", "dead_letter.on_error: Input should be"),
        ("{unready_after_seconds: 0}", "dead_letter.unready_after_seconds: "),
    ],
)
def test_on_error_and_the_topic_must_agree(section: str, expected: str) -> None:
    without = GOOD.replace("dead_letter:\n  topic: gameball.dlq\n", "")
    found = problems(without + f"dead_letter: {section}\n")
    assert any(p.startswith(expected) for p in found), found
