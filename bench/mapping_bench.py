"""Mapping micro-benchmark: records per second per core, fast plain paths vs pure JMESPath.

Run: `python -m bench.mapping_bench [--seconds S] [--json]`. No broker, no network: it
maps the sample records of every config/examples/<name>/ in one thread and measures CPU
time (time.process_time, best of short runs), so the numbers are per core. Also
measures the issue's own case, six plain lookups per record, to check the fast path is
>= 5x pure JMESPath, and the same record in Avro and Protobuf (Schema Registry wire
format; `vs_json_cpu`: their CPU per record over the JSON row's).
Called by hand and by the benchmark helper (`run()` returns the rows).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench.registry_bench import wire_values
from connector.config import load
from connector.decode import Decoder
from connector.dryrun import default_topic, parse_line
from connector.mapping import Mapper
from connector.mapping_schema import RouteSettings, TopicSettings
from connector.records import RecordLike, SourceRecord

EXAMPLES = Path(__file__).resolve().parents[1] / "config" / "examples"

# Six plain lookups per record (issue 3: "6 JMESPath lookups cost about 15 us per record").
PLAIN_ROUTE = {
    "topic": "orders",
    "customer_id": "customer.id",
    "event": "place_order",
    "metadata": {
        "order_id": "id",
        "amount": "total.amount",
        "currency": "total.currency",
        "channel": "channel",
        "tier": "customer.tier",
    },
}
# The route bench.run's connector uses: one `when` comparison and three plain paths.
BENCH_ROUTE = {
    "topic": "orders",
    "when": "type == 'order_placed'",
    "customer_id": "customer.id",
    "event": "place_order",
    "metadata": {"order_id": "id", "amount": "total.amount"},
}
PLAIN_VALUE = {
    "id": "ord-000000042",
    "type": "order_placed",
    "customer": {"id": "cust-00042", "tier": "gold"},
    "total": {"amount": 149.9, "currency": "EGP"},
    "items": [{"sku": "SKU-00001", "qty": 2, "price": 74.95}],
    "channel": "web",
}


def _min_cpu_per_call(work: Callable[[], None], calls: int, seconds: float) -> float:
    """CPU seconds per call of `work` (which makes `calls` calls), the best of short runs.

    The best of many ~50 ms runs, as timeit does: on a shared machine the slower runs
    measure the neighbours, not the code.
    """
    work()  # warm caches (per-topic plans)
    best = float("inf")
    end = time.process_time() + seconds
    while True:
        start = now = time.process_time()
        runs = 0
        while now - start < 0.05:
            work()
            runs += 1
            now = time.process_time()
        best = min(best, (now - start) / (runs * calls))
        if now >= end:
            return best


def cpu_per_record(mapper: Mapper, records: list[RecordLike], seconds: float) -> float:
    """Seconds of CPU per record, mapped as the pipeline maps it (`Mapper.for_topic`,
    looked up once per topic, outside the timing)."""
    per_topic: dict[str | None, Callable[[RecordLike], Any]] = {}
    calls = [(per_topic.setdefault(r.topic(), mapper.for_topic(r.topic())), r) for r in records]

    def work() -> None:
        for map_one, record in calls:
            map_one(record)

    return _min_cpu_per_call(work, len(records), seconds)


def outcomes(mapper: Mapper, records: list[RecordLike]) -> list[Any]:
    """What each record maps to, comparable across builds (events, skip reason, error)."""
    out: list[Any] = []
    for record in records:
        result = mapper.map(record)
        if isinstance(result, list):
            out.append([(e.customer_id, e.name, orjson.dumps(e.metadata)) for e in result])
        else:
            out.append((type(result).__name__, getattr(result, "reason", None)))
    return out


def decode_per_record(raws: list[bytes], seconds: float) -> float:
    """CPU seconds of `orjson.loads` alone: the part of a mapping that is decoding."""
    loads = orjson.loads
    valid = []
    for raw in raws:
        try:
            loads(raw)
            valid.append(raw)
        except orjson.JSONDecodeError:
            pass  # decoding stops early on these; the valid ones are the cost

    def work() -> None:
        for raw in valid:
            loads(raw)

    return _min_cpu_per_call(work, len(valid), seconds)


def example_records(name: str) -> tuple[Mapper, Mapper, list[RecordLike], list[RecordLike]]:
    """The example's mappers (fast, pure JMESPath), its event-producing records and all."""
    folder = EXAMPLES / name
    settings = load(folder / "config.yaml", env={})
    topics = getattr(settings, "topic_settings", None)
    fast = Mapper(settings.mappings, topics)
    slow = Mapper(settings.mappings, topics, fast_paths=False)
    topic = default_topic(settings)
    lines = [ln for ln in (folder / "records.jsonl").read_text().splitlines() if ln.strip()]
    every: list[RecordLike] = [parse_line(ln, topic, i) for i, ln in enumerate(lines)]
    happy = [r for r in every if isinstance(fast.map(r), list)]
    return fast, slow, happy, every


