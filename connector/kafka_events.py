"""librdkafka's statistics and error callbacks, turned into health and metrics.

Both run inside `consume()` on the loop thread (confluent-kafka serves them there).
"""

from __future__ import annotations

import logging

import orjson
from confluent_kafka import KafkaError

from connector.logs import RateLimitedLog
from connector.source import Source
from connector.telemetry import Health, Metrics

log = logging.getLogger("connector.pipeline")


class KafkaEvents:
    """`on_stats`: broker reachability and consumer lag per owned partition;
    `on_error`: a rate-limited warning per error code."""

    def __init__(self, source: Source, health: Health, metrics: Metrics) -> None:
        self._source = source
        self._health = health
        self._m = metrics
        self.log = RateLimitedLog(log, 60.0)

    def on_stats(self, raw: str) -> None:
        try:
            stats = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return
        up = any(b.get("state") == "UP" for b in stats.get("brokers", {}).values())
        self._health.broker_reachable = up
        assigned = self._source.assigned
        for tname, topic in stats.get("topics", {}).items():
            for pid, p in topic.get("partitions", {}).items():
                lag = p.get("consumer_lag", -1)
                if pid != "-1" and lag is not None and lag >= 0 and (tname, int(pid)) in assigned:
                    self._m.consumer_lag.labels(tname, pid).set(lag)

    def on_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self._health.broker_reachable = False
        self.log.warn(f"kafka:{err.code()}", f"kafka: {err.str()}", fatal=err.fatal())
