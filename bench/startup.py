"""`python -m bench.startup`: the CPU `gameball-connector run` spends before it reads.

Starts a local broker, then `gameball-connector run` (and `run --help`) several times,
and prints one JSON line: the median CPU (user + system, from /proc) each process had
spent when it logged "connector started" (imports, config, mapping compiled, consumer
created and subscribed), and the CPU of a whole `run --help`. docs/deployment.md quotes
the numbers.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import yaml

from bench.procs import read_stat
from connector.localbroker import LocalBroker

BIN = Path(sys.executable).parent / "gameball-connector"
ROOT = Path(__file__).resolve().parents[1]


def _started_cpu(config: Path, log: Path, timeout: float = 30.0) -> float:
    """CPU seconds the `run` process had used when it logged that it started."""
    with log.open("wb") as out:
        proc = subprocess.Popen([str(BIN), "run", "--config", str(config)],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b'"connector started"' in log.read_bytes():
                stat = read_stat(proc.pid)
                if stat is None:
                    break
                return stat[0]
            if proc.poll() is not None:
                break
            time.sleep(0.005)
        raise RuntimeError(f"run did not start: {log.read_text()[-2000:]}")
    finally:
        proc.terminate()
        proc.wait(30)


def _help_cpu() -> float:
    """CPU seconds of a whole `gameball-connector run --help` (children's rusage)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([str(BIN), "run", "--help"], check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.startup")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    config = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    with LocalBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        broker.create_topics(config["kafka"]["topics"], partitions=3)
        config["kafka"]["bootstrap_servers"] = broker.bootstrap
        config["gameball"]["base_url"] = "http://127.0.0.1:9"  # never called before a record
        config["metrics"]["port"] = 0
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        starts = [_started_cpu(path, Path(tmp) / f"run-{i}.log") for i in range(args.runs)]
    helps = [_help_cpu() for _ in range(args.runs)]
    print(orjson.dumps({
        "runs": args.runs,
        "run_started_cpu_s_median": round(statistics.median(starts), 3),
        "run_started_cpu_s_min": round(min(starts), 3),
        "run_help_cpu_s_median": round(statistics.median(helps), 3),
    }).decode())


if __name__ == "__main__":
    main()
