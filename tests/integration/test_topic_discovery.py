"""Topics created after start are read within the metadata refresh interval (issue 13,
Why 7): a new topic matching `kafka.topic_pattern`, and a named topic that did not exist
when the connector started. librdkafka's default refresh is 5 minutes; the connector's
is 30 s (`topic.metadata.refresh.interval.ms`, connector/source.py DEFAULTS)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from connector.localbroker import LocalBroker
from connector.sandbox.server import SandboxServer
from connector.source import DEFAULTS
from tests.support import ConnectorProcess, connector_config, orders, produce, unique, wait_until

REFRESH_S = DEFAULTS["topic.metadata.refresh.interval.ms"] / 1000
JOIN_S = 10  # a cooperative rebalance with session.timeout.ms 6000 on tansu (~3 s), doubled


@pytest.mark.parametrize("how", ["pattern", "named"])
def test_a_topic_created_after_start_is_read_within_the_refresh_interval(
    broker: LocalBroker, tmp_path: Path, how: str
) -> None:
    prefix = unique("late")
    first, late = f"{prefix}-first", f"{prefix}-late"
    broker.create_topics([first], partitions=1)
    route = {"topic_pattern": f"^{prefix}-.*", "when": "type == 'order_placed'",
             "customer_id": "customer.id", "event": "place_order",
             "metadata": {"order_id": "id"}}
    if how == "pattern":
        kafka = {"topics": [], "topic_pattern": f"^{prefix}-.*"}
    else:
        kafka = {"topics": [first, late]}
    with SandboxServer() as sandbox:
        config = connector_config(broker.bootstrap, sandbox.url, first, unique("g-late"),
                                  mappings=[route], kafka=kafka)
        with ConnectorProcess(config, tmp_path) as proc:
            produce(broker.bootstrap, first, orders(10, customers=10))
            wait_until(lambda: len(sandbox.items()) >= 10, 30, "the first topic delivered")
            broker.create_topics([late], partitions=1)
            created = time.monotonic()
            produce(broker.bootstrap, late, orders(10, customers=10))
            wait_until(lambda: len(sandbox.items()) >= 20, REFRESH_S + JOIN_S + 15,
                       "the late topic delivered")
            took = time.monotonic() - created
            print(f"{how}: a topic created after start read {took:.1f}s later "
                  f"(refresh interval {REFRESH_S:.0f}s)")
            assert took < REFRESH_S + JOIN_S
            proc.stop()
