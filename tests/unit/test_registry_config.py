"""The `schema_registry` section: required by the registry formats (with the key path),
its secret masked wherever settings are shown; and how records wait out an outage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from connector.config import parse
from connector.records import ConfigError, RegistryUnavailable, SourceRecord
from connector.registry_outage import RegistryOutage

SECRET = "sr-s3cret-77"


def config(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "kafka": {"bootstrap_servers": "127.0.0.1:9092", "topics": ["orders"]},
        "gameball": {"api_key": "k", "secret_key": "s"},
        "mappings": [{"topic": "orders", "customer_id": "customer.id", "event": "place_order"}],
    }
    base.update(extra)
    return base


def registry() -> dict[str, Any]:
    return {
        "url": "https://registry.example:8081",
        "basic_auth_user_info": f"key:{SECRET}",
        "properties": {"ssl.key.password": "pem-pass-1", "timeout": 3},
    }


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (
            {
                "mappings": [
                    {"topic": "orders", "customer_id": "c", "event": "e", "value_format": "avro"}
                ]
            },
            "mappings[0].value_format",
        ),
        (
            {
                "mappings": [
                    {"topic": "orders", "customer_id": "c", "event": "e", "key_format": "protobuf"}
                ]
            },
            "mappings[0].key_format",
        ),
        (
            {"topic_settings": {"orders": {"value_format": "json_schema"}}},
            "topic_settings.orders.value_format",
        ),
    ],
)
def test_registry_format_without_registry_url_names_the_key_path(
    change: dict[str, Any], path: str
) -> None:
    with pytest.raises(ConfigError) as err:
        parse(yaml.safe_dump(config(**change)), env={})
    assert any(path in p and "schema_registry.url is required" in p for p in err.value.problems)


def test_registry_formats_load_with_the_section() -> None:
    settings = parse(
        yaml.safe_dump(
            config(
                topic_settings={"orders": {"value_format": "avro"}},
                schema_registry=registry(),
            )
        ),
        env={},
    )
    assert settings.schema_registry is not None
    conf = settings.schema_registry.client_config()
    assert conf["url"] == "https://registry.example:8081"
    assert conf["basic.auth.user.info"] == f"key:{SECRET}"
    assert conf["timeout"] == 3 and conf["max.retries"] == 0


@pytest.mark.parametrize(
    ("section", "path"),
    [
        ({"url": "registry:8081"}, "schema_registry.url"),
        (
            {"url": "http://r:8081", "subject_name_strategy": "by-magic"},
            "schema_registry.subject_name_strategy",
        ),
        (
            {"url": "http://r:8081", "retry_initial_backoff_ms": 0},
            "schema_registry.retry_initial_backoff_ms",
        ),
        ({"url": "http://r:8081", "typo": 1}, "schema_registry.typo"),
    ],
)
def test_bad_registry_section_names_its_key_path(section: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(yaml.safe_dump(config(schema_registry=section)), env={})
    assert any(p.startswith(path) for p in err.value.problems), err.value.problems


def test_registry_secrets_are_masked_and_known_to_the_log_filter() -> None:
    settings = parse(yaml.safe_dump(config(schema_registry=registry())), env={})
    shown = str(settings.redacted())
    assert SECRET not in shown and "pem-pass-1" not in shown
    assert "registry.example" in shown
    for secret in (f"key:{SECRET}", SECRET, "pem-pass-1"):
        assert secret in settings.secret_values()


def test_credentials_in_the_registry_url_are_masked_too() -> None:
    section = {"url": f"https://key:{SECRET}@registry.example:8081"}
    settings = parse(yaml.safe_dump(config(schema_registry=section)), env={})
    assert SECRET in settings.secret_values()
    assert SECRET not in str(settings.redacted())
    assert "registry.example" in str(settings.redacted())


def test_validate_show_never_prints_the_registry_secret(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    section = {**registry(), "basic_auth_user_info": "${SR_INFO}"}
    path.write_text(
        yaml.safe_dump(
            config(topic_settings={"orders": {"value_format": "avro"}}, schema_registry=section)
        )
    )
    out = subprocess.run(
        [sys.executable, "-m", "connector.cli", "validate", "--config", str(path), "--show"],
        capture_output=True,
        text=True,
        env={"SR_INFO": f"key:{SECRET}", "PATH": ""},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "registry.example" in out.stdout
    assert SECRET not in out.stdout + out.stderr


# --- outage: records held in order, retried with backoff, then released -------------------


class FakeSource:
    """Counts pause/resume calls (the Source's two methods the outage uses)."""

    def __init__(self) -> None:
        self.paused = False
        self.resumes = 0

    def pause_all(self) -> int:
        self.paused = True
        return 2

    def resume_all(self) -> int:
        self.paused = False
        self.resumes += 1
        return 2


class FakeHealth:
    registry_unreachable = False


def records(partition: int, *offsets: int) -> list[SourceRecord]:
    return [SourceRecord("orders", b"x", partition, o) for o in offsets]


def test_outage_holds_in_order_backs_off_and_resumes() -> None:
    source, health = FakeSource(), FakeHealth()
    metrics = CollectorRegistry()
    outage = RegistryOutage(source, health, metrics, 100, 400)
    held = records(0, 5, 6) + records(1, 9)
    outage.hold(held, RegistryUnavailable("down"), now=10.0)
    assert outage.active and source.paused and health.registry_unreachable
    assert metrics.get_sample_value("gameball_connector_schema_registry_unreachable") == 1
    assert outage.due(10.05) is None  # before the backoff
    again = outage.due(10.1)
    assert again == held  # the same records, in consumed order
    outage.hold(again, RegistryUnavailable("down"), now=10.1)  # still down: backoff doubles
    assert outage.due(10.29) is None and outage.due(10.3) == held
    outage.settled(resume=True)
    assert not outage.active and not source.paused and not health.registry_unreachable
    assert source.resumes == 1
    assert metrics.get_sample_value("gameball_connector_schema_registry_unreachable") == 0
    assert metrics.get_sample_value("gameball_connector_schema_registry_failures_total") == 2


def test_outage_keeps_partitions_paused_for_backpressure() -> None:
    source, health = FakeSource(), FakeHealth()
    outage = RegistryOutage(source, health, CollectorRegistry(), 100, 400)
    outage.hold(records(0, 1), RegistryUnavailable("down"), now=0.0)
    outage.due(1.0)
    outage.settled(resume=False)  # the pipeline holds them paused for Gameball
    assert source.paused and not health.registry_unreachable


def test_revoked_partitions_records_are_left_to_the_next_owner() -> None:
    source, health = FakeSource(), FakeHealth()
    outage = RegistryOutage(source, health, CollectorRegistry(), 100, 400)
    outage.hold(records(0, 1, 2) + records(1, 7), RegistryUnavailable("down"), now=0.0)
    outage.forget([("orders", 0)])
    again = outage.due(1.0)
    assert again is not None and [r.partition() for r in again] == [1]
    outage.hold(again, RegistryUnavailable("down"), now=1.0)
    outage.forget([("orders", 1)])  # in the rebalance callback: nothing resumed there
    assert outage.active and source.paused
    assert outage.due(1.0) == []  # due at once: nothing left to try
    outage.settled(resume=True)  # the loop, after mapping nothing
    assert not outage.active and not health.registry_unreachable and not source.paused
