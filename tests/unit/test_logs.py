"""connector.logs: JSON line shape, text format, secret masking, rate-limited logging."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from datetime import datetime

import orjson
import pytest

from connector.logs import RateLimitedLog, setup_logging

API_KEY = "gb-api-key-7f3a9c"
SECRET_KEY = "gb-secret-key-1d2e"


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    """Install the connector's JSON handler on a buffer; restore the root logger after."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    buf = io.StringIO()
    setup_logging("DEBUG", "json", [API_KEY, SECRET_KEY, ""], stream=buf)
    yield buf
    for handler in list(root.handlers):
        if handler not in saved_handlers:
            root.removeHandler(handler)
    root.setLevel(saved_level)
    logging.captureWarnings(False)


def lines(buf: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in buf.getvalue().splitlines()]


def test_json_line_has_ts_level_logger_msg_and_extra_fields(out: io.StringIO) -> None:
    logging.getLogger("connector.pipeline").info(
        "partitions assigned", extra={"partitions": ["orders-0", "orders-1"], "count": 2}
    )
    (line,) = lines(out)
    assert line["level"] == "INFO"
    assert line["logger"] == "connector.pipeline"
    assert line["msg"] == "partitions assigned"
    assert line["partitions"] == ["orders-0", "orders-1"]
    assert line["count"] == 2
    ts = datetime.fromisoformat(str(line["ts"]).replace("Z", "+00:00"))
    assert ts.tzinfo is not None
    assert list(line)[:4] == ["ts", "level", "logger", "msg"]  # readable in raw form


def test_each_record_is_exactly_one_line_even_with_newlines_and_exceptions(
    out: io.StringIO,
) -> None:
    log = logging.getLogger("t")
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        log.exception("failed\nwith newline")
    raw = out.getvalue().splitlines()
    assert len(raw) == 1
    line = orjson.loads(raw[0])
    assert line["level"] == "ERROR"
    assert "RuntimeError: boom" in str(line["exc"])


def test_level_filters_lower_records() -> None:
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    buf = io.StringIO()
    try:
        setup_logging("warning", "json", [], stream=buf)
        logging.getLogger("t").info("hidden")
        logging.getLogger("t").warning("shown")
    finally:
        for handler in list(root.handlers):
            if handler not in saved[0]:
                root.removeHandler(handler)
        root.setLevel(saved[1])
    assert [line["msg"] for line in lines(buf)] == ["shown"]


def test_secret_in_message_args_is_masked(out: io.StringIO) -> None:
    logging.getLogger("t").warning("using key %s and %s", API_KEY, SECRET_KEY)
    assert API_KEY not in out.getvalue() and SECRET_KEY not in out.getvalue()
    assert lines(out)[0]["msg"] == "using key *** and ***"


def test_secret_in_extra_fields_nested_is_masked(out: io.StringIO) -> None:
    logging.getLogger("t").error(
        "request failed",
        extra={
            "headers": {"apikey": API_KEY, "secretkey": SECRET_KEY},
            "url": f"https://api.example/?k={API_KEY}",
            "tries": [API_KEY, 3],
            "raw": SECRET_KEY.encode(),
        },
    )
    text = out.getvalue()
    assert API_KEY not in text and SECRET_KEY not in text
    (line,) = lines(out)
    assert line["headers"] == {"apikey": "***", "secretkey": "***"}
    assert line["url"] == "https://api.example/?k=***"
    assert line["tries"] == ["***", 3]


def test_secret_in_exception_text_is_masked(out: io.StringIO) -> None:
    try:
        raise ValueError(f"server echoed header apikey={API_KEY}")
    except ValueError:
        logging.getLogger("t").exception("send failed")
    assert API_KEY not in out.getvalue()
    assert "apikey=***" in str(lines(out)[0]["exc"])


def test_secret_in_object_field_is_masked(out: io.StringIO) -> None:
    class Conf:
        def __str__(self) -> str:
            return f"Conf(key={SECRET_KEY})"

    logging.getLogger("t").info("config", extra={"conf": Conf()})
    assert SECRET_KEY not in out.getvalue()
    assert lines(out)[0]["conf"] == "Conf(key=***)"


def test_bad_format_string_does_not_raise(out: io.StringIO) -> None:
    logging.getLogger("t").info("%d items", "not-a-number")
    assert "not-a-number" in str(lines(out)[0]["msg"])


def test_text_format_is_one_readable_line() -> None:
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    buf = io.StringIO()
    try:
        setup_logging("INFO", "text", [API_KEY], stream=buf)
        logging.getLogger("connector.source").info(
            "paused", extra={"partition": 3, "why": "buffer full", "key": API_KEY}
        )
    finally:
        for handler in list(root.handlers):
            if handler not in saved[0]:
                root.removeHandler(handler)
        root.setLevel(saved[1])
    text = buf.getvalue()
    assert text.count("\n") == 1
    assert "INFO" in text and "connector.source: paused" in text
    assert "partition=3" in text and "why='buffer full'" in text
    assert API_KEY not in text and "key=***" in text


