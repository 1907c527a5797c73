"""Delivery bookkeeping per event: `DeliveryCore` on the loop thread's work.

Run: `python -m bench.core_bench [--events N] [--customers C] [--repeats K]`. Every path
gets the same already-mapped events (`Run`s of row tuples, built before timing) in
consumed chunks of 1,000 records (runs of 200 of one partition, 6 partitions), and does
the loop thread's work with Gameball accepting every request at once: `ingest`,
`next_batch`, `complete`, `commits` + `confirmed` once a chunk. Then with the request
bodies' encoding: `Batch.body` over metadata dicts, over metadata pre-encoded as
`orjson.Fragment` (the encoding itself not timed), and the sender's
`gameball.encode_request` over rows whose payload is the mapped `Event` (what the
pipeline sends). The walk from consumed messages to rows is the shell's
(`connector/ingest.py`); `bench.hotpath` measures it with the rest of the loop.

Only public methods are called. Prints CPU (time.process_time) per event, best (median)
of K. The "today" paths this compared against (`Windower` + `OffsetTracker`, per-event
acks) were removed with those modules; their last figures are in docs/core.md (history).
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

from connector.core import CoreSettings, DeliveryCore, Run
from connector.gameball import encode_request
from connector.records import Event, SourceRecord

TOPIC = "orders"
PARTITIONS = 6
RUN = 200
CONSUME_BATCH = 1000
MAX_ITEMS = 500
NAMES = ("place_order", "review", "visit")


Data = list[tuple[int, int, str, str, dict[str, Any]]]


def dataset(events: int, customers: int, seed: int) -> Data:
    """(partition, offset, customer, name, metadata) in consume order."""
    rnd = random.Random(seed)
    offsets = [0] * PARTITIONS
    out = []
    for i in range(events):
        p = (i // RUN) % PARTITIONS
        cid = f"c-{rnd.randrange(customers)}"
        name = NAMES[0] if rnd.random() < 0.8 else rnd.choice(NAMES[1:])
        meta = {"orderId": f"o-{i}", "amount": rnd.randint(1, 500), "currency": "EGP"}
        out.append((p, offsets[p], cid, name, meta))
        offsets[p] += 1
    return out


def chunks(n: int) -> list[range]:
    return [range(i, min(i + CONSUME_BATCH, n)) for i in range(0, n, CONSUME_BATCH)]


def core(data: Data, encode: bool, payload: str = "dict") -> Callable[[], int]:
    """`payload`: "dict" (metadata), "fragment" (metadata pre-encoded), "event" (the
    mapped `Event`, encoded by the sender's `encode_request`)."""
    now_ms = int(time.time() * 1000)
    runs: list[list[Run]] = []
    for chunk in chunks(len(data)):
        out: list[Run] = []
        rows: list[tuple[int, str, str, Any]] = []
        last_p = -1
        for i in chunk:
            p, off, cid, name, meta = data[i]
            if p != last_p and rows:
                out.append(Run(TOPIC, last_p, rows, timestamp_ms=now_ms))
                rows = []
            last_p = p
            value: Any = meta
            if payload == "fragment":
                value = orjson.Fragment(orjson.dumps(meta))
            elif payload == "event":
                value = Event(cid, name, meta, SourceRecord(TOPIC, None, p, off))
            rows.append((off, cid, name, value))
        if rows:
            out.append(Run(TOPIC, last_p, rows, timestamp_ms=now_ms))
        runs.append(out)

    def work() -> int:
        c = DeliveryCore(CoreSettings(max_items=MAX_ITEMS, linger_s=0.0, max_in_flight=8,
                                      resend_bound=2 * 8 * MAX_ITEMS))
        done = 0
        for chunk_runs in runs:
            c.ingest(chunk_runs, 0.0)
            while (batch := c.next_batch(0.0, True)) is not None:
                if encode:
                    if payload == "event":
                        encode_request(batch.items)
                    else:
                        batch.body()
                done += c.complete(batch, 0.0).accepted
            for t, p, o in c.commits():
                c.confirmed(t, p, o)
        return done

    return work


def best(work: Callable[[], int], n: int, repeats: int) -> tuple[float, float]:
    runs = []
    for _ in range(repeats):
        gc.collect()
        gc.disable()  # as the CLI runs the loop
        try:
            started = time.process_time()
            done = work()
            spent = time.process_time() - started
        finally:
            gc.enable()
        if done != n:
            raise SystemExit(f"lost events: {done} of {n}")
        runs.append(spent / n * 1e6)
    runs.sort()
    return runs[0], runs[len(runs) // 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.core_bench", description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    data = dataset(args.events, args.customers, args.seed)
    rows = [
        ("core: DeliveryCore, acks per segment", core(data, False)),
        ("core + Batch.body (metadata dicts)", core(data, True)),
        ("core + Batch.body (orjson.Fragment metadata)", core(data, True, "fragment")),
        ("core + encode_request (Event payloads, the sender)", core(data, True, "event")),
    ]
    print(f"{args.events:,} events, {args.customers:,} customers, {PARTITIONS} partitions, "
          f"max_items {MAX_ITEMS}; CPU us/event, best (median) of {args.repeats}")
    for label, work in rows:
        b, m = best(work, args.events, args.repeats)
        print(f"  {label:<50} {b:6.3f} ({m:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
