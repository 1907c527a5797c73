"""The crash-exposure run of `make bench`: what each SIGKILL at quota leaves to send again.

bench.run calls `run` with the at-quota connector config (Gameball's 100/s and
1,200/30 s enforced by the sandbox, 80 ms latency, the connector's defaults otherwise).
One connector process after another reads the same backlog with the same group; each
is SIGKILLed once it has delivered a random 2-6 x `batch.max_resend_events` events
(well past its first commit, so mid-stream) and the next one is started. The last one
is stopped with SIGTERM after the same amount.

Each process maps three more metadata fields into every event: `sent_by` (its index),
`partition` and `offset` (the record's), so the sandbox's items say who delivered what.
The bound (`batch.max_resend_events`, docs/core.md "Crash exposure") is a promise about
the killed process: what *it* had delivered that no commit the broker stored covers.
Per kill k the run counts (`count_resent`):
- `exposed`: events the process killed at k delivered, at or past the group's committed
  offset read just after the kill: what later processes must send again because of it;
- `resent_per_kill`: deliveries by later processes of events whose previous delivery
  came from the process killed at k (what actually came again; <= `exposed`);
- `carried`: events an *earlier* process delivered, still past that committed offset
  and not yet sent again by the process killed at k: they come again after kill k too,
  but they belong to the earlier kill's exposure;
- `resent_after_kill`: what the process started after kill k sent again of anything
  delivered before it (the figure reported before 2026-12-03: what it got to of the
  kill's own exposure, plus carried events).
tests/integration/test_delivery_crash.py asserts the bound; this run only reports it.
"""

from __future__ import annotations

import copy
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
from bench.services import CommitWatcher, Sandbox
from connector.config import BatchSettings
from connector.localbroker import LocalBroker

KILL_AFTER = (2, 6)  # x bound: new events a process delivers before it is killed
PAGE = 50_000  # items per GET /_sandbox/items
TAGS = {"sent_by": None, "partition": "@partition", "offset": "@offset"}


@dataclass(frozen=True)
class Resent:
    """What the sandbox's items and the committed offsets say about the kills."""

    per_kill: list[int]  # re-sends whose previous delivery came from the process killed at k
    exposed: list[int]  # events that process delivered past the offsets committed at kill k
    carried: list[int]  # events earlier processes delivered, still past them at kill k
    after_kill: list[int]  # re-sends by the process started after kill k (former figure)
    within: int  # events delivered twice by one process (should be 0)
    out_of_order: int  # deliveries stored after a later process's (should be 0)
    events: int  # every event delivered, re-sends included
    distinct: int


def tagged(config: dict[str, Any], process: int) -> dict[str, Any]:
    """`config` whose routes also map `sent_by` (= `process`), `partition` and `offset`."""
    out = copy.deepcopy(config)
    for route in out["mappings"]:
        route["metadata"].update({k: v or f"`{process}`" for k, v in TAGS.items()})
    return out


def deliveries(items: Iterable[dict[str, Any]]) -> Iterator[tuple[str, int, int, int]]:
    """(order id, sender, partition, offset) per accepted event of tagged items, in order."""
    for item in items:
        for meta in item["events"].values():
            yield (meta["order_id"], int(meta["sent_by"]), int(meta["partition"]),
                   int(meta["offset"]))


def count_resent(items: Iterable[dict[str, Any]], committed: list[dict[int, int]]) -> Resent:
    """Count re-sends per kill from tagged sandbox items, oldest first.

    `committed[k]` is the group's committed offset per partition (next to read; < 0:
    none) read after kill k, once its requests on the wire had landed. Processes run
    one after another, so each one's deliveries are taken in its index order (stable:
    arrival order within a process); `out_of_order` counts those stored after a later
    process's, which would mean a late request was missed.
    """
    kills = len(committed)
    per_kill, exposed, carried, after_kill = ([0] * kills for _ in range(4))
    within = out_of_order = events = 0
    rows = list(deliveries(items))
    top = -1
    for row in rows:
        out_of_order += row[1] < top
        top = max(top, row[1])
    rows.sort(key=lambda r: r[1])
    last: dict[str, tuple[int, int, int]] = {}  # order -> its latest (sender, partition, offset)

    def at_kill(k: int) -> None:
        floor = committed[k]
        for sender, partition, offset in last.values():
            if offset >= max(floor.get(partition, 0), 0):
                if sender == k:
                    exposed[k] += 1
                else:
                    carried[k] += 1

    current = 0
    for order, sender, partition, offset in rows:
        while current < sender:  # every delivery of process `current` is counted
            if current < kills:
                at_kill(current)
            current += 1
        events += 1
        previous = last.get(order)
        if previous is not None:
            if previous[0] < sender:
                per_kill[previous[0]] += 1
                after_kill[sender - 1] += 1
            else:
                within += 1
        last[order] = (sender, partition, offset)
    while current < kills:
        at_kill(current)
        current += 1
    return Resent(per_kill, exposed, carried, after_kill, within, out_of_order, events,
                  len(last))


