"""The naive peer: the straightforward script a team would write first.

One message per `poll`, `json.loads`, the same mapping as the benchmark's connector
config, a list of 1,000 items, `requests.post` with the apikey/secretkey headers, then
a synchronous commit. It is deliberately plain (that is what it stands for); bench.run
measures it against the connector. Stops after `--expect` records and prints one JSON
line like bench.limit does. Exit code 3 at the deadline, 4 when Gameball keeps failing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import requests

from bench.limit import past_deadline, print_result, subscribe

BATCH_PATH = "/api/v4.0/integrations/batch/events"


def to_item(order: dict[str, Any]) -> dict[str, Any]:
    """The benchmark's mapping (bench.mapping_bench.BENCH_ROUTE) written by hand."""
    return {
        "customerId": order["customer"]["id"],
        "events": {"place_order": {"order_id": order["id"], "amount": order["total"]["amount"]}},
    }


def post(url: str, headers: dict[str, str], items: list[dict[str, Any]]) -> None:
    """Send one batch; a few tries with a pause, as a careful script would."""
    for _ in range(5):
        resp = requests.post(url, json={"body": items}, headers=headers, timeout=30)
        if resp.status_code == 200:
            return
        time.sleep(1)
    raise RuntimeError(f"Gameball answered {resp.status_code}: {resp.text[:200]}")


def peer_args(prog: str, argv: list[str] | None) -> argparse.Namespace:
    """The command line of the peers bench.run starts (this one and bench.lean_forwarder)."""
    parser = argparse.ArgumentParser(prog=prog)
    for name in ("--bootstrap", "--topic", "--group", "--base-url", "--api-key",
                 "--secret-key"):
        parser.add_argument(name, required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = peer_args("python -m bench.naive_peer", argv)

    url = args.base_url.rstrip("/") + BATCH_PATH
    headers = {"apikey": args.api_key, "secretkey": args.secret_key}
    consumer, assigned = subscribe(args.bootstrap, args.group, args.topic)
    batch: list[dict[str, Any]] = []
    read = sent = 0
    first = 0.0
    deadline = time.monotonic() + args.deadline
    try:
        while read < args.expect:
            if past_deadline("naive", deadline, read, args.expect):
                return 3
            msg = consumer.poll(1.0)
            if msg is None or msg.error() is not None:
                continue
            if not first:
                first = time.time()
            read += 1
            order = json.loads(msg.value() or b"{}")
            if order.get("type") == "order_placed":
                batch.append(to_item(order))
            if len(batch) >= 1000 or (read == args.expect and batch):
                post(url, headers, batch)
                sent += len(batch)
                batch = []
                consumer.commit(asynchronous=False)
        done = time.time()
    except RuntimeError as exc:
        print(f"naive: {exc}", file=sys.stderr)
        return 4
    finally:
        consumer.close()
    print_result(assigned, first, done, read, sent=sent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
