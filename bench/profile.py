"""`python -m bench.profile`: where the connector's CPU goes, per record.

Same set-up as bench.run's connector run (tansu, seeded backlog, sandbox without
faults, the benchmark's connector config), with the connector under a profiler:
  --tool cprofile  `connector.cli run` with every thread under cProfile timed by
                   time.thread_time (deterministic, CPU only, inflates cheap calls);
  --tool py-spy    `py-spy record --pid --gil` (sampling only the thread that holds
                   the GIL, i.e. Python CPU; every thread; needs a py-spy
                   binary: --py-spy PATH or on PATH; pip installs one from PyPI);
  --tool gc        no profiler: time every garbage collection (gc.callbacks);
  --tool threads   no profiler: CPU per thread from /proc just before the stop (the loop
                   thread, the other Python threads, librdkafka's by name).
Prints the top functions by own time with microseconds per record, and keeps the raw
profile (`.prof` per thread for pstats/snakeviz, `.folded` for flame graphs) in --out.
"""

from __future__ import annotations

import argparse
import collections
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench import dataset
from bench.run import apply_overrides, parse_override, start_connector, wait_delivered
from bench.services import CommitWatcher, Sandbox, connector_config
from connector.localbroker import LocalBroker


def _exit_by_exception() -> None:
    """`connector.cli run` ends with `os._exit` (connector.shutdown.flush_and_exit), which
    would skip the profilers' dump: under a tool it raises SystemExit instead."""
    import connector.shutdown

    def leave(code: int) -> None:
        raise SystemExit(code)

    connector.shutdown.flush_and_exit = leave  # type: ignore[assignment]


def child(out: Path, module: str, argv: list[str]) -> None:
    """Run `module` as __main__ with every thread under cProfile on its own CPU clock.

    time.thread_time leaves out time spent blocked (I/O, the GIL held by another
    thread), so the profiles add up to CPU, not wall time. One .prof file per thread.
    """
    import cProfile
    import runpy
    import threading

    profiles: list[tuple[str, cProfile.Profile]] = []
    original_run = threading.Thread.run

    def profiled_run(self: threading.Thread) -> None:
        prof = cProfile.Profile(time.thread_time)
        profiles.append((self.name, prof))
        prof.enable()
        try:
            original_run(self)
        finally:
            prof.disable()

    threading.Thread.run = profiled_run  # type: ignore[method-assign]
    _exit_by_exception()
    main_prof = cProfile.Profile(time.thread_time)
    profiles.append(("MainThread", main_prof))
    sys.argv = [module, *argv]
    main_prof.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit:
        pass
    finally:
        main_prof.disable()
        out.mkdir(parents=True, exist_ok=True)
        for n, (name, prof) in enumerate(profiles):
            prof.create_stats()
            prof.dump_stats(str(out / f"{n:02d}-{name}.prof"))


def gc_child(out: Path, module: str, argv: list[str]) -> None:
    """Run `module` as __main__ timing every garbage collection (gc.callbacks), no profiler.

    BENCH_GC_THRESHOLD=g0,g1,g2 in the environment sets gc thresholds first (to try
    what a change in connector/cli.py would give). Writes gc.json: per generation, how
    many collections ran and their wall seconds.
    """
    import gc
    import json
    import runpy

    totals = {g: {"collections": 0, "seconds": 0.0, "collected": 0} for g in range(3)}
    started: list[float] = [0.0]

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            t = totals[info["generation"]]
            t["collections"] += 1
            t["seconds"] += time.perf_counter() - started[0]
            t["collected"] += info["collected"]

    gc.callbacks.append(timed)
    _exit_by_exception()
    threshold = os.environ.get("BENCH_GC_THRESHOLD")  # "g0,g1,g2": what-if experiments
    if threshold:
        gc.set_threshold(*(int(x) for x in threshold.split(",")))
    sys.argv = [module, *argv]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit:
        pass
    finally:
        gc.callbacks.remove(timed)
        out.mkdir(parents=True, exist_ok=True)
        (out / "gc.json").write_text(json.dumps(totals, indent=2))


