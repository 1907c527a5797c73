"""`python -m bench.sandbox_measure`: how fast is the sandbox itself?

Starts the sandbox as a subprocess, sends 1000-item batches (about 230 KB each) over
keep-alive connections, and prints one JSON line: sequential latency, throughput with
several client threads, and the sandbox's own CPU per request (Linux /proc). The
numbers quoted in docs/sandbox.md come from here.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

import orjson
import urllib3

from connector.sandbox.server import DEFAULT_API_KEY, DEFAULT_SECRET_KEY

HEADERS = {"apikey": DEFAULT_API_KEY, "secretkey": DEFAULT_SECRET_KEY,
           "Content-Type": "application/json"}
PATH = "/api/v4.0/integrations/batch/events"


def batch_body(items: int) -> bytes:
    """A realistic batch: one place_order event with a small metadata object per item."""
    return orjson.dumps({"body": [
        {"customerId": f"cust-{i:06d}",
         "events": {"place_order": {"order_id": f"order-{i:08d}", "amount": 123.45,
                                    "currency": "EGP", "items": 3, "channel": "web",
                                    "store": "cairo-01", "note": "x" * 60}}}
        for i in range(items)]})


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process (Linux); zeros where /proc is missing."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def main(argv: list[str] | None = None) -> int:
    """Measure and print the result as JSON; non-zero exit if any request failed."""
    parser = argparse.ArgumentParser(prog="python -m bench.sandbox_measure")
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--sequential", type=int, default=200, help="requests, one at a time")
    parser.add_argument("--requests", type=int, default=2000, help="requests, all threads")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--store", default=None, help="pass --store FILE to the sandbox")
    args = parser.parse_args(argv)

    command = [sys.executable, "-m", "connector.sandbox", "--port", "0",
               "--no-concurrency-check"]  # every request carries the same customers
    if args.store:
        command += ["--store", args.store]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        line = ""
        while "listening on" not in line:
            line = proc.stdout.readline()
            if not line:
                print("the sandbox did not start", file=sys.stderr)
                return 1
        url = line.split("listening on ")[1].strip()
        body = batch_body(args.items)
        pool = urllib3.PoolManager(maxsize=args.threads, retries=False, timeout=30)
        failures: list[int] = []

        latencies = []
        for _ in range(args.sequential):
            started = time.perf_counter()
            status = pool.request("POST", url + PATH, body=body, headers=HEADERS).status
            latencies.append(time.perf_counter() - started)
            if status != 200:
                failures.append(status)
        latencies.sort()

        per_thread = args.requests // args.threads

        def worker() -> None:
            for _ in range(per_thread):
                status = pool.request("POST", url + PATH, body=body, headers=HEADERS).status
                if status != 200:
                    failures.append(status)

        cpu_before = cpu_seconds(proc.pid)
        started = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(args.threads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        cpu_after = cpu_seconds(proc.pid)
        user, system = cpu_after[0] - cpu_before[0], cpu_after[1] - cpu_before[1]
        server_cpu = user + system
        total = per_thread * args.threads
        result: dict[str, Any] = {
            "body_bytes": len(body),
            "items_per_request": args.items,
            "store": bool(args.store),
            "sequential_ms_p50": round(statistics.median(latencies) * 1000, 2),
            "sequential_ms_p95": round(latencies[int(len(latencies) * 0.95)] * 1000, 2),
            "threads": args.threads,
            "requests_per_second": round(total / elapsed, 1),
            "items_per_second": round(total * args.items / elapsed),
            "server_cpu_ms_per_request": round(server_cpu / total * 1000, 2),
            "server_system_share": round(system / server_cpu, 2) if server_cpu else None,
            "server_capacity_per_core": round(total / server_cpu, 1) if server_cpu else None,
            "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "failures": len(failures),
        }
        print(orjson.dumps(result).decode())
        return 1 if failures else 0
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    sys.exit(main())
