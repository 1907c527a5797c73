"""The dead-letter producer: a bad record's original key, value and headers, plus
headers that say what went wrong, where and when.

Idempotent producer with acks=all; the pipeline commits a dead-lettered record only
after the broker acknowledged its copy (`on_done` is called from `poll()`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from connector.config import Settings
from connector.logs import librdkafka_logger
from connector.records import RecordLike

log = logging.getLogger(__name__)

H = "gameball.error."  # every header we add starts with this


def error_headers(
    record: RecordLike,
    stage: str,
    reason: str,
    detail: str,
    route: str | None = None,
    extra: dict[str, Any] | None = None,
    now: float | None = None,
) -> list[tuple[str, bytes]]:
    """The headers appended to the original ones (pure; unit-tested)."""
    ts = time.time() if now is None else now
    out = [
        (H + "stage", stage.encode()),
        (H + "reason", reason.encode()),
        (H + "message", detail.encode()[:4096]),
        (H + "topic", str(record.topic()).encode()),
        (H + "partition", str(record.partition()).encode()),
        (H + "offset", str(record.offset()).encode()),
        (H + "time", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)).encode()),
    ]
    if route:
        out.append((H + "route", route.encode()))
    for key, value in (extra or {}).items():
        if value is not None:
            out.append((H + key, str(value).encode()))
    return out


class DeadLetters:
    """One producer for the connector's lifetime; `send` never blocks the poll loop."""

    def __init__(self, settings: Settings) -> None:
        topic = settings.dead_letter.topic
        if topic is None:
            raise ValueError("dead_letter.topic is not configured")
        self.topic = topic
        conf: dict[str, Any] = {"bootstrap.servers": settings.kafka.bootstrap_servers}
        # The consumer's security settings apply to the producer too (same cluster).
        conf.update(
            {
                k: v
                for k, v in settings.kafka.properties.items()
                if k.startswith(("security.", "sasl.", "ssl.", "client."))
            }
        )
        conf.update(settings.dead_letter.properties)
        conf.update({"enable.idempotence": True, "acks": "all", "linger.ms": 20})
        conf["logger"] = librdkafka_logger()  # JSON and masked, not raw stderr
        self._producer = Producer(conf)

    def send(
        self,
        record: RecordLike,
        headers: list[tuple[str, bytes]],
        on_done: Callable[[KafkaError | None], None],
    ) -> None:
        """Queue a copy of `record`; `on_done(None)` once the broker has it."""
        all_headers: list[tuple[str, str | bytes | None]] = list(record.headers() or [])
        all_headers.extend(headers)

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            on_done(err)

        while True:
            try:
                self._producer.produce(
                    self.topic,
                    value=record.value(),
                    key=record.key(),
                    headers=all_headers,
                    on_delivery=delivered,
                )
                return
            except BufferError:
                self._producer.poll(0.1)  # local queue full: let deliveries drain

    def poll(self) -> None:
        self._producer.poll(0)

    def flush(self, timeout: float) -> int:
        """Wait for outstanding copies; returns how many are still not acknowledged."""
        return int(self._producer.flush(timeout))
