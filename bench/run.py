"""`python -m bench.run` (`make bench`): the connector against the floor, the peers,
Gameball's rate limits and SIGKILLs.

One run on this machine: a tansu broker, a seeded backlog, then, one after another and
each as its own measured process (CPU from os.wait4, peak RSS from VmHWM; bench.runs):
  limit      bench.limit: consume + orjson.loads only, the floor for Python here;
  connector  `gameball-connector run` against the sandbox, no latency, no rate limit;
  naive      bench.naive_peer: poll, json.loads, requests.post, synchronous commit;
  lean       bench.lean_forwarder: the cheapest at-least-once forwarder (consume(1000),
             orjson, one urllib3 POST at a time, commit after it): HTTP and JSON alone;
  quix       bench.quix_peer: a Quix Streams app with a BatchingSink posting 1,000
             items a request (its own venv, --quix-python);
  quota      the connector against the sandbox enforcing 100/s and 1,200/30 s with
             80 ms latency: sustained accepted events/s and 429 answers after 30 s;
  crash      the connector at that quota, SIGKILLed --crash-kills times mid-stream and
             restarted: what each kill leaves to send again (bench.crash_exposure).
Then the mapping micro-benchmark (bench.mapping_bench). Prints a table (ratios last),
writes JSON to <out>/<timestamp>.json and <out>/latest.json, a PNG plot, and the
figures section of docs/benchmarks.md. `--smoke` is the tiny version the tests run.
Exit code 0 when every run finished and delivered everything (targets may be missed:
they are reported, not enforced), 1 when a run failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import dataset, report
from bench.runs import (
    QUOTA,
    BenchError,
    apply_overrides,
    parse_override,
    run_connector,
    run_crash,
    run_limit,
    run_peer,
    run_quota,
    say,
    start_connector,
    wait_delivered,
)
from connector.localbroker import LocalBroker

# bench.profile and bench.hotpath import these from here
__all__ = ["apply_overrides", "main", "parse_override", "start_connector", "wait_delivered"]

ROOT = Path(__file__).resolve().parent.parent
WARM_UP_S = 30.0  # the quota run counts 429s and the sustained rate after this
QUIX_PYTHON = ROOT / ".venv-quix" / "bin" / "python"


DATA_RUNS = ("limit", "connector", "naive", "lean", "quix")  # read the shared backlog


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    p.add_argument("--records", type=int, default=500_000, help="backlog size (%(default)s)")
    p.add_argument("--partitions", type=int, default=6, help="(%(default)s)")
    p.add_argument("--customers", type=int, default=5_000, help="(%(default)s)")
    p.add_argument("--seed", type=int, default=20240601, help="data set seed (%(default)s)")
    p.add_argument("--quota-seconds", type=float, default=60.0,
                   help="seconds measured at quota after the warm-up (%(default)s)")
    p.add_argument("--quota-warm-up", type=float, default=WARM_UP_S,
                   help="seconds at quota before the measurement starts (%(default)s)")
    p.add_argument("--skip-quota", action="store_true", help="no at-quota run")
    p.add_argument("--skip-mapping", action="store_true", help="no mapping micro-benchmark")
    p.add_argument("--skip-quix", action="store_true", help="no Quix Streams peer run")
    p.add_argument("--crash-kills", type=int, default=3,
                   help="SIGKILLs at quota in the crash-exposure run, 0 for none (%(default)s)")
    p.add_argument("--quix-python", default=str(QUIX_PYTHON),
                   help="the Python of the Quix Streams peer's venv (%(default)s; "
                   "`make .venv-quix/.done` builds it)")
    p.add_argument("--smoke", action="store_true",
                   help="tiny: 5,000 records, no quota or mapping run, docs untouched")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"),
                   help="directory for the JSON results (%(default)s)")
    p.add_argument("--docs", default=str(ROOT / "docs" / "benchmarks.md"),
                   help="markdown page whose figures section is regenerated (%(default)s)")
    p.add_argument("--no-docs", action="store_true", help="leave the docs page and plot alone")
    p.add_argument("--set", action="append", default=[], metavar="PATH=YAML",
                   help="override a connector config value in the connector and quota runs, "
                   "e.g. gameball.job_tracking.enabled=false (repeatable; for experiments)")
    p.add_argument("--only", action="append", choices=[*DATA_RUNS, "quota", "crash", "mapping"],
                   help="run only this part (repeatable, e.g. --only crash); docs untouched")
    p.add_argument("--repeats", type=int, default=3,
                   help="rounds of the backlog runs (limit, connector, peers), taken in turn; "
                   "each figure is the median of the rounds, peak RSS the highest "
                   "(%(default)s; 1 with --smoke)")
    p.add_argument("--run-timeout", type=float, default=None,
                   help="deadline per run in seconds (default: from --records)")
    args = p.parse_args(argv)
    if args.smoke:
        args.records, args.customers = 5_000, 500
        args.skip_quota = args.skip_mapping = args.no_docs = True
        args.crash_kills = 0
        args.repeats = 1
    if args.only:
        args.no_docs = True
        args.skip_mapping = "mapping" not in args.only
        args.skip_quix = "quix" not in args.only
    if args.records < 1 or args.partitions < 1 or args.customers < 1 or args.repeats < 1:
        p.error("--records, --partitions, --customers and --repeats must be positive")
    if (args.quota_seconds < 60 or args.quota_warm_up < WARM_UP_S) and not args.skip_quota:
        print("note: less than a 30 s warm-up and 60 s measured at quota is less than the "
              "targets ask for", file=sys.stderr)
    try:
        args.overrides = [parse_override(text) for text in args.set]
    except ValueError as exc:
        p.error(str(exc))
    args.quix_python = str(Path(args.quix_python).absolute())
    if not args.skip_quix and not Path(args.quix_python).exists():
        p.error(f"--quix-python {args.quix_python} does not exist: run `make "
                ".venv-quix/.done` (or pass --skip-quix)")
    if args.run_timeout is None:
        args.run_timeout = 120.0 + args.records / 2_000
    return args


def run_mapping_bench(timeout: float = 600.0) -> dict[str, Any]:
    """bench.mapping_bench (owned by the mapping work) as a subprocess, its JSON rows kept."""
    if not (ROOT / "bench" / "mapping_bench.py").exists():
        return {"available": False}
    try:
        proc = subprocess.run([sys.executable, "-m", "bench.mapping_bench", "--json"],
                              capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"available": True, "ok": False, "error": f"timed out after {timeout:.0f}s"}
    if proc.returncode != 0:
        return {"available": True, "ok": False, "error": proc.stderr.strip()[-2000:]}
    try:
        rows = json.loads(proc.stdout)
    except ValueError:
        return {"available": True, "ok": False, "error": "output is not JSON",
                "output": proc.stdout[-2000:]}
    return {"available": True, "ok": True, "rows": rows}


def machine() -> dict[str, Any]:
    import confluent_kafka

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=ROOT, timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "connector"],
                                    capture_output=True, text=True, cwd=ROOT,
                                    timeout=10).stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        commit, dirty = "", False
    load = os.getloadavg()
    return {
        "commit": commit + ("+dirty" if dirty else ""),
        "python": platform.python_version(),
        "confluent_kafka": confluent_kafka.__version__,
        "librdkafka": confluent_kafka.libversion()[0],
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "load_at_start": [round(x, 2) for x in load],
    }


def median_run(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One program's figures over its rounds: the round of median CPU per record with
    the median records/s (and its wall time), the highest peak RSS, and each round's
    CPU, rate and RSS under `rounds`."""
    by_cpu = sorted(rounds, key=lambda r: r["cpu_s_per_million"] or 0.0)
    out = dict(by_cpu[len(by_cpu) // 2])
    by_rate = sorted(rounds, key=lambda r: r["records_per_s"])
    out["records_per_s"] = by_rate[len(by_rate) // 2]["records_per_s"]
    out["wall_s"] = by_rate[len(by_rate) // 2]["wall_s"]
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in rounds)
    out["rounds"] = [{k: r.get(k) for k in ("cpu_s_per_million", "records_per_s",
                                            "peak_rss_mb", "machine_busy_cores")}
                     for r in rounds]
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gameball-bench-"))
    say(f"bench: logs in {work}")
    results: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "parameters": {
            "records": args.records, "partitions": args.partitions,
            "customers": args.customers, "seed": args.seed, "smoke": args.smoke,
            "repeats": args.repeats,
            "connector_overrides": args.set, "crash_kills": args.crash_kills,
            "quota": None if args.skip_quota else {**QUOTA, "warm_up_s": args.quota_warm_up,
                                                   "measured_s": args.quota_seconds},
        },
        "runs": {},
        "logs": str(work),
    }
    runs: dict[str, Any] = results["runs"]
    durations: dict[str, float] = results.setdefault("durations_s", {})  # wall, per part
    begun = time.monotonic()
    failed: str | None = None
    try:
        with LocalBroker() as broker:
            topic = f"bench-{uuid.uuid4().hex[:8]}"
            if not args.only or set(args.only) & set(DATA_RUNS):  # the shared backlog
                broker.create_topics([topic], partitions=args.partitions)
                produced = dataset.produce(broker.bootstrap, topic, args.records,
                                           args.partitions, args.customers, args.seed)
                results["data"] = {"topic": topic, "bytes": produced.bytes,
                                   "avg_record_bytes": round(produced.bytes / args.records, 1),
                                   "produce_s": round(produced.seconds, 2),
                                   "end_offsets": produced.end_offsets}
                durations["produce"] = round(time.monotonic() - begun, 1)
                say(f"bench: produced {args.records:,} records "
                    f"({produced.bytes / args.records:.0f} B avg) in {produced.seconds:.1f}s")
            plan: list[tuple[str, Callable[[], dict[str, Any]]]] = [
                ("limit", lambda: run_limit(args, broker.bootstrap, topic, work)),
                ("connector", lambda: run_connector(args, broker.bootstrap, produced, work)),
                ("naive", lambda: run_peer(args, "naive", "bench.naive_peer",
                                           broker.bootstrap, topic, work)),
                ("lean", lambda: run_peer(args, "lean", "bench.lean_forwarder",
                                          broker.bootstrap, topic, work)),
                ("quix", lambda: run_peer(args, "quix", "bench.quix_peer", broker.bootstrap,
                                          topic, work, python=args.quix_python)),
                ("quota", lambda: run_quota(args, broker, work)),
                ("crash", lambda: run_crash(args, broker, work)),
            ]
            skip = {"quota": args.skip_quota, "quix": args.skip_quix,
                    "crash": args.crash_kills < 1}
            # The backlog runs go in rounds, each program once a round, so that a slow
            # minute of the machine falls on all of them, not on one (docs/benchmarks.md).
            rounds: dict[str, list[dict[str, Any]]] = {}
            backlog = [(n, r) for n, r in plan if n in DATA_RUNS]
            plan = [*(backlog * args.repeats),
                    *(step for step in plan if step[0] not in DATA_RUNS)]
            for name, run in plan:
                if skip.get(name) or (args.only and name not in args.only):
                    continue
                say(f"bench: {name} ...")
                t0 = time.monotonic()
                if name == "crash":
                    results["crash"] = crash = run()
                    say(f"bench: crash: exposed per kill {crash['exposed_per_kill']}, "
                        f"re-sent {crash['resent_per_kill']} "
                        f"(bound {crash['resend_bound']:,}) in {time.monotonic() - t0:.0f}s")
                    durations[name] = round(time.monotonic() - t0, 1)
                    continue
                r = run()
                durations[name] = round(durations.get(name, 0.0) + time.monotonic() - t0, 1)
                if name in DATA_RUNS:
                    rounds.setdefault(name, []).append(r)
                    runs[name] = median_run(rounds[name])
                else:
                    runs[name] = r
                say(f"bench: {name}: {r['records']:,} in {r['wall_s']:.2f}s = "
                    f"{r['records_per_s']:,.0f}/s, CPU {r['cpu_s']:.2f}s, "
                    f"RSS {r['peak_rss_mb']:.0f} MB")
    except (BenchError, RuntimeError, TimeoutError) as exc:
        failed = str(exc)
        results["failed"] = failed
        say(f"bench: FAILED: {failed}")
    if not args.skip_mapping and failed is None:
        say("bench: mapping micro-benchmark ...")
        t0 = time.monotonic()
        results["mapping"] = run_mapping_bench()
        durations["mapping"] = round(time.monotonic() - t0, 1)
    durations["total"] = round(time.monotonic() - begun, 1)
    results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["machine"]["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["summary"] = report.summarise(runs, results.get("crash"))
    json_path = report.write_json(results, out, stamp)
    plot_path = out / "benchmark.png" if args.no_docs else Path(args.docs).parent / \
        "benchmarks" / "benchmark.png"
    if runs:
        report.plot(results, plot_path)
        results["plot"] = str(plot_path)
    if not args.no_docs and failed is None:
        report.update_docs(Path(args.docs), results, plot_path)
    print(report.table(results))
    say(f"bench: results in {json_path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
