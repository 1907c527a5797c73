"""The crash-exposure run of `make bench`: events re-sent after each SIGKILL at quota.

bench.run calls `run` with the at-quota connector config (Gameball's 100/s and
1,200/30 s enforced by the sandbox, 80 ms latency, the connector's defaults otherwise).
One connector process after another reads the same backlog with the same group; each
is SIGKILLed once it has delivered a random 2-6 x `batch.max_resend_events` events
(well past its first commit, so mid-stream) and the next one is started. The last one
is stopped with SIGTERM after the same amount. The sandbox keeps every accepted item in
order; `resent_per_kill` counts, for each kill, the events the next process delivered
that Gameball had already accepted before that kill: what a loyalty program would
reward twice. The bound is `batch.max_resend_events` (docs/core.md, "Crash exposure");
tests/integration/test_delivery_crash.py asserts it, this run only reports it.
"""

from __future__ import annotations

import bisect
import json
import random
import signal
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import dataset
from bench.procs import Measured
from bench.services import Sandbox
from connector.config import BatchSettings
from connector.localbroker import LocalBroker

KILL_AFTER = (2, 6)  # x bound: new events a process delivers before it is killed
PAGE = 50_000  # items per GET /_sandbox/items


@dataclass(frozen=True)
class Resent:
    """What the sandbox's items say about the kills (positions are item indexes)."""

    per_kill: list[int]  # events delivered after kill k that were accepted before it
    within: int  # events delivered twice without a kill between (should be 0)
    events: int  # every event delivered, re-sends included
    distinct: int


def order_number(order_id: str) -> int:
    """`ord-000000042` -> 42 (bench.dataset's order ids)."""
    return int(order_id[4:])


def resent_per_kill(items: Iterable[dict[str, Any]], boundaries: list[int]) -> Resent:
    """Count re-sends per kill from the sandbox's items, oldest first.

    `boundaries[k]` is the number of items stored when process k+1 started (after kill
    k+1's requests on the wire had landed). An event seen in segment s (items between
    two boundaries) that first appeared in an earlier segment was re-sent because of
    the kill that opened segment s.
    """
    first: dict[int, int] = {}  # order number -> segment of its first delivery
    per_kill = [0] * len(boundaries)
    within = events = 0
    for position, item in enumerate(items):
        segment = bisect.bisect_right(boundaries, position)
        for meta in item["events"].values():
            number = order_number(meta["order_id"])
            events += 1
            seen = first.get(number)
            if seen is None:
                first[number] = segment
            elif seen < segment:
                per_kill[segment - 1] += 1
            else:
                within += 1
    return Resent(per_kill, within, events, len(first))


def sandbox_items(url: str, total: int, page: int = PAGE) -> Iterator[dict[str, Any]]:
    """Every accepted item (GET /_sandbox/items in pages), oldest first."""
    for offset in range(0, total, page):
        with urllib.request.urlopen(f"{url}/_sandbox/items?offset={offset}&limit={page}",
                                    timeout=120) as resp:
            yield from json.loads(resp.read())


def resend_bound(config: dict[str, Any]) -> int:
    """The configured `batch.max_resend_events` (or its default), as the connector reads it."""
    return BatchSettings(**config.get("batch", {})).resend_limit


def _wait(check: Callable[[], bool], m: Measured | None, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if m is not None and not m.running():
            raise RuntimeError(f"{m.name} exited before {what}; see {m.log_path}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout:.0f}s")
        time.sleep(0.05)


def run(
    broker: LocalBroker,
    config_for: Callable[[str, str, str], dict[str, Any]],
    sandbox_flags: list[str],
    start: Callable[[str, dict[str, Any]], Measured],
    work: Path,
    *,
    kills: int,
    partitions: int,
    customers: int,
    seed: int,
    say: Callable[[str], None],
    timeout: float = 300.0,
) -> dict[str, Any]:
    """Produce a backlog, run kills+1 connector processes, count the re-sends.

    `config_for(sandbox url, topic, group)` is the at-quota connector config;
    `start(name, config)` starts `gameball-connector run` measured. RuntimeError or
    TimeoutError when a process dies on its own or stops delivering.
    """
    started = time.monotonic()
    rnd = random.Random(seed)
    topic = f"bench-crash-{rnd.getrandbits(32):08x}"
    group = f"bench-crash-{rnd.getrandbits(32):08x}"
    with Sandbox(work / "sandbox-crash.log", sandbox_flags).start() as sandbox:
        config = config_for(sandbox.url, topic, group)
        bound = resend_bound(config)
        lo, hi = KILL_AFTER
        targets = [rnd.randint(lo * bound, hi * bound) for _ in range(kills + 1)]
        # Re-sends read no new records; the last process may read ahead into its buffer.
        need = sum(targets) + 2 * bound + 25_000
        broker.create_topics([topic], partitions=partitions)
        say(f"crash: producing {need:,} records to {topic}")
        produced = dataset.produce(broker.bootstrap, topic, need, partitions, customers,
                                   seed + 2, timeout=600)
        boundaries: list[int] = []
        processes: list[dict[str, Any]] = []
        for k, target in enumerate(targets):
            before = sandbox.stats()
            m = start(f"crash{k}", config)
            t0 = time.monotonic()
            try:
                _wait(lambda b=before["events_accepted"], t=target:
                      sandbox.stats()["events_accepted"] >= b + t, m, timeout,
                      f"{target:,} events delivered by process {k}")
                last = k == kills
                if last:
                    usage = m.stop(60)
                else:
                    m.signal(signal.SIGKILL)
                    usage = m.wait(10)
            finally:
                m.stop(10)  # a no-op once reaped
            # requests already on the wire still land: count them in this process
            _wait(lambda: sandbox.stats()["in_flight"] == 0, None, 30,
                  "killed process's requests to land")
            after = sandbox.stats()
            if not last:
                boundaries.append(after["items_stored"])
            processes.append({
                "process": k,
                "ended_by": "SIGTERM" if last else "SIGKILL",
                "exit_code": usage.exit_code,
                "seconds": round(time.monotonic() - t0, 2),
                "events_delivered": after["events_accepted"] - before["events_accepted"],
                "target": target,
            })
            say(f"crash: process {k} delivered {processes[-1]['events_delivered']:,} "
                f"events in {processes[-1]['seconds']:.1f}s, ended by "
                f"{processes[-1]['ended_by']}")
        stats = sandbox.stats(arrivals=False)
        counted = resent_per_kill(sandbox_items(sandbox.url, stats["items_stored"]),
                                  boundaries)
    statuses = stats.get("requests", {})
    throttled = sum(codes.get("429", 0) for codes in statuses.values())
    return {
        "name": "crash",
        "kills": kills,
        "resend_bound": bound,
        "resent_per_kill": counted.per_kill,
        "worst_resent": max(counted.per_kill, default=0),
        "within_bound": all(n <= bound for n in counted.per_kill),
        "duplicates_without_kill": counted.within,
        "events_delivered": counted.events,
        "distinct_events": counted.distinct,
        "throttled": throttled,
        "processes": processes,
        "backlog": need,
        "produce_s": round(produced.seconds, 2),
        "seconds": round(time.monotonic() - started, 1),
    }
