"""The dead-letter producer: a bad record's original key, value and headers, plus
headers that say what went wrong, where and when.

Idempotent producer with acks=all; the pipeline commits a dead-lettered record only
after the broker acknowledged its copy (`on_done` is called from `poll()`, on the loop
thread). Nothing here raises into the loop: a copy `produce()` refuses or the broker
does not acknowledge is tried again from `poll()` with exponential backoff, for as long
as it takes; a copy too large for the producer is written with its value replaced by a
reference (`reference_value`). docs/delivery.md, "Faults and what the connector does".
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from connector.config import Settings
from connector.logs import RateLimitedLog, librdkafka_logger
from connector.records import ConfigError, RecordLike

log = logging.getLogger(__name__)

H = "gameball.error."  # every header we add starts with this
REPLACED = H + "value_replaced"  # present when the value is a reference, not the original
DEFAULT_MAX_BYTES = 1_000_000  # librdkafka's message.max.bytes default
# Room for the record batch's own framing: librdkafka counts it against message.max.bytes.
_OVERHEAD = 1024
# librdkafka gives up on a copy after 5 minutes by default; a shorter default lets the
# loop see the failure, count it and try again (overridable in dead_letter.properties).
_MESSAGE_TIMEOUT_MS = 30_000


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


def _size(data: bytes | str | None) -> int:
    if data is None:
        return 0
    return len(data.encode() if isinstance(data, str) else data)


def _sha256(data: bytes | str | None) -> str | None:
    if data is None:
        return None
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def copy_size(
    key: bytes | str | None,
    value: bytes | str | None,
    headers: list[tuple[str, str | bytes | None]],
) -> int:
    """Bytes of a copy as the producer counts them, near enough (pure)."""
    return _size(key) + _size(value) + sum(len(k) + _size(v) + 8 for k, v in headers)


def reference_value(record: RecordLike, with_key: bool = False) -> bytes:
    """What replaces a value too large for the producer: where the original lies and how
    to recognise it (pure). `with_key`: the key was replaced too."""
    value = record.value()
    ref: dict[str, Any] = {
        "topic": record.topic(),
        "partition": record.partition(),
        "offset": record.offset(),
        "size": _size(value),
        "sha256": _sha256(value),
    }
    if with_key:
        ref["key_size"] = _size(record.key())
        ref["key_sha256"] = _sha256(record.key())
    return orjson.dumps(ref)


class _Copy:
    """One record on its way to the dead-letter topic (loop thread only)."""

    __slots__ = ("attempts", "done", "gen", "headers", "record", "reference", "seq", "since")

    def __init__(
        self,
        seq: int,
        record: RecordLike,
        headers: list[tuple[str, bytes]],
        done: Callable[[], None],
        since: float,
    ) -> None:
        self.seq = seq
        self.record = record
        self.headers = headers
        self.done = done
        self.since = since  # first attempt: readiness counts from here
        self.attempts = 0
        self.gen = 0  # bumped when an attempt's report is to be ignored (`_renew`)
        self.reference = 0  # 0 original, 1 value replaced, 2 key and headers too


class DeadLetterHooks:
    """What the producer reports (metrics); the pipeline passes its Metrics' children."""

    def __init__(
        self,
        failed: Callable[[str], None] = lambda reason: None,
        replaced: Callable[[], None] = lambda: None,
    ) -> None:
        self.failed = failed  # an attempt failed, by reason (the error's name)
        self.replaced = replaced  # a copy was written as a reference


