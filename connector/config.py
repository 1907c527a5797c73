"""Load the connector's YAML (or JSON) config into frozen, typed settings.

Called by the CLI (`run`, `validate`, `map`) before any connection is made. Every
problem is reported with its key path (`mappings[1].customer_id: ...`) in one
`ConfigError`; secret values are `SecretStr` and never appear in messages.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from connector.config_env import expand_env, key_path
from connector.mapping_schema import (
    RouteSettings,
    TopicSettings,
    check_regex,
    route_subscription,
)
from connector.records import ConfigError
from connector.registry import (
    REGISTRY_FORMATS,
    SchemaRegistrySettings,
    build_decoders,
    is_secret_registry_property,
)

if TYPE_CHECKING:  # the mapping compiler is loaded by `load_checked`, not with the types
    from connector.mapping import Mapper

MAX_BATCH_ITEMS = 1000  # Gameball: "Each batch request supports up to 1,000 objects"

# librdkafka properties whose values are secrets (masked wherever settings are shown)
_SECRET_PROPERTY = re.compile(
    r"(password|secret|\.pem$|\.key$|token|oauthbearer\.config)", re.IGNORECASE
)

PropertyValue = str | int | float | bool


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(_Model):
    bootstrap_servers: str
    group_id: str = "gameball-connector"
    topics: list[str] = Field(default_factory=list)
    topic_pattern: str | None = None
    auto_offset_reset: Literal["earliest", "latest", "error"] = "earliest"
    properties: dict[str, PropertyValue] = Field(default_factory=dict)
    # How often accepted offsets are committed asynchronously in steady state.
    commit_interval_ms: int = Field(default=1000, ge=10)

    _check_regex = field_validator("topic_pattern")(check_regex)


class RateLimitSettings(_Model):
    """Gameball's two documented windows for Events (docs: 100/s and 1,200/30 s)."""

    enabled: bool = True
    per_second: int = Field(default=100, ge=1)
    per_30_seconds: int = Field(default=1200, ge=1)
    # Padding added to both windows: requests arrive later than we send them.
    margin_ms: int = Field(default=100, ge=0)


class RetrySettings(_Model):
    max_attempts: int = Field(default=0, ge=0, description="0 retries without a limit")
    initial_backoff_ms: int = Field(default=200, ge=1)
    max_backoff_ms: int = Field(default=30_000, ge=1)
    auth_backoff_ms: int = Field(default=30_000, ge=1)


class JobTrackingSettings(_Model):
    enabled: bool = True
    status_api: Literal["newest", "older"] = "newest"
    poll_interval_ms: int = Field(default=2000, ge=10)
    # 8: at Gameball's 40 jobs/s and ~100 ms per status call, fewer pollers fall behind
    # and the oldest jobs are given up (docs/benchmarks.md).
    max_concurrent: int = Field(default=8, ge=1)
    # Jobs followed at once (each keeps its records for dead-lettering failed items);
    # beyond it the oldest is given up and counted as "dropped".
    max_tracked: int = Field(default=200, ge=1)
    max_polls: int = Field(default=30, ge=1)
    # Status reads per second (and 12x per 30 s): Gameball's "Others" bucket allows
    # 30/s and 360/30 s per account; the default leaves most of it to other clients.
    max_reads_per_second: int = Field(default=10, ge=1, le=30)


class GameballSettings(_Model):
    base_url: str = "https://api.gameball.co"
    api_key: SecretStr
    secret_key: SecretStr | None = None
    endpoint: Literal["batch", "events"] = "batch"
    timeout_seconds: float = Field(default=30.0, gt=0)
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    job_tracking: JobTrackingSettings = Field(default_factory=JobTrackingSettings)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _batch_needs_secret(self) -> GameballSettings:
        if self.endpoint == "batch" and (
            self.secret_key is None or not self.secret_key.get_secret_value()
        ):
            raise ValueError("secret_key is required when endpoint is 'batch'")
        return self