def sandbox_items(url: str, total: int, page: int = PAGE) -> Iterator[dict[str, Any]]:
    """Every accepted item (GET /_sandbox/items in pages), oldest first."""
    for offset in range(0, total, page):
        with urllib.request.urlopen(f"{url}/_sandbox/items?offset={offset}&limit={page}",
                                    timeout=120) as resp:
            yield from json.loads(resp.read())


def resend_bound(config: dict[str, Any]) -> int:
    """The configured `batch.max_resend_events` (or its default), as the connector reads it."""
    return BatchSettings(**config.get("batch", {})).resend_limit


def core_view(log_path: Path) -> dict[str, Any] | None:
    """The process's own count just before its kill, from its /metrics (address from its
    log): `exposure` (the gauge, as of its last dispatch), `overruns`, and `confirmed`
    (the committed-offset gauge per partition: the commits the core saw confirmed).
    None when it cannot be read (a diagnostic, not a figure)."""
    url = None
    try:
        for line in log_path.read_bytes().splitlines():
            if line.startswith(b"{") and b"metrics and health served" in line:
                url = json.loads(line)["address"]
        if url is None:
            return None
        with urllib.request.urlopen(url, timeout=2) as resp:
            text = resp.read().decode()
    except (OSError, ValueError, KeyError):
        return None
    view: dict[str, Any] = {"exposure": None, "overruns": 0, "confirmed": {}}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == "gameball_connector_resend_exposure_events":
            view["exposure"] = int(float(value))
        elif name == "gameball_connector_resend_bound_overruns_total":
            view["overruns"] = int(float(value))
        elif name.startswith("gameball_connector_committed_offset{"):
            partition = name.split('partition="', 1)[1].split('"', 1)[0]
            view["confirmed"][int(partition)] = int(float(value))
    return view


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
        watcher = CommitWatcher(broker.bootstrap, group, topic, partitions)
        committed: list[dict[int, int]] = []
        processes: list[dict[str, Any]] = []
        try:
            for k, target in enumerate(targets):
                before = sandbox.stats()
                m = start(f"crash{k}", tagged(config, k))
                t0 = time.monotonic()
                view = None
                try:
                    _wait(lambda b=before["events_accepted"], t=target:
                          sandbox.stats()["events_accepted"] >= b + t, m, timeout,
                          f"{target:,} events delivered by process {k}")
                    last = k == kills
                    if last:
                        usage = m.stop(60)
                    else:
                        view = core_view(m.log_path)
                        m.signal(signal.SIGKILL)
                        usage = m.wait(10)
                finally:
                    m.stop(10)  # a no-op once reaped
                # requests already on the wire still land: they are this process's
                _wait(lambda: sandbox.stats()["in_flight"] == 0, None, 30,
                      "killed process's requests to land")
                after = sandbox.stats()
                entry: dict[str, Any] = {
                    "process": k,
                    "ended_by": "SIGTERM" if last else "SIGKILL",
                    "exit_code": usage.exit_code,
                    "seconds": round(time.monotonic() - t0, 2),
                    "events_delivered": after["events_accepted"] - before["events_accepted"],
                    "target": target,
                }
                if not last:
                    committed.append(watcher.committed())
                    entry["committed_after_kill"] = committed[-1]
                    entry["core_at_kill"] = view
                processes.append(entry)
                say(f"crash: process {k} delivered {entry['events_delivered']:,} "
                    f"events in {entry['seconds']:.1f}s, ended by {entry['ended_by']}")
        finally:
            watcher.close()
        stats = sandbox.stats(arrivals=False)
        counted = count_resent(sandbox_items(sandbox.url, stats["items_stored"]), committed)
    statuses = stats.get("requests", {})
    throttled = sum(codes.get("429", 0) for codes in statuses.values())
    return {
        "name": "crash",
        "kills": kills,
        "resend_bound": bound,
        "resent_per_kill": counted.per_kill,
        "exposed_per_kill": counted.exposed,
        "carried_per_kill": counted.carried,
        "resent_after_kill": counted.after_kill,
        "worst_resent": max(counted.per_kill, default=0),
        "worst_exposed": max(counted.exposed, default=0),
        "within_bound": all(n <= bound for n in counted.exposed),
        "duplicates_without_kill": counted.within,
        "out_of_order": counted.out_of_order,
        "events_delivered": counted.events,
        "distinct_events": counted.distinct,
        "throttled": throttled,
        "processes": processes,
        "backlog": need,
        "produce_s": round(produced.seconds, 2),
        "seconds": round(time.monotonic() - started, 1),
    }