class DeadLetters:
    """One producer for the connector's lifetime; `send` and `poll` never raise and never
    block the poll loop."""

    def __init__(
        self,
        settings: Settings,
        hooks: DeadLetterHooks | None = None,
        clock: Callable[[], float] = time.monotonic,
        make_producer: Callable[[dict[str, Any]], Any] = Producer,
    ) -> None:
        """`make_producer`: builds the librdkafka producer from its properties (tests
        pass a stand-in to script `produce()` errors and delivery reports)."""
        s = settings.dead_letter
        if s.topic is None:
            raise ValueError("dead_letter.topic is not configured")
        self.topic = s.topic
        self._settings = s
        self._hooks = hooks or DeadLetterHooks()
        self._clock = clock
        conf: dict[str, Any] = {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "message.timeout.ms": _MESSAGE_TIMEOUT_MS,
        }
        # The consumer's security settings apply to the producer too (same cluster).
        conf.update(
            {
                k: v
                for k, v in settings.kafka.properties.items()
                if k.startswith(("security.", "sasl.", "ssl.", "client."))
            }
        )
        conf.update(s.properties)
        conf.update({"enable.idempotence": True, "acks": "all", "linger.ms": 20})
        conf["logger"] = librdkafka_logger()  # JSON and masked, not raw stderr
        self._conf = conf
        self.max_bytes = int(conf.get("message.max.bytes", DEFAULT_MAX_BYTES))
        self._make_producer = make_producer
        self._producer = make_producer(conf)
        self._seq = itertools.count()
        self._outstanding: dict[int, _Copy] = {}  # by seq: the first is the oldest
        self._retry: list[tuple[float, int, _Copy]] = []  # heap of (due, seq, copy)
        self._failing: set[int] = set()  # seqs whose last attempt failed
        self._fatal = False
        self._log = RateLimitedLog(log, 10.0)

    # --- start-up -----------------------------------------------------------------------

    def check_topic(self) -> None:
        """Start-up (the CLI, before consuming): the topic exists or is created now.
        Raises ConfigError naming `dead_letter.topic` when neither can be done."""
        timeout = self._settings.check_timeout_seconds
        admin_conf = {
            k: v for k, v in self._conf.items()
            if k.startswith(("bootstrap.", "security.", "sasl.", "ssl.", "client."))
        }
        admin = AdminClient(admin_conf)
        where = f"dead_letter.topic: {self.topic!r}"
        try:
            # Every topic: a metadata request naming the topic may auto-create it.
            meta = admin.list_topics(timeout=timeout)
        except KafkaException as exc:
            problem = f"{where}: cannot read the cluster's topics: {_name(exc)}"
            raise ConfigError([problem]) from None
        found = meta.topics.get(self.topic)
        if found is not None and found.error is None:
            return
        futures = admin.create_topics([NewTopic(self.topic, num_partitions=1)],
                                      operation_timeout=timeout, request_timeout=timeout)
        try:
            futures[self.topic].result(timeout=timeout)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                return
            raise ConfigError(
                [f"{where}: does not exist and cannot be created: {_name(exc)}"]
            ) from None
        except Exception as exc:
            raise ConfigError(
                [f"{where}: does not exist and cannot be created: {type(exc).__name__}"]
            ) from None
        log.info("dead-letter topic created", extra={"topic": self.topic})

    # --- the loop's calls -----------------------------------------------------------------

    def send(
        self,
        record: RecordLike,
        headers: list[tuple[str, bytes]],
        on_done: Callable[[], None],
    ) -> None:
        """Queue a copy of `record`; `on_done()` once the broker has it (from `poll`)."""
        copy = _Copy(next(self._seq), record, headers, on_done, self._clock())
        self._outstanding[copy.seq] = copy
        self._produce(copy)

    def poll(self) -> None:
        """Loop thread, every turn: delivery reports, then the copies due again."""
        self._producer.poll(0)
        if self._fatal:
            self._renew()
        now = self._clock()
        while self._retry and self._retry[0][0] <= now:
            _, _, copy = heapq.heappop(self._retry)
            self._produce(copy)

    @property
    def pending(self) -> int:
        """Copies not yet acknowledged by the broker."""
        return len(self._outstanding)

    @property
    def failing(self) -> int:
        """Copies whose last attempt failed (and that are not acknowledged since)."""
        return len(self._failing)

    def oldest_wait(self) -> float:
        """Seconds the oldest unacknowledged copy has waited (0: none); readiness."""
        for copy in self._outstanding.values():
            return self._clock() - copy.since
        return 0.0

    def flush(self, timeout: float) -> int:
        """Wait for outstanding copies; returns how many are still not acknowledged."""
        deadline = self._clock() + timeout
        while self._outstanding:
            left = deadline - self._clock()
            if left <= 0:
                break
            self._producer.flush(min(left, 0.1))
            self.poll()
        self._log.flush()
        return len(self._outstanding)

    # --- internals ------------------------------------------------------------------------

    def _produce(self, copy: _Copy) -> None:
        copy.attempts += 1
        record = copy.record
        key, value = record.key(), record.value()
        headers: list[tuple[str, str | bytes | None]] = list(record.headers() or [])
        if copy.reference == 0 and copy_size(key, value, [*headers, *copy.headers]) + (
            _OVERHEAD
        ) > self.max_bytes:
            copy.reference = 1
        if copy.reference:
            value = reference_value(record, with_key=copy.reference > 1)
            marker = b"key" if copy.reference > 1 else b"reference"
            if copy.reference > 1 or copy_size(key, value, headers) + _OVERHEAD > self.max_bytes:
                copy.reference, key, headers, marker = 2, None, [], b"key"
            headers.append((REPLACED, marker))
        headers.extend(copy.headers)

        gen = copy.gen

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if gen == copy.gen:
                self._delivered(copy, err)

        try:
            self._producer.produce(
                self.topic, value=value, key=key, headers=headers, on_delivery=delivered
            )
        except BufferError:  # librdkafka's queue is full: counted, not an error to log
            self._hooks.failed("_queue_full")
            self._again(copy, "_queue_full", 0.1)
        except KafkaException as exc:
            self._failed(copy, exc.args[0] if exc.args else None, exc)
        except Exception as exc:  # a producer in a state we did not foresee: try again
            self._failed(copy, None, exc)

    def _delivered(self, copy: _Copy, err: KafkaError | None) -> None:
        if err is None:
            self._outstanding.pop(copy.seq, None)
            if copy.seq in self._failing:
                self._failing.discard(copy.seq)
                if not self._failing:
                    log.info("dead-letter copies are acknowledged again",
                             extra={"topic": self.topic})
            if copy.reference:
                self._hooks.replaced()
            copy.done()
            return
        self._failed(copy, err, None)

    def _failed(self, copy: _Copy, err: KafkaError | None, exc: Exception | None) -> None:
        reason = err.name() if isinstance(err, KafkaError) else type(exc).__name__
        if isinstance(err, KafkaError) and err.fatal():
            self._fatal = True  # the producer is unusable: `poll` builds a new one
        if (
            isinstance(err, KafkaError)
            and err.code() == KafkaError.MSG_SIZE_TOO_LARGE
            and copy.reference < 2
        ):
            copy.reference += 1  # write it again, smaller, at once
            self._hooks.failed(reason.lower())
            self._again(copy, reason, 0.0)
            return
        self._hooks.failed(reason.lower())
        self._failing.add(copy.seq)
        backoff = min(
            self._settings.retry_max_backoff_ms,
            self._settings.retry_initial_backoff_ms * 2 ** min(copy.attempts - 1, 20),
        ) / 1000
        self._log.error(
            f"fail:{reason}",
            "dead-letter write failed: trying again; the record's offset is not committed "
            "until its copy is acknowledged",
            topic=self.topic, error=reason, detail=str(err if err is not None else exc),
            record=f"{copy.record.topic()}[{copy.record.partition()}]@{copy.record.offset()}",
            attempts=copy.attempts, retry_in_s=backoff, failing=len(self._failing),
        )
        self._again(copy, reason, backoff)

    def _again(self, copy: _Copy, _reason: str, delay: float) -> None:
        heapq.heappush(self._retry, (self._clock() + delay, copy.seq, copy))

    def _renew(self) -> None:
        """After a fatal producer error: a new producer; the old one's copies go again."""
        self._fatal = False
        old, self._producer = self._producer, self._make_producer(self._conf)
        log.error("dead-letter producer failed fatally: replaced by a new one",
                  extra={"topic": self.topic})
        queued = {seq for _, seq, _ in self._retry}
        for copy in self._outstanding.values():
            if copy.seq not in queued:
                copy.gen += 1  # the old producer's report on it is ignored
                self._again(copy, "fatal", 0.0)
        old.purge()
        old.poll(0)


def _name(exc: BaseException) -> str:
    err = exc.args[0] if exc.args else None
    if isinstance(err, KafkaError):
        return f"{err.name()}: {err.str()}"
    return type(exc).__name__
