"""The runs of `python -m bench.run`: each program started, measured and checked.

bench.run calls one function per run (limit, connector, the peers, quota, crash) and
gets the figures of `measures` back; bench.profile and bench.hotpath reuse the
connector helpers. A run that does not finish or does not deliver everything raises
BenchError (or RuntimeError/TimeoutError from the services), which fails the benchmark.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from bench import crash_exposure, dataset
from bench.procs import Measured, Usage
from bench.services import (
    CommitWatcher,
    Sandbox,
    connector_config,
    log_lines,
    log_time,
)
from connector.localbroker import LocalBroker
from connector.sandbox.server import BATCH_PATH
from connector.sandbox.server import DEFAULT_API_KEY as API_KEY
from connector.sandbox.server import DEFAULT_SECRET_KEY as SECRET_KEY

QUOTA = {"per_second": 100, "per_30_seconds": 1200, "latency_ms": 80}


class BenchError(Exception):
    """A run did not finish or did not deliver everything; the message says which."""


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (["a", "b", "c"], YAML-parsed value); ValueError when malformed."""
    path, sep, value = text.partition("=")
    if not sep or not path or any(not part for part in path.split(".")):
        raise ValueError(f"--set {text!r}: expected PATH=VALUE such as batch.linger_ms=100")
    return path.split("."), yaml.safe_load(value)


def apply_overrides(config: dict[str, Any], overrides: list[tuple[list[str], Any]]) -> None:
    for path, value in overrides:
        node = config
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def connector_argv(config: Path) -> list[str]:
    script = Path(sys.executable).parent / "gameball-connector"
    if script.exists():
        return [str(script), "run", "--config", str(config)]
    return [sys.executable, "-m", "connector.cli", "run", "--config", str(config)]


def measures(name: str, m: Measured, usage: Usage, count: int, assigned: float | None,
             done: float) -> dict[str, Any]:
    """The figures every run reports (times are wall clock; CPU from the OS)."""
    start = assigned if assigned is not None else usage.started
    wall = max(done - start, 1e-6)
    cpu_start, cpu_done = m.cpu_at(start), m.cpu_at(done)
    active_cpu = (cpu_done - cpu_start) if cpu_start is not None and cpu_done is not None else None
    # The whole machine over the same window: the rest is what the sandbox, the broker
    # and anything else on the cores took beside the measured program.
    busy = m.machine_between(start, done)
    return {
        "name": name,
        "records": count,
        "wall_s": round(wall, 3),
        "total_wall_s": round(done - usage.started, 3),
        "records_per_s": round(count / wall, 1),
        "cpu_s": round(usage.cpu_s, 3),
        "cpu_user_s": round(usage.user_s, 3),
        "cpu_sys_s": round(usage.sys_s, 3),
        "cpu_s_per_million": round(usage.cpu_s / count * 1e6, 3) if count else None,
        "active_cpu_s": round(active_cpu, 3) if active_cpu is not None else None,
        "active_cpu_s_per_million": (
            round(active_cpu / count * 1e6, 3) if active_cpu is not None and count else None
        ),
        "machine_busy_cores": round(busy / wall, 2) if busy is not None else None,
        "others_cpu_s": (round(busy - active_cpu, 3)
                         if busy is not None and active_cpu is not None else None),
        "peak_rss_mb": round(usage.max_rss_mb, 1),
        "ru_maxrss_mb": round(usage.ru_maxrss_mb, 1),
        "exit_code": usage.exit_code,
    }


