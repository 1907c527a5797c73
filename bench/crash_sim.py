"""What a SIGKILL would re-send, at every instant of a simulated run of `DeliveryCore`.

Run: `python -m bench.crash_sim [--latency-ms 100] [--confirm-ms 50]`. A pure,
discrete-time simulation (5 ms steps), no broker or HTTP: a backlog of one-event records
over 6 partitions and 4,000 customers, requests accepted `--latency-ms` after dispatch,
an asynchronous commit stored by the broker `--confirm-ms` after it was handed. The loop
turn is the pipeline's order: dispatch, read (unless held back), collect, dispatch,
commit. *Re-sent on a kill at t* = events in requests under way + events accepted at
offsets at or above the partition's stored commit. Prints the worst instant against
the configured bound. Shows the mechanism docs/core.md describes; it is not the crash
test (tests/integration/test_delivery_crash.py). The pre-core check this compared
against (`Pipeline._can_send` over `Windower` + `OffsetTracker`) was removed with those
modules; its figures stay in docs/core.md as history.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import deque
from dataclasses import dataclass, field

from connector.core import Batch as CoreBatch
from connector.core import CoreSettings, DeliveryCore, Run

TOPIC = "orders"
PARTITIONS = 6
STEP = 0.005
CONSUME = 1000


@dataclass
class Broker:
    """Commits handed at t are stored at t + delay; `stored` is what a restart reads."""

    delay: float
    first_delay: float = 0.0  # the first commit of a fresh consumer (tansu: ~3 s)
    stored: dict[int, int] = field(default_factory=dict)
    queue: deque[tuple[float, int, int]] = field(default_factory=deque)

    def hand(self, now: float, p: int, offset: int) -> None:
        first = max((due for due, _p, _o in self.queue), default=0.0)
        delay = self.first_delay if not self.stored and self.first_delay else self.delay
        self.queue.append((max(first, now + delay), p, offset))  # answered in order

    def tick(self, now: float) -> list[tuple[int, int]]:
        done = []
        while self.queue and self.queue[0][0] <= now:
            _, p, o = self.queue.popleft()
            self.stored[p] = max(self.stored.get(p, 0), o)
            done.append((p, o))
        return done


class Source:
    def __init__(self, customers: int, seed: int) -> None:
        self.rnd = random.Random(seed)
        self.customers = customers
        self.next = [0] * PARTITIONS
        self.turn = 0

    def consume(self) -> list[tuple[int, int, str]]:
        """(partition, offset, customer) in runs of one partition."""
        out = []
        for _ in range(CONSUME // 200):
            p = self.turn % PARTITIONS
            self.turn += 1
            for _ in range(200):
                out.append((p, self.next[p], f"c-{self.rnd.randrange(self.customers)}"))
                self.next[p] += 1
        return out


def new_broker(args: argparse.Namespace) -> Broker:
    return Broker(args.confirm_ms / 1000, args.first_confirm_ms / 1000)


def resend(in_flight_events: int, accepted: dict[int, list[int]], stored: dict[int, int]
           ) -> int:
    n = in_flight_events
    for p, offsets in accepted.items():
        start = stored.get(p, 0)
        n += sum(1 for o in offsets if o >= start)
    return n


def prune(accepted: dict[int, list[int]], stored: dict[int, int]) -> None:
    for p, offsets in accepted.items():
        start = stored.get(p, 0)
        accepted[p] = [o for o in offsets if o >= start]


def core(args: argparse.Namespace) -> tuple[int, int]:
    c = DeliveryCore(CoreSettings(max_items=args.max_items, linger_s=0.05,
                                  max_in_flight=args.max_in_flight, resend_bound=args.bound))
    source, broker = Source(args.customers, args.seed), new_broker(args)
    flight: list[tuple[float, CoreBatch]] = []
    accepted: dict[int, list[int]] = {p: [] for p in range(PARTITIONS)}
    worst, sent = 0, 0
    now = 0.0

    def dispatch() -> None:
        while (batch := c.next_batch(now)) is not None:
            flight.append((now + args.latency_ms / 1000, batch))

    while sent < args.events:
        dispatch()
        if c.may_read():
            runs: list[Run] = []
            rows: list[tuple[int, str, str, object, int]] = []
            last = -1
            for p, off, cid in source.consume():
                if p != last and rows:
                    runs.append(Run(TOPIC, last, rows))
                    rows = []
                last = p
                rows.append((off, cid, "buy", {}))
            runs.append(Run(TOPIC, last, rows))
            c.ingest(runs, now)
        for due, batch in [f for f in flight if f[0] <= now]:
            flight.remove((due, batch))
            c.complete(batch, now)
            for item in batch.items:
                for _t, p, off, _n in item.refs():
                    accepted[p].append(off)
            sent += batch.events
        dispatch()
        for _t, p, o in c.commits():
            broker.hand(now, p, o)
        now += STEP
        for p, o in broker.tick(now):
            c.confirmed(TOPIC, p, o)
        prune(accepted, broker.stored)
        worst = max(worst, resend(c.in_flight_events, accepted, broker.stored))
    return worst, int(sent / now)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.crash_sim", description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=4_000)
    parser.add_argument("--max-items", type=int, default=500)
    parser.add_argument("--max-in-flight", type=int, default=4)
    parser.add_argument("--bound", type=int, default=6_000)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--confirm-ms", type=float, default=50.0)
    parser.add_argument("--first-confirm-ms", type=float, default=0.0,
                        help="the first commit's delay (bench.commit_latency: ~3000 on tansu)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    print(f"bound {args.bound}, max_in_flight {args.max_in_flight}, max_items "
          f"{args.max_items}, request {args.latency_ms:g} ms, commit stored after "
          f"{args.confirm_ms:g} ms (the first after {args.first_confirm_ms:g} ms)")
    worst, rate = core(args)
    print(f"  DeliveryCore worst re-send on a kill {worst:6,}  "
          f"({'within' if worst <= args.bound else 'OVER'} the bound), {rate:,} events/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
