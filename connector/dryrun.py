"""`gameball-connector map`: run the mapping on JSON lines from stdin, no Kafka, no Gameball.

Called by `connector.cli` (subcommand `map`) and as `python -m connector.dryrun`. Each
input line is one record value, or an envelope `{"@value": ..., "@key": ..., "@headers":
{...}, "@topic": ..., "@partition": ..., "@offset": ..., "@timestamp": ...}`; each output
line is one event, a skip or an error. Exit 0, 1 if an input line was not usable, 2 on a
config error. Format: docs/mapping.md, "Dry run".
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

from connector.config import Settings, load_checked
from connector.dryrun_input import INPUT_FORMATS, DumpError, records
from connector.mapping_schema import ENVELOPE_FIELDS
from connector.records import (
    ConfigError,
    Event,
    RecordError,
    RegistryUnavailable,
    Skip,
    SourceRecord,
)

ENVELOPE_KEYS = frozenset({"@value", *("@" + f for f in ENVELOPE_FIELDS)})

EXIT_OK, EXIT_INPUT, EXIT_CONFIG = 0, 1, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Called by the CLI to declare `map`'s options."""
    parser.add_argument("--config", required=True, help="YAML or JSON config file")
    parser.add_argument(
        "--topic",
        help="topic of the input records (default: the config's only topic; "
        "an envelope line's @topic wins)",
    )
    parser.add_argument(
        "--explain", action="store_true", help="add which route matched and why others did not"
    )
    parser.add_argument(
        "--input-format",
        choices=INPUT_FORMATS,
        default="lines",
        help="lines: JSON/text lines or envelopes (default); raw: a kcat -f '%%S:%%s' dump "
        "of wire-format values (avro, protobuf, json_schema); base64: one value per line",
    )


class InputError(ValueError):
    """An input line is an envelope with a bad field."""


def _raw(value: Any, what: str) -> bytes | None:
    # A string is the exact text of the bytes; anything else is JSON-encoded.
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8")
    try:
        return orjson.dumps(value)
    except TypeError as exc:  # pragma: no cover - parsed JSON always dumps
        raise InputError(f"{what}: {exc}") from None


def _timestamp_ms(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:  # naive text is UTC, as in the mapping's timestamp coercion
            return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp() * 1000)
    raise InputError("@timestamp must be epoch milliseconds or ISO-8601 text")


def _int(value: Any, what: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise InputError(f"{what} must be a non-negative integer")


def parse_line(line: str, topic: str | None, offset: int) -> SourceRecord:
    """One input line -> a record; raise InputError for a malformed envelope."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        doc = None
    if not (isinstance(doc, dict) and doc and set(doc) <= ENVELOPE_KEYS):
        if topic is None:
            raise InputError("no topic: pass --topic or give @topic in an envelope line")
        return SourceRecord(topic, line.encode("utf-8"), offset_=offset)
    headers_doc = doc.get("@headers") or {}
    if not isinstance(headers_doc, dict):
        raise InputError("@headers must be an object of name -> value")
    headers = tuple((str(k), _raw(v, f"@headers.{k}")) for k, v in headers_doc.items())
    record_topic = doc.get("@topic", topic)
    if not isinstance(record_topic, str) or not record_topic:
        raise InputError("no topic: pass --topic or give @topic in an envelope line")
    return SourceRecord(
        record_topic,
        _raw(doc.get("@value"), "@value"),
        partition_=_int(doc.get("@partition"), "@partition", 0),
        offset_=_int(doc.get("@offset"), "@offset", offset),
        key_=_raw(doc.get("@key"), "@key"),
        headers_=headers,
        timestamp_ms=_timestamp_ms(doc.get("@timestamp")),
    )


def default_topic(settings: Settings) -> str | None:
    """The one topic the config names, if it names exactly one."""
    names = set(settings.kafka.topics) | {r.topic for r in settings.mappings if r.topic}
    return names.pop() if len(names) == 1 else None


def render(
    result: list[Event] | Skip | RecordError, trace: list[dict[str, str]] | None
) -> list[dict[str, Any]]:
    """The output objects for one record's mapping result."""
    out: list[dict[str, Any]]
    if isinstance(result, list):
        out = [{"customerId": ev.customer_id, "events": {ev.name: ev.metadata}} for ev in result]
        if trace is not None:
            producing = [t["route"] for t in trace if t["outcome"] == "event"]
            for line, route in zip(out, producing, strict=True):
                line["route"] = route
    elif isinstance(result, Skip):
        out = [{"skip": result.reason}]
    else:
        error: dict[str, Any] = {"error": result.reason, "stage": result.stage}
        if result.route is not None:
            error["route"] = result.route
        error["detail"] = result.detail
        out = [error]
    if trace is not None:
        for line in out:
            line["explain"] = trace
    return out


def run(args: argparse.Namespace, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    """Called by the CLI: map every stdin line, print results; 2 on a bad config."""
    try:
        settings, mapper = load_checked(args.config)
    except ConfigError as exc:
        print(exc.report(args.config), file=sys.stderr)
        return EXIT_CONFIG
    topic = args.topic or default_topic(settings)
    try:
        if getattr(args, "input_format", "lines") != "lines":
            return _run_bytes(args, mapper, topic, stdin, stdout)
        return _run_lines(args, mapper, topic, stdin, stdout)
    except RegistryUnavailable as exc:
        print(f"schema registry unreachable: {exc.detail}", file=sys.stderr)
        return EXIT_INPUT


def _emit(mapper: Any, record: SourceRecord, explain: bool, stdout: TextIO) -> None:
    trace = None
    if explain:
        result, traces = mapper.explain(record)
        trace = [{"route": t.route, "outcome": t.outcome, "detail": t.detail} for t in traces]
    else:
        result = mapper.map(record)
    for obj in render(result, trace):
        stdout.write(orjson.dumps(obj).decode())
        stdout.write("\n")


def _run_bytes(
    args: argparse.Namespace, mapper: Any, topic: str | None, stdin: TextIO, stdout: TextIO
) -> int:
    """`--input-format raw|base64`: values as bytes, all of the given topic."""
    if topic is None:
        print("no topic: pass --topic", file=sys.stderr)
        return EXIT_INPUT
    data = stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read().encode()
    try:
        for record in records(args.input_format, data, topic):
            _emit(mapper, record, args.explain, stdout)
    except DumpError as exc:
        print(str(exc), file=sys.stderr)
        stdout.flush()
        return EXIT_INPUT
    stdout.flush()
    return EXIT_OK


def _run_lines(
    args: argparse.Namespace, mapper: Any, topic: str | None, stdin: TextIO, stdout: TextIO
) -> int:
    status = EXIT_OK
    count = 0
    for number, text in enumerate(stdin, start=1):
        line = text.rstrip("\r\n")
        if not line.strip():
            continue
        try:
            record = parse_line(line, topic, count)
        except InputError as exc:
            print(f"line {number}: {exc}", file=sys.stderr)
            stdout.write(orjson.dumps({"error": "invalid_input", "detail": str(exc)}).decode())
            stdout.write("\n")
            status = EXIT_INPUT
            continue
        count += 1
        _emit(mapper, record, args.explain, stdout)
    stdout.flush()
    return status


def main(argv: list[str] | None = None) -> int:
    """`python -m connector.dryrun`: the same as `gameball-connector map`."""
    parser = argparse.ArgumentParser(
        prog="gameball-connector map", description="dry-run the mapping on JSON lines from stdin"
    )
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except BrokenPipeError:  # `... | head`: the reader has seen enough
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