def run(seconds: float = 1.0) -> list[dict[str, Any]]:
    """One row per case: records/s per core for the fast build and for pure JMESPath."""
    rows: list[dict[str, Any]] = []

    def row(
        case: str,
        fast: Mapper,
        slow: Mapper,
        records: list[RecordLike],
        decode: Decoder | None = None,
    ) -> None:
        if outcomes(fast, records) != outcomes(slow, records):
            raise SystemExit(f"{case}: the fast and the pure-JMESPath builds disagree")
        f = cpu_per_record(fast, records, seconds)
        s = cpu_per_record(slow, records, seconds)
        raws = [r.value() for r in records]
        if decode is None:
            d = decode_per_record(
                [x.encode() if isinstance(x, str) else x or b"0" for x in raws], seconds
            )
        else:  # a registry format: its decoder (wire bytes -> JSON values) alone
            values = [x for x in raws if isinstance(x, bytes)]
            d = _min_cpu_per_call(lambda: [decode(x) for x in values], len(values), seconds)
        rows.append(
            {
                "case": case,
                "records": len(records),
                "decode_us_per_record": round(d * 1e6, 3),
                "fast_us_per_record": round(f * 1e6, 3),
                "fast_records_per_s": round(1 / f),
                "jmespath_us_per_record": round(s * 1e6, 3),
                "jmespath_records_per_s": round(1 / s),
                "speedup": round(s / f, 2),
            }
        )

    settings = [RouteSettings.model_validate(PLAIN_ROUTE)]
    raw = orjson.dumps(PLAIN_VALUE)
    plain: list[RecordLike] = [SourceRecord("orders", raw, offset_=i) for i in range(64)]
    row("six plain lookups", Mapper(settings), Mapper(settings, fast_paths=False), plain)
    settings = [RouteSettings.model_validate(BENCH_ROUTE)]
    row("when + three paths", Mapper(settings), Mapper(settings, fast_paths=False), plain)
    # The same order in Avro and Protobuf (Schema Registry wire format), six plain lookups.
    settings = [RouteSettings.model_validate(PLAIN_ROUTE)]
    for fmt, (wire, decode) in wire_values(PLAIN_VALUE, "orders").items():
        topics = {"orders": TopicSettings(value_format=fmt)}  # type: ignore[arg-type]
        decoders = {fmt: decode}
        records = [SourceRecord("orders", wire, offset_=i) for i in range(64)]
        row(
            f"six plain lookups ({fmt})",
            Mapper(settings, topics, decoders=decoders),
            Mapper(settings, topics, fast_paths=False, decoders=decoders),
            records,
            decode,
        )
        json_us = rows[0]["fast_us_per_record"]  # "six plain lookups": the same order in JSON
        rows[-1]["vs_json_cpu"] = round(rows[-1]["fast_us_per_record"] / json_us, 2)
    for name in sorted(p.name for p in EXAMPLES.iterdir() if (p / "config.yaml").is_file()):
        fast, slow, happy, every = example_records(name)
        row(f"{name} (event records)", fast, slow, happy)
        row(f"{name} (all samples)", fast, slow, every)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mapping_bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0, help="CPU seconds per measurement")
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    args = parser.parse_args(argv)
    rows = run(args.seconds)
    if args.json:
        print(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(
        f"{'case':<30} {'fast us/rec':>11} {'of it decode':>12} {'fast rec/s':>11} "
        f"{'jmespath us':>11} {'speedup':>8}"
    )
    for r in rows:
        print(
            f"{r['case']:<30} {r['fast_us_per_record']:>11.2f} {r['decode_us_per_record']:>12.2f} "
            f"{r['fast_records_per_s']:>11,} {r['jmespath_us_per_record']:>11.2f} "
            f"{r['speedup']:>7.1f}x"
        )
    for r in rows:
        if "vs_json_cpu" in r:
            print(f"{r['case']}: {r['vs_json_cpu']:.2f}x the CPU per record of the JSON row")
    print("(one thread, CPU time: records per second per core; decoding included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