def test_auto_picks_json_when_not_a_terminal_and_text_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    root = logging.getLogger()
    saved = list(root.handlers), root.level
    plain, tty = io.StringIO(), Tty()
    try:
        setup_logging("INFO", "auto", [], stream=plain)
        logging.getLogger("t").info("one")
        setup_logging("INFO", "auto", [], stream=tty)  # replaces the first handler
        logging.getLogger("t").info("two")
    finally:
        for handler in list(root.handlers):
            if handler not in saved[0]:
                root.removeHandler(handler)
        root.setLevel(saved[1])
    assert orjson.loads(plain.getvalue())["msg"] == "one"
    assert tty.getvalue().rstrip().endswith("t: two")
    assert not tty.getvalue().startswith("{")


def test_bad_level_or_format_is_rejected() -> None:
    with pytest.raises(ValueError, match="level"):
        setup_logging("LOUD", "json", [])
    with pytest.raises(ValueError, match="format"):
        setup_logging("INFO", "xml", [])  # type: ignore[arg-type]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_limited_log_logs_once_per_interval_with_a_count(out: io.StringIO) -> None:
    clock = FakeClock()
    limited = RateLimitedLog(logging.getLogger("connector.gameball"), 60.0, clock)
    assert limited.warn("auth", "authentication failed", status=401)
    for _ in range(5):
        clock.now += 10
        assert not limited.warn("auth", "authentication failed", status=401)
    assert limited.warn("other", "different condition")  # keys are independent
    clock.now += 10.5  # 60.5 s after the first line
    assert limited.warn("auth", "authentication failed", status=401)
    got = [(line["msg"], line.get("repeated")) for line in lines(out)]
    assert got == [
        ("authentication failed", 0),
        ("different condition", 0),
        ("authentication failed", 5),
    ]


def test_rate_limited_log_flush_reports_swallowed_repeats(out: io.StringIO) -> None:
    clock = FakeClock()
    limited = RateLimitedLog(logging.getLogger("t"), 60.0, clock)
    limited.warn("retry", "retrying")
    limited.warn("retry", "retrying")
    limited.warn("retry", "retrying")
    limited.flush()
    limited.flush()  # nothing left: no second summary
    got = lines(out)
    assert len(got) == 2
    assert got[1]["key"] == "retry" and got[1]["repeated"] == 2


def test_fixed_keys_win_over_extra_fields_of_the_same_name(out: io.StringIO) -> None:
    logging.getLogger("connector.jobs").warning("job done", extra={"level": "fake", "ts": 0})
    (line,) = lines(out)
    assert line["level"] == "WARNING" and line["ts"] != 0


def test_uncaught_exceptions_become_one_masked_json_line_each() -> None:
    """Nothing of the connector reaches stderr raw: an exception no one caught, in the
    main thread or another, is logged like every other line (and masked)."""
    import sys
    import threading

    root = logging.getLogger()
    saved = (list(root.handlers), root.level, sys.excepthook, threading.excepthook)
    buf = io.StringIO()
    try:
        setup_logging("INFO", "json", [API_KEY], stream=buf)

        def fail() -> None:
            raise RuntimeError(f"cannot use {API_KEY}")

        worker = threading.Thread(target=fail, name="sender_0")
        worker.start()
        worker.join()
        try:
            fail()
        except RuntimeError:
            sys.excepthook(*sys.exc_info())  # type: ignore[arg-type]
    finally:
        for handler in list(root.handlers):
            if handler not in saved[0]:
                root.removeHandler(handler)
        root.setLevel(saved[1])
        sys.excepthook, threading.excepthook = saved[2], saved[3]
        logging.captureWarnings(False)
    thread_line, main_line = lines(buf)
    assert thread_line["msg"] == "uncaught exception in a thread"
    assert thread_line["thread_name"] == "sender_0" and thread_line["level"] == "ERROR"
    assert main_line["msg"] == "uncaught exception" and main_line["level"] == "CRITICAL"
    for line in (thread_line, main_line):
        assert "RuntimeError: cannot use ***" in str(line["exc"])
    assert API_KEY not in buf.getvalue()


def test_librdkafka_lines_go_through_the_same_handler(out: io.StringIO) -> None:
    """What confluent-kafka calls on the logger it is given (`logger=`)."""
    from connector.logs import librdkafka_logger

    librdkafka_logger().log(logging.WARNING, "%s [%s] %s", "FAIL", "rdkafka#consumer-1",
                            f"sasl.password={SECRET_KEY}: connection refused")
    (line,) = lines(out)
    assert line["logger"] == "librdkafka" and line["level"] == "WARNING"
    assert line["msg"] == "FAIL [rdkafka#consumer-1] sasl.password=***: connection refused"