class BatchSettings(_Model):
    max_items: int = Field(default=MAX_BATCH_ITEMS, ge=1, le=MAX_BATCH_ITEMS)
    max_bytes: int = Field(default=1024 * 1024, ge=1024)
    linger_ms: int = Field(default=500, ge=0)
    # 8: enough to reach Gameball's 40 requests/s at ~80 ms latency while customers'
    # later events wait for their earlier request (docs/benchmarks.md)
    max_in_flight: int = Field(default=8, ge=1, le=64)
    # Events held in memory (windows, waiting, in flight) before partitions are paused.
    max_buffered_events: int = Field(default=20_000, ge=1)
    # What a crash may send again: events in flight plus events accepted that no
    # confirmed commit covers (connector/core/, docs/core.md). None: 3 x max_in_flight x
    # max_items (why: the customer rule interleaves batches' offsets; docs/delivery.md,
    # docs/benchmarks.md).
    max_resend_events: int | None = Field(default=None, ge=1)

    @property
    def resend_limit(self) -> int:
        """`max_resend_events` or its default; read by the pipeline's dispatch check."""
        if self.max_resend_events is not None:
            return self.max_resend_events
        return 3 * self.max_in_flight * self.max_items


# Kafka's rule for topic names (Topic.java): 1-249 of these characters, not "." or "..".
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


class DeadLetterSettings(_Model):
    topic: str | None = None
    properties: dict[str, PropertyValue] = Field(default_factory=dict)
    # A record that cannot be delivered: `dead_letter` copies it to `topic`; `stop` holds
    # its partition at it (nothing committed past it); `drop` commits past it, counted and
    # logged. None: `dead_letter` when a topic is set, else `stop` (docs/delivery.md).
    on_error: Literal["dead_letter", "stop", "drop"] | None = None
    # Failed copies are tried again from the poll loop with exponential backoff.
    retry_initial_backoff_ms: int = Field(default=500, ge=1)
    retry_max_backoff_ms: int = Field(default=30_000, ge=1)
    # /readyz fails while a copy has waited this long for the broker's acknowledgement.
    unready_after_seconds: float = Field(default=30.0, gt=0)
    # Copies not yet acknowledged before the loop stops reading (memory stays bounded
    # while the dead-letter cluster is down); partitions pause as for Gameball stalls.
    max_pending: int = Field(default=10_000, ge=1)
    # Start-up: how long to wait for the topic check (exists, or created).
    check_timeout_seconds: float = Field(default=15.0, gt=0)

    @field_validator("topic")
    @classmethod
    def _topic_name(cls, value: str | None) -> str | None:
        if value is not None and (not _TOPIC_NAME.fullmatch(value) or value in (".", "..")):
            raise ValueError(
                f"{value!r} is not a valid Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)"
            )
        return value

    @model_validator(mode="after")
    def _policy_fits_topic(self) -> DeadLetterSettings:
        if self.on_error == "dead_letter" and self.topic is None:
            raise ValueError("on_error is 'dead_letter' but no dead_letter.topic is set")
        if self.on_error in ("stop", "drop") and self.topic is not None:
            raise ValueError(
                f"on_error is {self.on_error!r} but dead_letter.topic is set: "
                "remove one of them"
            )
        return self

    @property
    def policy(self) -> Literal["dead_letter", "stop", "drop"]:
        """`on_error` or its default; read by the pipeline's bad-record handling."""
        if self.on_error is not None:
            return self.on_error
        return "dead_letter" if self.topic is not None else "stop"


class MetricsSettings(_Model):
    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = Field(default=9464, ge=0, le=65535, description="0: the OS picks a free port")
    # /healthz fails when the poll loop has not run for this long.
    liveness_timeout_seconds: float = Field(default=60.0, gt=0)
    # Each connection must send a whole request within this, and is closed when idle
    # this long; past max_connections the longest-idle one makes room (docs/metrics.md).
    connection_timeout_seconds: float = Field(default=10.0, gt=0)
    max_connections: int = Field(default=128, ge=1)
    # /readyz fails once Gameball has answered only retryable failures (no answer, 408,
    # 429, 5xx) for this long; 0 turns the check off.
    not_ready_after_retrying_seconds: float = Field(default=60.0, ge=0)