def child_result(path: Path) -> dict[str, Any]:
    lines = [ln for ln in path.read_text().splitlines() if ln.startswith("{")]
    if not lines:
        raise BenchError(f"no result line in {path}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# --- the runs ---------------------------------------------------------------------------


def run_limit(args: argparse.Namespace, bootstrap: str, topic: str, work: Path) -> dict[str, Any]:
    group = f"bench-limit-{uuid.uuid4().hex[:8]}"
    m = Measured("limit", [sys.executable, "-m", "bench.limit", "--bootstrap", bootstrap,
                           "--topic", topic, "--group", group, "--expect", str(args.records),
                           "--deadline", str(args.run_timeout)],
                 work / "limit.log", stdout_path=work / "limit.out").start()
    try:
        usage = m.wait(args.run_timeout + 30)
    finally:
        m.stop(5)
    if usage.exit_code != 0:
        raise BenchError(f"limit exited with {usage.exit_code}; see {work / 'limit.log'}")
    out = child_result(work / "limit.out")
    return measures("limit", m, usage, out["records"], out["assigned"], out["done"])


def run_peer(args: argparse.Namespace, name: str, module: str, bootstrap: str, topic: str,
             work: Path, python: str = sys.executable) -> dict[str, Any]:
    """A peer program (naive, lean or quix) against its own sandbox, until it read every
    record; the sandbox must have accepted every event. `python` runs the module (the
    Quix Streams peer has a venv of its own)."""
    group = f"bench-{name}-{uuid.uuid4().hex[:8]}"
    with Sandbox(work / f"sandbox-{name}.log").start() as sandbox:
        m = Measured(name, [python, "-m", module, "--bootstrap",
                            bootstrap, "--topic", topic, "--group", group, "--base-url",
                            sandbox.url, "--api-key", API_KEY, "--secret-key", SECRET_KEY,
                            "--expect", str(args.records), "--deadline",
                            str(args.run_timeout)],
                     work / f"{name}.log", stdout_path=work / f"{name}.out").start()
        try:
            usage = m.wait(args.run_timeout + 30)
        finally:
            m.stop(5)
        stats = sandbox.stats()
    if usage.exit_code != 0:
        raise BenchError(f"{name} exited with {usage.exit_code}; see {work / f'{name}.log'}")
    out = child_result(work / f"{name}.out")
    result = measures(name, m, usage, out["records"], out["assigned"], out["done"])
    result["events_accepted"] = stats["events_accepted"]
    if stats["events_accepted"] < args.records:
        raise BenchError(f"{name}: sandbox accepted {stats['events_accepted']} of "
                         f"{args.records} events")
    return result


def start_connector(name: str, config: dict[str, Any], work: Path,
                    argv: Callable[[Path], list[str]] = connector_argv) -> Measured:
    """Write the config and start `argv(config path)` with the sandbox's keys."""
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "GAMEBALL_API_KEY": API_KEY, "GAMEBALL_SECRET_KEY": SECRET_KEY}
    return Measured(name, argv(path), work / f"{name}.log", env=env).start()


DELIVERED_POLL_S = 0.01  # between looks at the sandbox and the committed offsets


def wait_delivered(m: Measured, sandbox: Sandbox, watcher: CommitWatcher, records: int,
                   ends: dict[int, int], timeout: float) -> tuple[float, float]:
    """Poll until the sandbox accepted `records` events and the group committed `ends`.

    Returns (all accepted, all committed) wall times; BenchError if the connector dies
    or the deadline passes. The peers time themselves, the connector is watched from
    here: the poll's lag counts against it, so the poll is short and the commits are
    read as soon as the acceptance is seen, not one poll later.
    """
    accepted_at: float | None = None
    deadline = time.monotonic() + timeout
    while True:
        if not m.running():
            raise BenchError(f"{m.name} exited early; see {m.log_path}")
        if time.monotonic() > deadline:
            raise BenchError(f"{m.name} did not finish within {timeout:.0f}s; see {m.log_path}")
        if accepted_at is None and sandbox.stats()["events_accepted"] >= records:
            accepted_at = time.time()
        if accepted_at is not None:
            committed = watcher.committed()
            if all(committed.get(p, -1) >= end for p, end in ends.items() if end):
                return accepted_at, time.time()
        time.sleep(DELIVERED_POLL_S)


def run_connector(args: argparse.Namespace, bootstrap: str, produced: dataset.Produced,
                  work: Path) -> dict[str, Any]:
    """Until the sandbox accepted every event and the committed offsets reach the ends."""
    group = f"bench-connector-{uuid.uuid4().hex[:8]}"
    with Sandbox(work / "sandbox-connector.log").start() as sandbox:
        config = connector_config(bootstrap, produced.topic, group, sandbox.url,
                                  {"enabled": False})
        apply_overrides(config, args.overrides)
        m = start_connector("connector", config, work)
        watcher = CommitWatcher(bootstrap, group, produced.topic, produced.partitions)
        try:
            accepted_at, done = wait_delivered(m, sandbox, watcher, args.records,
                                               produced.end_offsets, args.run_timeout)
        finally:
            watcher.close()
            usage = m.stop(60)
        stats = sandbox.stats(arrivals=True)
    result = measures("connector", m, usage, args.records,
                      log_time(m.log_path, "partitions assigned"), done)
    sends = [a for a in stats["arrivals"] if a["path"] == BATCH_PATH]
    result.update(
        events_accepted=stats["events_accepted"],
        requests=len(sends),
        last_accept_to_commit_s=round(done - accepted_at, 3),
        warnings=len(log_lines(m.log_path, "WARNING")),
        errors=len(log_lines(m.log_path, "ERROR")),
    )
    if usage.exit_code != 0:
        raise BenchError(f"connector exited with {usage.exit_code} after SIGTERM; "
                         f"see {m.log_path}")
    return result


QUOTA_FLAGS = ["--latency-ms", str(QUOTA["latency_ms"]), "--rate-per-second",
               str(QUOTA["per_second"]), "--rate-per-30-seconds", str(QUOTA["per_30_seconds"])]


