"""Dead letters read back: the original record inside a dead-letter copy, and which
copies a re-drive takes.

A copy on the dead-letter topic carries the original key, value and headers, plus the
`gameball.error.*` headers `deadletter.error_headers` appended (stage, reason, route,
the original topic, partition and offset, and `attempt` from the second failure on).
`Letter` presents the original record again (the shape the mapper reads), so the
current mapping sees what it would have seen the first time. Pure: no I/O.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from connector.records import Event, RecordLike

PREFIX = "gameball.error."  # deadletter.H: every header the connector adds
ATTEMPT = "attempt"  # failures so far; a copy without it failed once


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


@dataclass(slots=True)
class Letter:
    """One dead-letter copy. `topic()`, `partition()`, `offset()` and `headers()` are the
    original record's (from the error headers); `dlq_*` say where the copy is."""

    dlq_topic: str
    dlq_partition: int
    dlq_offset: int
    errors: dict[str, str]  # gameball.error.* headers, prefix removed
    _key: bytes | None
    _value: bytes | None
    _headers: list[tuple[str, bytes | None]]  # the original headers only
    _timestamp: tuple[int, int]
    outstanding: int = field(default=0)  # events not yet done (the re-drive's bookkeeping)
    failed: bool = field(default=False)  # written back to the dead-letter topic

    @classmethod
    def read(cls, msg: RecordLike) -> Letter:
        """Split a consumed copy into the original record and its error headers."""
        errors: dict[str, str] = {}
        original: list[tuple[str, bytes | None]] = []
        for name, raw in msg.headers() or []:
            if name.startswith(PREFIX):
                errors[name[len(PREFIX):]] = (raw or b"").decode("utf-8", "replace")
            else:
                original.append((name, raw))
        key, value = msg.key(), msg.value()
        return cls(
            str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0), errors,
            key.encode() if isinstance(key, str) else key,
            value.encode() if isinstance(value, str) else value,
            original, msg.timestamp(),
        )

    @property
    def attempt(self) -> int:
        """How often this record has failed so far (1 for a first dead-lettering)."""
        return max(1, _int(self.errors.get(ATTEMPT)) or 1)

    @property
    def reason(self) -> str:
        return self.errors.get("reason", "")

    @property
    def route(self) -> str:
        return self.errors.get("route", "")

    def resend(self, events: list[Event]) -> list[Event]:
        """Which of the current mapping's `events` the re-drive sends again (redrive calls it).

        A copy written for one rejected event (header `event`) stands for that event only:
        the record's other events were accepted the first time, and sending them again could
        reward twice. No such header (a bad record): all of them."""
        name = self.errors.get("event")
        return events if not name else [ev for ev in events if ev.name == name]

    def where(self) -> str:
        """`topic[p]@offset` of the copy on the dead-letter topic."""
        return f"{self.dlq_topic}[{self.dlq_partition}]@{self.dlq_offset}"

    def origin(self) -> str:
        """`topic[p]@offset` of the original record."""
        return f"{self.topic()}[{self.partition()}]@{self.offset()}"

    # --- RecordLike: the original record ---------------------------------------------

    def topic(self) -> str | None:
        return self.errors.get("topic")

    def partition(self) -> int | None:
        return _int(self.errors.get("partition"))

    def offset(self) -> int | None:
        return _int(self.errors.get("offset"))

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes | None]] | None:
        return self._headers or None

    def timestamp(self) -> tuple[int, int]:
        """The copy's timestamp: when it was dead-lettered (the original time is not kept)."""
        return self._timestamp

    def error(self) -> None:
        return None


def parse_time(text: str) -> int:
    """`2026-12-01T08:00:00Z` (or a date) -> epoch milliseconds; ValueError otherwise."""
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%MZ", "%Y-%m-%d"):
        try:
            return calendar.timegm(time.strptime(text, fmt)) * 1000
        except ValueError:
            continue
    raise ValueError(f"not a UTC time like 2026-12-01T08:00:00Z: {text!r}")


@dataclass(frozen=True)
class Selection:
    """Which copies a re-drive sends; `why_not` names the first rule a copy fails."""

    reasons: Sequence[str] = ()
    routes: Sequence[str] = ()
    since_ms: int | None = None  # dead-lettered at or after (the copy's timestamp)
    until_ms: int | None = None  # dead-lettered before
    max_attempts: int = 3

    def why_not(self, letter: Letter) -> str | None:
        if letter.topic() is None:
            return "no_origin"  # not written by the connector: nothing to map it by
        if self.reasons and letter.reason not in self.reasons:
            return "reason"
        if self.routes and letter.route not in self.routes:
            return "route"
        ts = letter.timestamp()[1]
        if self.since_ms is not None and ts < self.since_ms:
            return "before_since"
        if self.until_ms is not None and ts >= self.until_ms:
            return "after_until"
        if letter.attempt >= self.max_attempts:
            return "max_attempts"
        return None
