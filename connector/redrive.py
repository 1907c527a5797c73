"""`gameball-connector redrive`: send dead-lettered records again, through the current
mapping and the same delivery core as `run`.

Reads the dead-letter topic with its own consumer group (`<kafka.group_id>-redrive` by
default), partitions assigned (no group join), from the group's committed offsets up to
the end offsets the topic had at start (`--follow`: no end). Each copy's original record
(`letters.Letter`) is mapped with the current config; its events go through the
`Windower` (per-customer rules), the `Sender` (rate limit, retries, bisecting) and the
`OffsetTracker`, so the group's offsets are committed only past copies whose events were
accepted or written back. A record that fails again goes back to the dead-letter topic
with `gameball.error.attempt` + 1; copies at `--max-attempts` are reported, not sent.
Runbook: docs/alerts.md; design and limits: docs/delivery.md ("Re-driving dead letters").
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, TextIO

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from connector.config import Settings
from connector.letters import Letter, Selection, parse_time
from connector.records import ConfigError, Event, RecordError

if TYPE_CHECKING:
    from connector.mapping import Mapper

log = logging.getLogger("connector.redrive")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
END_PROBE_S = 10.0  # how long reading the end of one partition may take


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="the connector's config file")
    parser.add_argument("--topic", help="dead-letter topic (default: dead_letter.topic)")
    parser.add_argument("--group", help="consumer group (default: <kafka.group_id>-redrive)")
    parser.add_argument("--reason", action="append", default=[],
                        help="only copies with this gameball.error.reason (repeatable)")
    parser.add_argument("--route", action="append", default=[],
                        help="only copies with this gameball.error.route (repeatable)")
    parser.add_argument("--since", help="only copies dead-lettered at or after this UTC time")
    parser.add_argument("--until", help="only copies dead-lettered before this UTC time")
    parser.add_argument("--from-offset", type=int, default=None,
                        help="start every partition here instead of the group's position")
    parser.add_argument("--to-offset", type=int, default=None,
                        help="stop every partition before this offset")
    parser.add_argument("--max-attempts", type=int, default=3,
                        help="copies that failed this often are reported, not sent (default 3)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print what would be sent; send and commit nothing")
    parser.add_argument("--follow", action="store_true",
                        help="keep running past the end offsets until SIGTERM/SIGINT")


def end_offsets(consumer: Consumer, topic: str, partitions: list[int]) -> dict[int, int]:
    """The true end offset of each partition, read rather than listed.

    tansu lists a partition's end as its last batch's base offset + 1 (wrong after
    multi-record batches), but its fetch answers carry the right high watermark: read
    from one before the listed end and take the offset of the end-of-partition event.
    """
    listed = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
              for p in partitions}
    consumer.assign([TopicPartition(topic, p, max(lo, hi - 1)) for p, (lo, hi) in listed.items()])
    ends: dict[int, int] = {}
    deadline = time.monotonic() + END_PROBE_S
    while len(ends) < len(partitions):
        if time.monotonic() > deadline:
            raise RuntimeError(f"cannot read the end of {topic}: no answer for "
                               f"partitions {sorted(set(partitions) - set(ends))}")
        msg: Any = consumer.poll(0.2)  # Any: confluent-kafka types every field optional
        if msg is not None and msg.error() is not None and _is_eof(msg.error()):
            ends[msg.partition()] = max(msg.offset(), listed[msg.partition()][1])
    consumer.unassign()
    return ends


def _is_eof(error: KafkaError) -> bool:
    return bool(error.code() == KafkaError._PARTITION_EOF)


class Redrive:
    """One run over the dead-letter topic. Built and run once by `run(args)`."""

    def __init__(self, settings: Settings, mapper: Mapper, args: argparse.Namespace,
                 topic: str, out: TextIO) -> None:
        self.settings = settings
        self.mapper = mapper
        self._args = args
        self.topic = topic
        self.group = args.group or f"{settings.kafka.group_id}-redrive"
        self._out = out
        self._select = Selection(
            reasons=args.reason, routes=args.route,
            since_ms=parse_time(args.since) if args.since else None,
            until_ms=parse_time(args.until) if args.until else None,
            max_attempts=args.max_attempts,
        )
        self.counts: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self._done: dict[int, bool] = {}  # partition -> read up to its end
        self._ends: dict[int, int] = {}

    def consumer_config(self) -> dict[str, Any]:
        from connector.source import consumer_config

        conf = consumer_config(self.settings)
        conf.pop("statistics.interval.ms", None)
        conf.update({"group.id": self.group, "enable.partition.eof": True,
                     "auto.offset.reset": "earliest"})
        return conf

    def run(self, stop: threading.Event) -> None:
        """Read, select, map, deliver (unless a dry run), commit; returns when done."""
        consumer = Consumer(self.consumer_config())
        try:
            meta = consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
            if meta is None or meta.error is not None or not meta.partitions:
                raise RuntimeError(f"dead-letter topic {self.topic} does not exist")
            partitions = sorted(meta.partitions)
            if not self._args.follow:
                self._ends = end_offsets(consumer, self.topic, partitions)
                if self._args.to_offset is not None:
                    self._ends = {p: min(e, self._args.to_offset) for p, e in self._ends.items()}
            starts = self._starts(consumer, partitions)
            log.info("redrive started", extra={
                "topic": self.topic, "group": self.group, "dry_run": self._args.dry_run,
                "from": {p: o if o >= 0 else "beginning" for p, o in starts.items()},
                "to": self._ends or "follow"})
            active = []
            for p in partitions:
                if self._ends and starts[p] >= 0 and starts[p] >= self._ends[p]:
                    self._done[p] = True
                else:
                    self._done[p] = False
                    active.append(TopicPartition(self.topic, p, starts[p]))
            consumer.assign(active)
            if self._args.dry_run:
                self._dry_run(consumer, stop)
            else:
                from connector.redrive_delivery import Delivering

                Delivering(self, consumer).run(stop)
        finally:
            consumer.close()

    def _starts(self, consumer: Consumer, partitions: list[int]) -> dict[int, int]:
        if self._args.from_offset is not None:
            return dict.fromkeys(partitions, self._args.from_offset)
        tps = consumer.committed([TopicPartition(self.topic, p) for p in partitions], timeout=10)
        return {tp.partition: tp.offset if tp.offset >= 0 else OFFSET_BEGINNING for tp in tps}

    def finished(self) -> bool:
        """Every partition was read up to its end (never with --follow)."""
        return bool(self._ends) and all(self._done.values())

    def letters(self, consumer: Consumer, timeout: float) -> list[Letter]:
        """The next consumed copies up to the end offsets; partitions at their end pause."""
        if self.finished():
            return []
        out: list[Letter] = []
        msgs: list[Any] = consumer.consume(500, timeout)  # Any: see end_offsets
        for msg in msgs:
            p = msg.partition()
            if msg.error() is not None:
                if _is_eof(msg.error()):
                    if self._ends and msg.offset() >= self._ends[p]:
                        self._reached(consumer, p)
                else:
                    log.warning("kafka: %s", msg.error().str())
                continue
            if self._done.get(p) or (self._ends and msg.offset() >= self._ends[p]):
                self._reached(consumer, p)  # past the end: not read, not committed
                continue
            out.append(Letter.read(msg))
            self.counts["read"] += 1
            if self._ends and msg.offset() + 1 >= self._ends[p]:
                self._reached(consumer, p)
        return out

    def _reached(self, consumer: Consumer, p: int) -> None:
        if not self._done.get(p):
            self._done[p] = True
            consumer.pause([TopicPartition(self.topic, p)])

    def skip_reason(self, letter: Letter) -> str | None:
        """Why `letter` is not sent (counted; copies at --max-attempts also reported)."""
        why = self._select.why_not(letter)
        if why is not None:
            self.skipped[why] += 1
            if why == "max_attempts":
                self.report({"max_attempts": letter.attempt, "dead_letter": letter.where(),
                             "original": letter.origin(), "reason": letter.reason})
        return why

    def report(self, line: dict[str, Any]) -> None:
        self._out.write(orjson.dumps(line).decode() + "\n")
        self._out.flush()

    def _dry_run(self, consumer: Consumer, stop: threading.Event) -> None:
        from connector.dryrun import render

        while not stop.is_set() and not self.finished():
            for letter in self.letters(consumer, 0.5):
                if self.skip_reason(letter) is not None:
                    continue
                result = self.mapper.map(letter)
                if isinstance(result, Event):
                    result = [result]
                if isinstance(result, list):
                    result = letter.resend(result)
                lines = render(result, None)
                for line in lines:
                    self.report({"dead_letter": letter.where(), "original": letter.origin(),
                                 "reason": letter.reason, "attempt": letter.attempt, **line})
                self.counts["would_send" if isinstance(result, list) else "would_fail"
                            if isinstance(result, RecordError) else "would_skip"] += 1

    def summary(self) -> str:
        c, skipped = self.counts, sum(self.skipped.values())
        why = ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items()))
        if self._args.dry_run:
            return (f"redrive --dry-run: read {c['read']}, would send {c['would_send']}, "
                    f"skipped {skipped + c['would_skip']}, would fail again "
                    f"{c['would_fail']}{f' ({why})' if why else ''}; nothing sent or committed")
        jobs = (f"; {c['job_failed']} failed later in their batch job (written back)"
                if c["job_failed"] else "")
        return (f"redrive: read {c['read']}, sent {c['sent']}, skipped {skipped}, "
                f"failed again {c['failed_again']}{f' ({why})' if why else ''}{jobs}")


def run(args: argparse.Namespace) -> int:
    """Called by the CLI's `redrive`: 0 done, 1 runtime failure, 2 bad config or usage."""
    from connector.config import load_checked
    from connector.logs import setup_logging

    try:
        settings, mapper = load_checked(args.config)
    except ConfigError as exc:
        print(exc.report(args.config), file=sys.stderr)
        return EXIT_CONFIG
    topic = args.topic or settings.dead_letter.topic
    if not topic:
        print("redrive: no dead-letter topic: set dead_letter.topic or pass --topic",
              file=sys.stderr)
        return EXIT_CONFIG
    if args.max_attempts < 1:
        print("redrive: --max-attempts must be at least 1", file=sys.stderr)
        return EXIT_CONFIG
    if args.follow and args.to_offset is not None:
        print("redrive: --follow never stops, so --to-offset cannot apply", file=sys.stderr)
        return EXIT_CONFIG
    # Logs on stderr: stdout is for the dry run's lines, reports and the summary.
    setup_logging(settings.logging.level, settings.logging.format, settings.secret_values(),
                  stream=sys.stderr)
    try:
        redrive = Redrive(settings, mapper, args, topic, sys.stdout)
    except ValueError as exc:
        print(f"redrive: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        redrive.run(stop)
    except Exception:
        log.exception("redrive failed")
        print(redrive.summary())
        return EXIT_FAILED
    print(redrive.summary())
    return EXIT_OK

