"""The poll loop's own work per event, in one process: no broker, no HTTP, no threads.

Run: `python -m bench.hotpath [--records N] [--repeats K]`. Builds the real `Pipeline`
with the benchmark's route, feeds it the benchmark's data set as stub records in runs of
one partition (as `consume` returns them), and for every consumed batch of 1,000 does
what the loop thread does: `ingest` (decode, map, encode each event, core), `next_batch`,
`encode_items` (one body per request, joined from the payloads the cut noted, as
`Senders.submit` does) and `completed` (acks, offsets). Prints the CPU
(time.process_time) per event, best of K runs.

The figure isolates the Python the connector adds per event from what a real run adds
around it (librdkafka, HTTP, job tracking, other threads, other processes on the cores),
so that a hot-path change can be measured in seconds and without the noise of a full
`bench.run`. Called by hand; the before/after figures are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from typing import Any

from prometheus_client import CollectorRegistry

from bench.dataset import records
from bench.run import apply_overrides, parse_override
from bench.services import connector_config
from connector.config import parse
from connector.event_json import encode_items
from connector.factory import build_pipeline
from connector.gameball import GameballClient
from connector.mapping import Mapper
from connector.pipeline import Pipeline
from connector.records import SourceRecord
from connector.sandbox.server import DEFAULT_API_KEY, DEFAULT_SECRET_KEY
from connector.sender import Delivery
from connector.telemetry import Health, Metrics

PARTITIONS = 6
RUN = 200  # records of one partition in a row, as a consumed batch holds them
CONSUME_BATCH = 1000
NOWHERE = "127.0.0.1:1"  # nothing is connected: the loop's work is called directly
# The full run's settings except: no job tracking (no jobs exist without Gameball) and
# no linger (batches are cut as soon as the records of a poll are in).
OVERRIDES = [(["gameball", "job_tracking", "enabled"], False), (["batch", "linger_ms"], 0)]


def build(overrides: list[tuple[list[str], Any]]) -> Pipeline:
    """The benchmark's connector config (`bench.services.connector_config`) as a pipeline."""
    config = connector_config(NOWHERE, "orders", "hotpath", f"http://{NOWHERE}",
                              {"enabled": False})
    apply_overrides(config, OVERRIDES + overrides)
    env = {"GAMEBALL_API_KEY": DEFAULT_API_KEY, "GAMEBALL_SECRET_KEY": DEFAULT_SECRET_KEY}
    settings = parse(json.dumps(config), env)
    pipeline = build_pipeline(settings, Mapper(settings.mappings),
                              GameballClient(settings.gameball, 1),
                              Metrics(CollectorRegistry()), Health(60))
    pipeline.rebalance.on_assign([("orders", p) for p in range(PARTITIONS)])
    return pipeline


def once(recs: list[SourceRecord], overrides: list[tuple[list[str], Any]]) -> float:
    """CPU seconds per event for one pass over `recs` through a fresh pipeline."""
    pipeline = build(overrides)
    core = pipeline.core
    gc.collect()
    gc.disable()  # as the CLI runs the loop
    try:
        events = 0
        started = time.process_time()
        for i in range(0, len(recs), CONSUME_BATCH):
            pipeline.ingest(recs[i:i + CONSUME_BATCH])
            force = i + CONSUME_BATCH >= len(recs)
            while (batch := core.next_batch(time.monotonic(), force)) is not None:
                encode_items(batch.items, True, batch.payloads)
                pipeline.completed(Delivery(batch, accepted=[(batch.items, None)]))
                events += batch.events
                for t, p, o in core.commits():  # the broker confirms at once here
                    core.confirmed(t, p, o)
        spent = time.process_time() - started
    finally:
        gc.enable()
    if events != len(recs):
        raise SystemExit(f"hot path lost events: {events} of {len(recs)}")
    return spent / events


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        type=parse_override, metavar="PATH=VALUE",
                        help="change one connector setting, as in bench.run")
    args = parser.parse_args(argv)
    now_ms = int(time.time() * 1000)
    recs = [SourceRecord("orders", value, (i // RUN) % PARTITIONS, i, timestamp_ms=now_ms)
            for i, (_key, value) in enumerate(records(args.records, args.customers, args.seed))]
    runs = sorted(once(recs, args.overrides) for _ in range(args.repeats))
    print(f"loop-thread work: {runs[0] * 1e6:.2f} us/event (best of {args.repeats}; "
          f"median {runs[len(runs) // 2] * 1e6:.2f}), {args.records:,} records, decode included")
    return 0


if __name__ == "__main__":
    sys.exit(main())