class LoggingSettings(_Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text", "auto"] = "auto"


class ShutdownSettings(_Model):
    drain_seconds: float = Field(default=20.0, ge=0)
    close_seconds: float = Field(default=10.0, gt=0)


class Settings(_Model):
    kafka: KafkaSettings
    gameball: GameballSettings
    batch: BatchSettings = Field(default_factory=BatchSettings)
    mappings: list[RouteSettings] = Field(min_length=1)
    # per topic (or "*"): value/key format and what to do with records no route takes
    topic_settings: dict[str, TopicSettings] = Field(default_factory=dict)
    dead_letter: DeadLetterSettings = Field(default_factory=DeadLetterSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    shutdown: ShutdownSettings = Field(default_factory=ShutdownSettings)
    schema_registry: SchemaRegistrySettings | None = None

    @model_validator(mode="after")
    def _registry_known(self) -> Settings:
        if self.schema_registry is None:
            uses = registry_format_paths(self)
            if uses:
                raise ValueError(
                    f"{uses[0]} is a Schema Registry format: schema_registry.url is required"
                )
        return self

    @model_validator(mode="after")
    def _topics_known(self) -> Settings:
        if not self.kafka.topics and not self.kafka.topic_pattern:
            # Routes may name the topics themselves.
            named = [r for r in self.mappings if r.topic or r.topic_pattern]
            if not named:
                raise ValueError(
                    "kafka.topics is empty and no route names a topic or topic_pattern: "
                    "nothing to consume"
                )
        return self

    def subscription(self) -> list[str]:
        """Topic names (and a `^regex`) for `Consumer.subscribe`."""
        if self.kafka.topic_pattern:
            pattern = self.kafka.topic_pattern
            return [pattern if pattern.startswith("^") else "^" + pattern]
        if self.kafka.topics:
            return list(self.kafka.topics)
        return route_subscription(self.mappings)

    def redacted(self) -> dict[str, Any]:
        """The settings as plain data with every secret masked (for `validate`)."""
        data = self.model_dump(mode="json")
        for section in ("kafka", "dead_letter"):
            props = data[section]["properties"]
            for key in props:
                if is_secret_property(key):
                    props[key] = "**********"
        registry = data.get("schema_registry")
        if registry is not None:
            for key in registry["properties"]:
                if is_secret_registry_property(key):
                    registry["properties"][key] = "**********"
            if self.schema_registry is not None:
                for secret in self.schema_registry.secret_values():
                    registry["url"] = registry["url"].replace(secret, "**********")
        return data

    def secret_values(self) -> list[str]:
        """Every secret value, for the log filter that masks them (called by the CLI)."""
        values = [self.gameball.api_key.get_secret_value()]
        if self.gameball.secret_key is not None:
            values.append(self.gameball.secret_key.get_secret_value())
        for props in (self.kafka.properties, self.dead_letter.properties):
            values += [str(v) for k, v in props.items() if is_secret_property(k)]
        if self.schema_registry is not None:
            values += self.schema_registry.secret_values()
        return [v for v in values if v]


def registry_format_paths(settings: Settings) -> list[str]:
    """Key paths of every value/key format that reads from the Schema Registry."""
    found: list[str] = []
    for i, route in enumerate(settings.mappings):
        for field in ("value_format", "key_format"):
            if getattr(route, field) in REGISTRY_FORMATS:
                found.append(f"mappings[{i}].{field}")
    for topic, ts in settings.topic_settings.items():
        for field in ("value_format", "key_format"):
            if getattr(ts, field) in REGISTRY_FORMATS:
                found.append(f"topic_settings.{topic}.{field}")
    return found


def is_secret_property(name: str) -> bool:
    """A librdkafka property whose value is a credential (sasl.password, ssl.key.pem...)."""
    return bool(_SECRET_PROPERTY.search(name))


# --- loading ------------------------------------------------------------------------


def parse(text: str, env: dict[str, str] | None = None, source: str = "config") -> Settings:
    """Parse YAML/JSON text into `Settings`; raise `ConfigError` listing every problem."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # Position and problem only: PyYAML's own text quotes the line, which may be a
        # password.
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(exc, "problem", None) or exc.__class__.__name__
        raise ConfigError([f"{source}: not valid YAML{at}: {problem}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError([f"{source}: the top level must be a mapping of sections"])
    problems: list[str] = []
    expanded = expand_env(raw, dict(os.environ) if env is None else env, (), problems)
    try:
        settings = Settings.model_validate(expanded)
    except ValidationError as exc:
        for err in exc.errors(include_input=False, include_url=False):
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{key_path(err['loc'])}: {msg}")
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return settings


def load(path: str | Path, env: dict[str, str] | None = None) -> Settings:
    """Read and parse a config file; a missing file is a `ConfigError` too."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    return parse(text, env, source=str(path))


def load_checked(path: str | Path) -> tuple[Settings, Mapper]:
    """`load`, then compile the mapping: the CLI's `run`, `validate` and `map` start here,
    so every problem of either is a `ConfigError` with its key path before any I/O."""
    from connector.mapping import Mapper

    settings = load(path)
    decoders = build_decoders(settings.schema_registry)
    return settings, Mapper(settings.mappings, settings.topic_settings, decoders=decoders)
