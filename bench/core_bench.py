"""Delivery bookkeeping per event: `DeliveryCore` against today's Windower + OffsetTracker.

Run: `python -m bench.core_bench [--events N] [--customers C] [--repeats K]`. Both paths
get the same already-mapped events (what the mapper hands the loop: `Event`s with their
record for today's path, `Run`s of row tuples for the core; built before timing) in
consumed chunks of 1,000 records (runs of 200 of one partition, 6 partitions), and each
does the loop thread's work with Gameball accepting every request at once:

- today: per record `tracker.get` once a run and `read`, `ticket`, `Windower.add_many`;
  per dispatch `OffsetTracker.exposure` (the `_can_send` check) and `take`; per event
  `ticket.ack(offset)` and the timestamp (as `Pipeline._completed`); `complete`;
  `to_commit` + `mark_committed` + `confirm` once a chunk;
- core: `ingest`, `next_batch`, `complete`, `commits` + `confirmed` once a chunk;
- both again fed from the consumed messages (`from_messages`): today's `_ingest` loop
  against `map_chunk`, which builds the row tuples inside the timing (the mapper does
  not emit rows yet; an identity lookup of the `Event`s stands in for it).

Only public methods are called. Prints CPU (time.process_time) per event, best of K,
without and with the request bodies' encoding (`encode_batch` vs `Batch.body`, metadata
as dicts for both; then the core with metadata pre-encoded by the mapper as
`orjson.Fragment`, the encoding itself not timed).
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

from connector.core import CoreSettings, DeliveryCore, Run, map_chunk
from connector.gameball import encode_batch
from connector.offsets import OffsetTracker
from connector.records import Event, SourceRecord
from connector.window import Windower

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


def today(data: Data, encode: bool) -> Callable[[], int]:
    now_ms = int(time.time() * 1000)
    events = [Event(cid, name, meta, SourceRecord(TOPIC, None, p, off, timestamp_ms=now_ms))
              for p, off, cid, name, meta in data]

    def work() -> int:
        tracker = OffsetTracker()
        window = Windower(MAX_ITEMS, 0.0)
        done = 0
        for chunk in chunks(len(events)):
            last_p, part = -1, None
            mapped = []
            for i in chunk:
                ev = events[i]
                rec = ev.record
                p = rec.partition()
                if p != last_p or part is None:
                    part = tracker.get(TOPIC, p)
                    last_p = p
                part.read(rec.offset(), 1)
                ev.ticket = part
                mapped.append(ev)
            window.add_many(mapped, 0.0)
            while True:
                tracker.exposure()  # Pipeline._can_send
                batch = window.take(0.0, True)
                if batch is None:
                    break
                if encode:
                    encode_batch(batch)
                oldest = 1 << 62
                for item in batch.items:  # Pipeline._completed's per-event loop
                    for e in item.events.values():
                        r = e.record
                        e.ticket.ack(r.offset())
                        kind, ts = r.timestamp()
                        if ts < oldest and kind:
                            oldest = ts
                done += batch.event_count
                window.complete(batch, 0.0)
            for t, p, o in tracker.to_commit():
                tracker.mark_committed(t, p, o)
                tracker.confirm(t, p, o)
        return done

    return work


def core(data: Data, encode: bool, pre_encoded: bool = False) -> Callable[[], int]:
    now_ms = int(time.time() * 1000)
    runs: list[list[Run]] = []
    for chunk in chunks(len(data)):
        out: list[Run] = []
        rows: list[tuple[int, str, str, Any, int]] = []
        last_p = -1
        for i in chunk:
            p, off, cid, name, meta = data[i]
            if p != last_p and rows:
                out.append(Run(TOPIC, last_p, rows))
                rows = []
            last_p = p
            payload = orjson.Fragment(orjson.dumps(meta)) if pre_encoded else meta
            rows.append((off, cid, name, payload, now_ms))
        if rows:
            out.append(Run(TOPIC, last_p, rows))
        runs.append(out)

    def work() -> int:
        c = DeliveryCore(CoreSettings(max_items=MAX_ITEMS, linger_s=0.0, max_in_flight=8,
                                      resend_bound=2 * 8 * MAX_ITEMS))
        done = 0
        for chunk_runs in runs:
            c.ingest(chunk_runs, 0.0)
            while (batch := c.next_batch(0.0, True)) is not None:
                if encode:
                    batch.body()
                done += c.complete(batch, 0.0).accepted
            for t, p, o in c.commits():
                c.confirmed(t, p, o)
        return done

    return work


def from_messages(data: Data, use_core: bool) -> Callable[[], int]:
    """Both paths fed from consumed messages through the mapper's contract (an identity
    lookup of the `Event`s built before timing stands in for mapping): today's `_ingest`
    loop (`error`, `topic`, `partition`, `offset`, map, `read`, `ticket`) against
    `map_chunk` + `ingest` (which also builds one row tuple per event)."""
    now_ms = int(time.time() * 1000)
    records = [SourceRecord(TOPIC, None, p, off, timestamp_ms=now_ms) for p, off, *_ in data]
    events = {id(r): Event(cid, name, meta, r)
              for r, (_p, _o, cid, name, meta) in zip(records, data, strict=True)}

    def for_topic(_topic: str) -> Callable[[Any], Any]:
        return lambda rec: events[id(rec)]

    def work_core() -> int:
        c = DeliveryCore(CoreSettings(max_items=MAX_ITEMS, linger_s=0.0, max_in_flight=8,
                                      resend_bound=2 * 8 * MAX_ITEMS))
        done = 0
        for chunk in chunks(len(records)):
            c.ingest(map_chunk(records[chunk.start:chunk.stop], for_topic).runs, 0.0)
            while (batch := c.next_batch(0.0, True)) is not None:
                done += c.complete(batch, 0.0).accepted
            for t, p, o in c.commits():
                c.confirmed(t, p, o)
        return done

    def work_today() -> int:
        tracker = OffsetTracker()
        window = Windower(MAX_ITEMS, 0.0)
        done = 0
        for chunk in chunks(len(records)):
            mapped: list[Event] = []
            last_topic: str | None = None
            last_p, part, map_one = -1, None, None
            for msg in records[chunk.start:chunk.stop]:  # Pipeline._ingest, one event each
                if msg.error() is not None:
                    continue
                topic, p = msg.topic(), msg.partition()
                if p != last_p or topic != last_topic or part is None or map_one is None:
                    part = tracker.get(topic, p)
                    map_one = for_topic(topic)
                    last_topic, last_p = topic, p
                ev = map_one(msg)
                part.read(msg.offset(), 1)
                ev.ticket = part
                mapped.append(ev)
            window.add_many(mapped, 0.0)
            while True:
                tracker.exposure()
                batch = window.take(0.0, True)
                if batch is None:
                    break
                oldest = 1 << 62
                for item in batch.items:
                    for e in item.events.values():
                        r = e.record
                        e.ticket.ack(r.offset())
                        kind, ts = r.timestamp()
                        if ts < oldest and kind:
                            oldest = ts
                done += batch.event_count
                window.complete(batch, 0.0)
            for t, p, o in tracker.to_commit():
                tracker.mark_committed(t, p, o)
                tracker.confirm(t, p, o)
        return done

    return work_core if use_core else work_today


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
        ("today: Windower + OffsetTracker, per-event acks", today(data, False)),
        ("core: DeliveryCore, acks per segment", core(data, False)),
        ("today fed from messages (_ingest's loop)", from_messages(data, False)),
        ("core fed from messages (map_chunk: rows built)", from_messages(data, True)),
        ("today + encode_batch", today(data, True)),
        ("core + Batch.body (metadata dicts)", core(data, True)),
        ("core + Batch.body (orjson.Fragment metadata)", core(data, True, pre_encoded=True)),
    ]
    print(f"{args.events:,} events, {args.customers:,} customers, {PARTITIONS} partitions, "
          f"max_items {MAX_ITEMS}; CPU us/event, best (median) of {args.repeats}")
    for label, work in rows:
        b, m = best(work, args.events, args.repeats)
        print(f"  {label:<50} {b:6.3f} ({m:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
