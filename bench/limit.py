"""The floor: a minimal consumer that only reads and parses, for comparison.

`python -m bench.limit --bootstrap B --topic T --group G --expect N` joins the group,
consumes in batches of 1,000 and `orjson.loads` every value until it has read N
records, then prints one JSON line (times are wall clock, `time.time()`):
{"assigned": t, "first": t, "done": t, "records": n}.
Exit code 3 if the deadline passes first. bench.run measures its CPU and memory.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import orjson
from confluent_kafka import Consumer


def consumer_config(bootstrap: str, group: str) -> dict[str, Any]:
    """Group settings shared by the limit and the naive peer (tansu joins in ~3 s)."""
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
    }


def subscribe(bootstrap: str, group: str, topic: str) -> tuple[Consumer, list[float]]:
    """A consumer subscribed to `topic`, and the list its assignment time is appended to.

    Shared by the programs bench.run measures (this one, the naive peer, the lean
    forwarder), so that all of them start their clock the same way."""
    assigned: list[float] = []
    consumer = Consumer(consumer_config(bootstrap, group))
    consumer.subscribe([topic], on_assign=lambda c, p: assigned.append(time.time()))
    return consumer, assigned


def past_deadline(name: str, deadline: float, read: int, expect: int) -> bool:
    """True (and says so on stderr) once `deadline` (time.monotonic) has passed."""
    if time.monotonic() <= deadline:
        return False
    print(f"{name}: read {read} of {expect} before the deadline", file=sys.stderr)
    return True


def print_result(assigned: list[float], first: float, done: float, read: int,
                 **extra: int) -> None:
    """The one JSON line bench.run reads from a measured program's stdout."""
    result = {"assigned": assigned[0] if assigned else first, "first": first, "done": done,
              "records": read, **extra}
    print(orjson.dumps(result).decode(), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.limit")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds")
    args = parser.parse_args(argv)

    consumer, assigned = subscribe(args.bootstrap, args.group, args.topic)
    loads = orjson.loads
    read = 0
    first = 0.0
    deadline = time.monotonic() + args.deadline
    try:
        while read < args.expect:
            if past_deadline("limit", deadline, read, args.expect):
                return 3
            msgs = consumer.consume(1000, 0.5)
            if not msgs:
                continue
            if not first:
                first = time.time()
            for msg in msgs:
                if msg.error() is not None:
                    continue
                value = msg.value()
                if value is not None:
                    loads(value)
                read += 1
        done = time.time()
    finally:
        consumer.close()
    print_result(assigned, first, done, read)
    return 0


if __name__ == "__main__":
    sys.exit(main())
