"""The Quix Streams peer: the same forwarding written as a Quix Streams 3.x application.

An `Application` reading the benchmark's topic from the earliest offset, `sdf.filter` +
`sdf.apply` with the benchmark's hand-written mapping (`bench.naive_peer.to_item`, as
the lean forwarder and the naive peer use), and `sdf.sink(GameballBatchSink)`: a
`BatchingSink` whose `write` posts the partition's batch in requests of up to 1,000
items (`{"body": [...]}`, orjson, one keep-alive urllib3 connection, like the lean
forwarder). Quix's own checkpointing does the rest: every `commit_interval` it flushes
the sinks and commits the offsets only once they wrote everything (at-least-once).
`app.run(count=--expect)` stops after that many records; the last checkpoint is
flushed and committed on the way out.

Runs in its own venv (`make .venv-quix/.done`: quixstreams pins an older confluent-kafka
and pydantic than the connector's), started and measured by bench.run like the other
peers. Prints one JSON line like bench.limit does; `assigned` is the first record's time
(Quix has no public assignment hook). Exit code 3 at the deadline, 4 when Gameball
answers anything but 200.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from typing import Any

import orjson
import urllib3
from quixstreams import Application
from quixstreams.sinks import BatchingSink, SinkBatch

from bench.limit import print_result
from bench.naive_peer import BATCH_PATH, peer_args, to_item

MAX_ITEMS = 1000  # Gameball: up to 1,000 objects per batch request


class GameballBatchSink(BatchingSink):
    """Posts each flushed partition batch to the batch endpoint, 1,000 items a request.

    Quix calls `write` from the checkpoint's flush; an exception aborts the checkpoint
    (nothing is committed) and stops the application.
    """

    def __init__(self, base_url: str, api_key: str, secret_key: str) -> None:
        super().__init__()
        self.url = base_url.rstrip("/") + BATCH_PATH
        self.headers = {"apikey": api_key, "secretkey": secret_key,
                        "content-type": "application/json"}
        self.pool = urllib3.PoolManager(maxsize=1, retries=False)
        self.sent = 0
        self.first = 0.0

    def write(self, batch: SinkBatch) -> None:
        for chunk in batch.iter_chunks(MAX_ITEMS):
            items = [item.value for item in chunk]
            resp = self.pool.request("POST", self.url, body=orjson.dumps({"body": items}),
                                     headers=self.headers)
            if resp.status != 200:
                raise RuntimeError(f"Gameball answered {resp.status}: {resp.data[:200]!r}")
            self.sent += len(items)


def main(argv: list[str] | None = None) -> int:
    args = peer_args("python -m bench.quix_peer", argv)
    first: list[float] = []

    def is_order(order: dict[str, Any]) -> bool:
        if not first:
            first.append(time.time())
        return bool(order.get("type") == "order_placed")

    with tempfile.TemporaryDirectory(prefix="quix-state-") as state_dir:
        app = Application(
            broker_address=args.bootstrap,
            consumer_group=args.group,
            auto_offset_reset="earliest",
            state_dir=state_dir,
            auto_create_topics=False,
            loglevel="WARNING",
            # the same group timing as the other peers (tansu joins in ~3 s)
            consumer_extra_config={"session.timeout.ms": 6000,
                                   "heartbeat.interval.ms": 1000},
        )
        sink = GameballBatchSink(args.base_url, args.api_key, args.secret_key)
        sdf = app.dataframe(app.topic(args.topic, value_deserializer="json"))
        sdf = sdf.filter(is_order).apply(to_item)
        sdf.sink(sink)
        # A deadline for a run that hangs: Quix stops on SIGTERM-like `stop()`.
        late = threading.Timer(args.deadline, app.stop)
        late.daemon = True
        late.start()
        try:
            app.run(count=args.expect, collect=False)
        except RuntimeError as exc:
            print(f"quix: {exc}", file=sys.stderr)
            return 4
        finally:
            late.cancel()
        done = time.time()
    if sink.sent < args.expect:
        print(f"quix: sent {sink.sent} of {args.expect} before the deadline", file=sys.stderr)
        return 3
    start = first[0] if first else done
    print_result([start], start, done, args.expect, sent=sink.sent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
