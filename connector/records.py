"""Plain data that flows through the connector, and the one error tree.

Nothing here does I/O. `RecordLike` is the shape of `confluent_kafka.Message`
(which cannot be built from Python), so the pipeline hands real messages to the
core without copying them, and tests hand in `SourceRecord`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class RecordLike(Protocol):
    """The part of `confluent_kafka.Message` the core reads (same method names)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | str | None: ...
    def value(self) -> bytes | str | None: ...
    def headers(self) -> list[tuple[str, bytes | None]] | None: ...
    def timestamp(self) -> tuple[int, int]: ...


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """A Kafka record built in Python (tests, `map` dry runs); quacks like a Message."""

    topic_: str
    value_: bytes | None
    partition_: int = 0
    offset_: int = 0
    key_: bytes | None = None
    headers_: tuple[tuple[str, bytes | None], ...] = ()
    timestamp_ms: int | None = None

    def topic(self) -> str:
        return self.topic_

    def partition(self) -> int:
        return self.partition_

    def offset(self) -> int:
        return self.offset_

    def key(self) -> bytes | None:
        return self.key_

    def value(self) -> bytes | None:
        return self.value_

    def headers(self) -> list[tuple[str, bytes | None]] | None:
        return list(self.headers_) if self.headers_ else None

    def error(self) -> None:
        """A built record is never a consumer error event (Message.error() is)."""
        return None

    def timestamp(self) -> tuple[int, int]:
        # (type, ms): type 0 means "not available", 1 create time, as in confluent-kafka.
        if self.timestamp_ms is None:
            return (0, -1)
        return (1, self.timestamp_ms)


class Event:
    """One Gameball event produced by the mapper from one record (`record`: the shell
    dead-letters it when Gameball rejects the event). The pipeline hands it to the
    delivery core as a row's payload (connector/core/rows.py)."""

    __slots__ = ("customer_id", "metadata", "name", "record")

    def __init__(
        self, customer_id: str, name: str, metadata: dict[str, Any], record: RecordLike
    ) -> None:
        self.customer_id = customer_id
        self.name = name
        self.metadata = metadata
        self.record = record

    def __repr__(self) -> str:
        return f"Event({self.customer_id!r}, {self.name!r}, {self.metadata!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (self.customer_id, self.name, self.metadata) == (
            other.customer_id,
            other.name,
            other.metadata,
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Skip:
    """The record produced no event on purpose (filtered, tombstone, unmatched)."""

    reason: str


# --- the error tree -----------------------------------------------------------------


class ConnectorError(Exception):
    """Root of every error the connector raises on purpose."""


class ConfigError(ConnectorError):
    """The configuration is invalid; `problems` lists `key.path: reason` lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))
        self.problems = problems

    def report(self, source: str) -> str:
        """`<source>: N problem(s)` and one indented line per problem, as `validate` and
        `map` print it to stderr."""
        return "\n".join([f"{source}: {len(self.problems)} problem(s)",
                          *(f"  {line}" for line in self.problems)])


class RecordError(ConnectorError):
    """One record could not become events; it goes to the dead-letter topic.

    `stage` is where it failed (decode, mapping, gameball, job), `reason` a short
    machine-friendly word for metrics, `detail` the human explanation.
    """

    stage = "mapping"

    def __init__(self, reason: str, detail: str = "", route: str | None = None) -> None:
        super().__init__(
            f"{self.stage}: {reason}: {detail}" if detail else f"{self.stage}: {reason}"
        )
        self.reason = reason
        self.detail = detail
        self.route = route


class DecodeError(RecordError):
    """The record's bytes are not in the expected format."""

    stage = "decode"


class MappingError(RecordError):
    """The decoded value did not fit the mapping (missing customer id, bad type, ...)."""

    stage = "mapping"


class EncodeError(RecordError):
    """An event's metadata cannot be written as JSON for Gameball (too deep, a value
    JSON has no form for); found per event before any request is sent."""

    stage = "encode"


class GameballError(ConnectorError):
    """Gameball answered with an error object or not at all."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        code: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.request_id = request_id


class RegistryUnavailable(BaseException):
    """The schema registry did not answer (down, timed out, 5xx, refused credentials).

    Not the record's fault, so not a `RecordError`: raised by the registry decoders, it
    unwinds through the mapper's per-record `except Exception` handlers (hence
    BaseException, like KeyboardInterrupt) to the pipeline, which holds the record and
    retries later (`connector.registry_outage`); nothing is dead-lettered or skipped.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail
