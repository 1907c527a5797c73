"""The lean forwarder: the cheapest at-least-once forwarder one can write in Python.

What any connector that commits after acceptance must do, and nothing else:
`consume(1000)`, `orjson.loads`, the benchmark's mapping by hand, a list of 1,000
items, `orjson.dumps` and one keep-alive urllib3 POST at a time, then an asynchronous
commit of the offsets after the batch (safe because the one request in flight held every
record below them). No per-customer items, no concurrency, no retries, no rate limit,
no dead letters, no job tracking, no metrics. bench.run measures it beside the connector
to show what HTTP and JSON alone cost here: the connector's CPU above this floor is
what its safety and features cost. Prints one JSON line like bench.limit does. Exit
code 3 at the deadline, 4 when Gameball answers anything but 200.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import orjson
import urllib3
from confluent_kafka import TopicPartition

from bench.limit import past_deadline, print_result, subscribe
from bench.naive_peer import BATCH_PATH, peer_args, to_item


def main(argv: list[str] | None = None) -> int:
    args = peer_args("python -m bench.lean_forwarder", argv)

    url = args.base_url.rstrip("/") + BATCH_PATH
    headers = {"apikey": args.api_key, "secretkey": args.secret_key,
               "content-type": "application/json"}
    pool = urllib3.PoolManager(maxsize=1, retries=False)
    consumer, assigned = subscribe(args.bootstrap, args.group, args.topic)
    loads, dumps = orjson.loads, orjson.dumps
    items: list[dict[str, Any]] = []
    last: dict[int, int] = {}  # partition -> highest offset read
    read = sent = 0
    first = done = 0.0

    def send(asynchronous: bool = True) -> None:
        resp = pool.request("POST", url, body=dumps({"body": items}), headers=headers)
        if resp.status != 200:
            raise RuntimeError(f"Gameball answered {resp.status}: {resp.data[:200]!r}")
        consumer.commit(offsets=[TopicPartition(args.topic, p, o + 1) for p, o in last.items()],
                        asynchronous=asynchronous)

    deadline = time.monotonic() + args.deadline
    try:
        while read < args.expect:
            if past_deadline("lean", deadline, read, args.expect):
                return 3
            msgs = consumer.consume(1000, 0.5)
            if not msgs:
                continue
            if not first:
                first = time.time()
            for msg in msgs:
                if msg.error() is not None:
                    continue
                read += 1
                last[msg.partition()] = msg.offset()
                order = loads(msg.value() or b"{}")
                if order.get("type") == "order_placed":
                    items.append(to_item(order))
                    if len(items) == 1000:
                        send()
                        sent += len(items)
                        items = []
        if items:
            send(asynchronous=False)  # the last commit must land before close
            sent += len(items)
        done = time.time()
    except RuntimeError as exc:
        print(f"lean: {exc}", file=sys.stderr)
        return 4
    finally:
        consumer.close()
    print_result(assigned, first, done, read, sent=sent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