def gc_report(path: Path, records: int) -> str:
    import json

    totals = json.loads(path.read_text())
    lines = [f"garbage collection, {records:,} records:"]
    for gen, t in totals.items():
        lines.append(f"  generation {gen}: {t['collections']:,} collections, {t['seconds']:.2f}s "
                     f"= {t['seconds'] / records * 1e6:.2f} us/record, {t['collected']:,} freed")
    return "\n".join(lines)


def _group(name: str) -> str:
    # "sender_3", "gameball-jobs-0" -> "sender", "gameball-jobs"
    return name.rstrip("0123456789").rstrip("_-") or name


def cprofile_report(folder: Path, records: int, top: int) -> str:
    """Own CPU per function, all threads summed, and each thread group's total."""
    groups: collections.Counter[str] = collections.Counter()
    merged: pstats.Stats | None = None
    main: pstats.Stats | None = None
    for path in sorted(folder.glob("*.prof")):
        stats = pstats.Stats(str(path))
        name = path.stem.split("-", 1)[1]
        groups[_group(name)] += stats.total_tt  # type: ignore[attr-defined]
        if name == "MainThread":
            main = pstats.Stats(str(path))  # a copy: `merged` is added to in place
        if merged is None:
            merged = stats
        else:
            merged.add(stats)
    assert merged is not None, f"no profiles in {folder}"
    per = 1e6 / records
    out = [f"cProfile on thread CPU time, {records:,} records; CPU per thread group "
           "(us/record): " + ", ".join(f"{g} {t * per:.2f}" for g, t in groups.most_common())]
    views: list[tuple[str, pstats.Stats]] = [("all threads", merged)]
    if main is not None:
        views.append(("main thread", main))
    for title, stats in views:
        rows = []
        for (file, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
            rows.append((tt, ct, nc, f"{Path(file).name}:{line}({func})"))
        rows.sort(reverse=True)
        total = stats.total_tt  # type: ignore[attr-defined]
        out += ["", f"{title}: {total * per:.2f} us/record",
                f"{'own us/rec':>10} {'cum us/rec':>10} {'calls/rec':>9}  function"]
        out += [f"{tt * per:10.2f} {ct * per:10.2f} {nc / records:9.3f}  {name}"
                for tt, ct, nc, name in rows[:top]]
    return "\n".join(out)


def folded_report(path: Path, records: int, rate: int, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        threads[frames[0].split(" ")[0] if frames else "?"] += count
        # py-spy frames look like "function (file.py:line)"; keep file and function.
        names = [f.rsplit(":", 1)[0] + ")" if ":" in f else f for f in frames[1:]]
        if names:
            own[names[-1]] += count
        for name in set(names):
            incl[name] += count
    per = 1e6 / rate / records  # microseconds per record per sample
    out = [f"py-spy, GIL holder only, {rate} samples/s: {total / rate:.2f}s of samples, "
           f"{records:,} records ({total * per:.1f} us/record)",
           "threads: " + ", ".join(f"{t} {c / rate:.1f}s" for t, c in threads.most_common(8)),
           f"{'own us/rec':>10}  function (own time)"]
    out += [f"{c * per:10.2f}  {name}" for name, c in own.most_common(top)]
    out += ["", f"{'incl us/rec':>11}  function (inclusive)"]
    out += [f"{c * per:11.2f}  {name}" for name, c in incl.most_common(top)]
    return "\n".join(out)


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each thread of `pid`, grouped: the main (loop)
    thread, the other Python threads, and librdkafka's by name (rdk:broker3 -> rdk:broker)."""
    tick = os.sysconf("SC_CLK_TCK")
    groups: dict[str, float] = collections.defaultdict(float)
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        cpu = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        if task.name == str(pid):
            name = "main (loop) thread"
        elif comm.startswith("rdk:"):
            name = comm.rstrip("0123456789/")
        else:
            name = "other Python threads" if comm.startswith("python") else comm
        groups[name] += cpu
    return groups


def threads_report(groups: dict[str, float], records: int) -> str:
    total = sum(groups.values())
    lines = [f"CPU per thread group, {records:,} records: {total:.2f}s = "
             f"{total / records * 1e6:.2f} us/record"]
    lines += [f"  {cpu / records * 1e6:6.2f} us/record  {name}"
              for name, cpu in sorted(groups.items(), key=lambda kv: -kv[1])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child(Path(argv[1]), argv[2], argv[3:])
        return 0
    if argv[:1] == ["--gc-child"]:
        gc_child(Path(argv[1]), argv[2], argv[3:])
        return 0
    p = argparse.ArgumentParser(prog="python -m bench.profile")
    p.add_argument("--records", type=int, default=200_000)
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--customers", type=int, default=5_000)
    p.add_argument("--seed", type=int, default=20240601)
    p.add_argument("--tool", choices=("cprofile", "py-spy", "gc", "threads"), default="cprofile")
    p.add_argument("--py-spy", dest="py_spy", default=shutil.which("py-spy"))
    p.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--set", action="append", default=[], metavar="PATH=YAML",
                   help="override a connector config value (as in bench.run)")
    p.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "gameball-profile"),
                   help="where the raw profiles go (%(default)s)")
    p.add_argument("--timeout", type=float, default=600.0)
    args = p.parse_args(argv)
    if args.tool == "py-spy" and not args.py_spy:
        p.error("no py-spy binary: pip install py-spy, or pass --py-spy PATH")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    profs = out / "cprofile"
    folded = out / "connector.folded"

    def cprofile_argv(config: Path) -> list[str]:
        return [sys.executable, "-m", "bench.profile", "--child", str(profs), "connector.cli",
                "run", "--config", str(config)]

    def gc_argv(config: Path) -> list[str]:
        return [sys.executable, "-m", "bench.profile", "--gc-child", str(out), "connector.cli",
                "run", "--config", str(config)]

    def plain_argv(config: Path) -> list[str]:
        return [sys.executable, "-m", "connector.cli", "run", "--config", str(config)]

    with LocalBroker() as broker:
        topic = f"profile-{uuid.uuid4().hex[:8]}"
        broker.create_topics([topic], partitions=args.partitions)
        produced = dataset.produce(broker.bootstrap, topic, args.records, args.partitions,
                                   args.customers, args.seed)
        group = f"profile-{uuid.uuid4().hex[:8]}"
        with Sandbox(out / "sandbox.log").start() as sandbox:
            config = connector_config(broker.bootstrap, topic, group, sandbox.url,
                                      {"enabled": False})
            apply_overrides(config, [parse_override(text) for text in args.set])
            m = start_connector("connector", config, out,
                                {"cprofile": cprofile_argv, "gc": gc_argv}.get(args.tool,
                                                                               plain_argv))
            spy: subprocess.Popen[bytes] | None = None
            if args.tool == "py-spy":
                spy = subprocess.Popen([args.py_spy, "record", "--pid", str(m.pid), "--rate",
                                        str(args.rate), "--format", "raw", "--threads", "--gil",
                                        "--nonblocking", "-o", str(folded)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            watcher = CommitWatcher(broker.bootstrap, group, topic, args.partitions)
            started = time.time()
            try:
                _, done = wait_delivered(m, sandbox, watcher, args.records,
                                         produced.end_offsets, args.timeout)
            finally:
                watcher.close()
                if args.tool == "threads":
                    per_thread = thread_cpu(m.pid)
                usage = m.stop(60)
                if spy is not None:
                    spy.wait(30)
    print(f"connector: {args.records:,} records in {done - started:.1f}s (incl. start-up), "
          f"CPU {usage.cpu_s:.2f}s = {usage.cpu_s / args.records * 1e6:.1f} us/record "
          f"(under the profiler), peak RSS {usage.max_rss_mb:.0f} MB")
    if args.tool == "cprofile":
        print(cprofile_report(profs, args.records, args.top))
    elif args.tool == "gc":
        print(gc_report(out / "gc.json", args.records))
    elif args.tool == "threads":
        print(threads_report(per_thread, args.records))
    else:
        print(folded_report(folded, args.records, args.rate, args.top))
    return 0 if usage.exit_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

