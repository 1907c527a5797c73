"""Structured logging: JSON lines on stdout (or text on a terminal), secrets masked.

`setup_logging` is called once by the CLI, before anything logs, with every secret
value from the settings. Modules log with the standard library
(`logging.getLogger(__name__)`) and pass context as `extra={...}`; those fields become
JSON keys. See docs/logging.md for the line format and the events worth telling.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, TextIO

import orjson

MASK = "***"

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)

_HANDLER_MARK = "_gameball_connector_handler"


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The `extra=` fields of a record (used by both formatters)."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}


class SecretFilter(logging.Filter):
    """Replace every secret value in a record's message, fields and exception text.

    Attached to the handler by `setup_logging`, so it sees records of every logger.
    The record is rewritten in place (message pre-rendered, args dropped): later
    handlers and formatters never see the secret.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a secret containing another is masked whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def mask(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def _mask_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, bytes):
            return self.mask(value.decode("utf-8", "replace"))
        if isinstance(value, Mapping):
            return {self._mask_value(k): self._mask_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._mask_value(v) for v in value]
        if value is None or isinstance(value, bool | int | float):
            return value
        # Objects render through str() in the output anyway; mask that rendering.
        return self.mask(str(value))

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not raise out of the log call
            message = f"{record.msg!s} {record.args!r}"
        record.msg = self.mask(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.mask(record.exc_text)
            # The traceback objects may still hold the secret; only the masked text is kept.
            record.exc_info = None
        if record.stack_info:
            record.stack_info = self.mask(record.stack_info)
        for key, value in extra_fields(record).items():
            setattr(record, key, self._mask_value(value))
        return True


def _timestamp(record: logging.LogRecord) -> str:
    return (
        datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the extra fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            line.setdefault(key, value)  # the fixed keys win over an extra of the same name
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        # default=str: a field of an unknown type is shown, never crashes the log call.
        return orjson.dumps(line, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


class TextFormatter(logging.Formatter):
    """`ts LEVEL logger: msg key=value ...` for people reading a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        fields = extra_fields(record)
        if fields:
            text += " " + " ".join(f"{k}={_text_value(v)}" for k, v in fields.items())
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text += "\n" + record.exc_text
        if record.stack_info:
            text += "\n" + record.stack_info
        return text


def _text_value(value: Any) -> str:
    if isinstance(value, str):
        return value if value and " " not in value and "=" not in value else repr(value)
    if isinstance(value, dict | list):
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    return str(value)


def setup_logging(
    level: str,
    fmt: Literal["json", "text", "auto"],
    secrets: Iterable[str],
    stream: TextIO | None = None,
) -> None:
    """Install the connector's handler on the root logger (called once by the CLI).

    `fmt="auto"` picks text when the stream is a terminal, JSON otherwise. `secrets`
    are the raw secret values (API key, secret key, Kafka passwords); they are
    replaced by "***" wherever they would appear. Calling again replaces the handler.
    A wrong level or format raises ValueError before anything changes.
    """
    if fmt not in ("json", "text", "auto"):
        raise ValueError(f"logging format must be json, text or auto, not {fmt!r}")
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown logging level {level!r}")
    out = stream if stream is not None else sys.stdout
    if fmt == "auto":
        isatty = getattr(out, "isatty", None)
        fmt = "text" if callable(isatty) and isatty() else "json"

    handler = logging.StreamHandler(out)
    setattr(handler, _HANDLER_MARK, True)
    handler.addFilter(SecretFilter(secrets))
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())

    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _HANDLER_MARK, False):
            root.removeHandler(old)
            old.close()
    root.addHandler(handler)
    root.setLevel(numeric)
    # Warnings from libraries (urllib3, pydantic) go through the same handler.
    logging.captureWarnings(True)
    # So do uncaught exceptions, in the main thread or any other: one JSON line each,
    # masked, never a raw traceback on stderr.
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    logging.getLogger("connector").critical("uncaught exception", exc_info=(exc_type, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    logging.getLogger("connector").error(
        "uncaught exception in a thread",
        extra={"thread_name": args.thread.name if args.thread is not None else None},
        exc_info=args.exc_value,
    )


def librdkafka_logger() -> logging.Logger:
    """The logger the confluent-kafka clients are given (`logger=`): librdkafka's lines
    then go through the connector's handler (JSON, secrets masked) instead of stderr."""
    return logging.getLogger("librdkafka")


class RateLimitedLog:
    """Log a repeating condition at most once per `interval` seconds, with a count.

    Used by the pipeline for authentication failures (once a minute) and retry
    summaries: `warn("auth", "gameball rejected the api key", status=401)` logs the
    first call, then swallows calls until the interval is over; the next line it
    writes carries `repeated=N`, the number of calls swallowed since the last line.
    Thread-safe; the clock is injectable for tests.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warn(self, key: str, msg: str, **fields: Any) -> bool:
        return self._log(logging.WARNING, key, msg, fields)

    def error(self, key: str, msg: str, **fields: Any) -> bool:
        return self._log(logging.ERROR, key, msg, fields)

    def _log(self, level: int, key: str, msg: str, fields: dict[str, Any]) -> bool:
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            self._last[key] = now
            repeated = self._suppressed.pop(key, 0)
        # stacklevel 3: the record names the caller of warn()/error(), not this module.
        self._logger.log(level, msg, extra={**fields, "repeated": repeated}, stacklevel=3)
        return True

    def flush(self, level: int = logging.INFO, msg: str = "suppressed repeats") -> None:
        """Log the counts still swallowed (called at shutdown so none are lost)."""
        with self._lock:
            pending = {k: n for k, n in self._suppressed.items() if n}
            self._suppressed.clear()
        for key, count in pending.items():
            self._logger.log(level, msg, extra={"key": key, "repeated": count})