def quota_config(args: argparse.Namespace, bootstrap: str, url: str, topic: str,
                 group: str) -> dict[str, Any]:
    """The connector config at Gameball's limits (the quota and crash runs)."""
    config = connector_config(bootstrap, topic, group, url,
                              {"enabled": True, "per_second": QUOTA["per_second"],
                               "per_30_seconds": QUOTA["per_30_seconds"]})
    apply_overrides(config, args.overrides)
    return config


def run_quota(args: argparse.Namespace, broker: LocalBroker, work: Path) -> dict[str, Any]:
    """The connector at Gameball's limits, on a backlog that cannot run dry in time."""
    warm_up = args.quota_warm_up
    total_s = warm_up + args.quota_seconds
    per30 = QUOTA["per_30_seconds"]
    topic = f"bench-quota-{uuid.uuid4().hex[:8]}"
    group = f"bench-quota-{uuid.uuid4().hex[:8]}"
    with Sandbox(work / "sandbox-quota.log", QUOTA_FLAGS).start() as sandbox:
        config = quota_config(args, broker.bootstrap, sandbox.url, topic, group)
        max_items = int(config["batch"]["max_items"])
        # At most per30 requests of max_items in any 30 s, plus what the connector buffers.
        need = per30 * max_items * math.ceil(total_s / 30) + 100_000
        broker.create_topics([topic], partitions=args.partitions)
        say(f"quota: producing {need:,} records to {topic}")
        produced = dataset.produce(broker.bootstrap, topic, need, args.partitions,
                                   args.customers, args.seed + 1, timeout=600)
        say(f"quota: produced in {produced.seconds:.1f}s; running {total_s:.0f}s at quota")
        m = start_connector("quota", config, work)
        try:
            t0: float | None = None
            deadline = time.monotonic() + total_s + 120
            while True:
                if not m.running():
                    raise BenchError(f"connector exited early; see {m.log_path}")
                if time.monotonic() > deadline:
                    raise BenchError(f"no first request or no end; see {m.log_path}")
                if t0 is None:
                    sends = [a["t"] for a in sandbox.stats(arrivals=True)["arrivals"]
                             if a["path"] == BATCH_PATH]
                    t0 = min(sends) if sends else None
                elif time.time() >= t0 + total_s:
                    break
                time.sleep(0.2)
        finally:
            stopped = time.time()
            usage = m.stop(60)
        stats = sandbox.stats(arrivals=True)
    assert t0 is not None  # the loop ends only after the first request
    sends = [a for a in stats["arrivals"] if a["path"] == BATCH_PATH]
    lo, hi = t0 + warm_up, t0 + total_s
    measured = [a for a in sends if lo <= a["t"] < hi]
    after = [a for a in sends if a["t"] >= lo]
    accepted = sum(a["items"] for a in measured if a["status"] == 200)
    throttled = sum(1 for a in after if a["status"] == 429)
    ceiling = per30 * max_items / 30
    per_second = [0] * math.ceil(total_s)
    for a in sends:
        k = int(a["t"] - t0)
        if a["status"] == 200 and 0 <= k < len(per_second):
            per_second[k] += a["items"]
    all_accepted = sum(a["items"] for a in sends if a["status"] == 200)
    result = measures("quota", m, usage, all_accepted, t0, stopped)
    result.update(
        # The headline figures of this run: the rate inside the measured window.
        records=accepted,
        wall_s=round(hi - lo, 3),
        records_per_s=round(accepted / (hi - lo), 1),
        events_accepted_total=all_accepted,
        cpu_s_per_million=round(usage.cpu_s / all_accepted * 1e6, 3) if all_accepted else None,
        ceiling_events_per_s=ceiling,
        share_of_ceiling=round(accepted / (hi - lo) / ceiling, 4),
        requests_after_warm_up=len(after),
        throttled_after_warm_up=throttled,
        throttled_share_after_warm_up=round(throttled / len(after), 5) if after else None,
        throttled_total=sum(1 for a in sends if a["status"] == 429),
        other_errors=sum(1 for a in sends if a["status"] not in (200, 429)),
        accepted_per_second=per_second,
        warm_up_s=warm_up,
        measured_s=args.quota_seconds,
        backlog=need,
    )
    if usage.exit_code != 0:
        raise BenchError(f"connector (quota) exited with {usage.exit_code}; see {m.log_path}")
    return result


def run_crash(args: argparse.Namespace, broker: LocalBroker, work: Path) -> dict[str, Any]:
    """SIGKILLs at quota and the events each one re-sent (bench.crash_exposure)."""
    return crash_exposure.run(
        broker, lambda url, topic, group: quota_config(args, broker.bootstrap, url, topic,
                                                       group),
        QUOTA_FLAGS, lambda name, config: start_connector(name, config, work), work,
        kills=args.crash_kills, partitions=args.partitions, customers=args.customers,
        seed=args.seed, say=say, timeout=args.run_timeout)
