"""What happens to a record the connector cannot deliver: `dead_letter.on_error`.

Called by the pipeline (loop thread only) for every record that failed to decode, map
or encode, that Gameball rejected, or whose batch job failed an item:
- `dead_letter`: a copy goes to the dead-letter topic; the record is acked (so its
  offset may be committed) only once the broker acknowledged the copy;
- `stop` (the default without a topic): the record is never acked, so nothing past it
  is committed; its partition is held (paused) at it, readiness is false and an ERROR
  names topic, partition and offset;
- `drop`: acked at once, counted in `records_dropped_total` and logged at ERROR with
  its offsets (every one of the first few per reason, then one line per `DROP_LOG_EVERY`).
docs/delivery.md, "Faults and what the connector does".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from connector.config import Settings
from connector.deadletter import DeadLetters, H
from connector.records import RecordLike
from connector.telemetry import Health, Metrics

log = logging.getLogger("connector.badrecords")

DROP_LOG_FIRST = 10  # drops logged one by one per (topic, stage, reason)...
DROP_LOG_EVERY = 100  # ...then one line per this many, with their offsets


class DropLog:
    """Logs dropped records rate-limited by count, never by silence: every drop is in a
    line, alone or in a summary of the next `every` with their offset spans."""

    def __init__(
        self, logger: logging.Logger, first: int = DROP_LOG_FIRST, every: int = DROP_LOG_EVERY
    ) -> None:
        self._log = logger
        self._first = first
        self._every = every
        self._counts: dict[tuple[str, str, str], int] = {}
        # per key: partition -> (lowest, highest) offset of the drops not yet logged
        self._spans: dict[tuple[str, str, str], dict[int, tuple[int, int]]] = {}

    def dropped(
        self, topic: str, partition: int, offset: int, stage: str, reason: str, detail: str
    ) -> None:
        key = (topic, stage, reason)
        n = self._counts[key] = self._counts.get(key, 0) + 1
        if n <= self._first:
            self._log.error(
                "record dropped (dead_letter.on_error: drop)",
                extra={"topic": topic, "partition": partition, "offset": offset,
                       "stage": stage, "reason": reason, "detail": detail, "dropped": n},
            )
            return
        spans = self._spans.setdefault(key, {})
        lo, hi = spans.get(partition, (offset, offset))
        spans[partition] = (min(lo, offset), max(hi, offset))
        if (n - self._first) % self._every == 0:
            self._summary(key, self._every)

    def flush(self) -> None:
        """At shutdown: the drops counted since the last summary line."""
        for key in list(self._spans):
            n = (self._counts[key] - self._first) % self._every
            if n:
                self._summary(key, n)

    def _summary(self, key: tuple[str, str, str], n: int) -> None:
        spans = self._spans.pop(key, {})
        topic, stage, reason = key
        self._log.error(
            "records dropped (dead_letter.on_error: drop)",
            extra={"topic": topic, "stage": stage, "reason": reason, "records": n,
                   "offsets": ", ".join(f"{topic}[{p}]@{lo}-{hi}"
                                        for p, (lo, hi) in sorted(spans.items())),
                   "dropped": self._counts[key]},
        )


class BadRecords:
    """Applies `dead_letter.on_error`; owns the dead-letter producer's loop-side state
    (pending copies, readiness). Built by the pipeline."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        health: Health,
        dead_letters: DeadLetters | None,
    ) -> None:
        self.policy = settings.dead_letter.policy
        if self.policy == "dead_letter" and dead_letters is None:
            raise ValueError("dead_letter.on_error is 'dead_letter' but no producer was given")
        self._dlq = dead_letters if self.policy == "dead_letter" else None
        self._unready_after = settings.dead_letter.unready_after_seconds
        self._m = metrics
        self._health = health
        self._drops = DropLog(log)
        self.halted: dict[tuple[str, int], int] = {}  # partition -> offset it is held at
        self.new_holds = False  # set by `handle`, cleared by the pipeline once applied

    @property
    def pending(self) -> int:
        """Dead-letter copies not yet acknowledged (the shutdown drain waits for them)."""
        return self._dlq.pending if self._dlq is not None else 0

    def handle(
        self,
        record: RecordLike,
        headers: list[tuple[str, bytes]],
        done: Callable[[], None],
        committed: bool = False,
    ) -> None:
        """A record cannot be delivered; `headers` from `error_headers` say why. `done`
        acks it; `committed`: its offset is committed already (a failed job item)."""
        topic = str(record.topic())
        partition = int(record.partition() or 0)
        offset = int(record.offset() or 0)
        why = {k.removeprefix(H): v.decode(errors="replace") for k, v in headers}
        stage, reason = why.get("stage", "?"), why.get("reason", "?")
        if self._dlq is not None:
            counted = self._m.dead_letters.labels(topic, reason)

            def acknowledged() -> None:
                counted.inc()
                done()

            self._dlq.send(record, headers, acknowledged)
            return
        if self.policy == "drop" or committed:
            # A failed job item's offset is committed already: it cannot be held.
            self._m.records_dropped.labels(topic, stage, reason).inc()
            self._drops.dropped(topic, partition, offset, stage, reason, why.get("message", ""))
            done()
            return
        held = self.halted.get((topic, partition))
        if held is None or offset < held:
            self.halted[(topic, partition)] = offset
            self.new_holds = True
        log.error(
            "record cannot be delivered and dead_letter.on_error is 'stop': its partition "
            "is held at it and nothing past it is committed (set dead_letter.topic, or "
            "on_error: drop, and restart)",
            extra={"topic": topic, "partition": partition, "offset": offset,
                   "stage": stage, "reason": reason, "detail": why.get("message", "")},
        )
        self._update_health()

    def held_past(self, topic: str, partition: int, offset: int) -> bool:
        """An event of a held partition after the record it is held at (not to be sent)."""
        held = self.halted.get((topic, partition))
        return held is not None and offset > held

    def release(self, parts: Iterable[tuple[str, int]]) -> None:
        """Revoked partitions are no longer held here (the next owner meets the record)."""
        for part in parts:
            self.halted.pop(part, None)
        self._update_health()

    def poll(self) -> None:
        """Loop thread, every turn: the dead-letter producer's reports and retries."""
        if self._dlq is not None:
            self._dlq.poll()
            self._m.dead_letter_pending.set(self._dlq.pending)
            self._m.dead_letter_failing.set(self._dlq.failing)
            self._update_health()

    def flush(self, timeout: float) -> int:
        """At shutdown: wait for the copies; returns how many are not acknowledged."""
        self._drops.flush()
        return self._dlq.flush(timeout) if self._dlq is not None else 0

    def _update_health(self) -> None:
        self._m.records_halted.set(len(self.halted))
        if self.halted:
            first = ", ".join(f"{t}[{p}]@{o}" for (t, p), o in sorted(self.halted.items())[:5])
            self._health.blocked = (
                f"held at a bad record (dead_letter.on_error: stop): {first}"
            )
            return
        wait = self._dlq.oldest_wait() if self._dlq is not None else 0.0
        if wait > self._unready_after:
            self._health.blocked = (
                f"dead-letter copies unacknowledged for {wait:.0f}s "
                f"({self._dlq.failing if self._dlq else 0} failing)"
            )
        else:
            self._health.blocked = None
