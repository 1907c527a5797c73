"""/readyz means "delivering" (issue 13, Why 7): false while Gameball has answered only
retryable failures for longer than `metrics.not_ready_after_retrying_seconds`, true
again at the first acceptance; nothing is committed meanwhile."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from pathlib import Path

from connector.localbroker import LocalBroker
from connector.sandbox.faults import Faults
from connector.sandbox.server import SandboxServer
from tests.support import (
    ConnectorProcess,
    committed,
    committed_to_end,
    connector_config,
    orders,
    produce,
    unique,
    wait_until,
)

THRESHOLD_S = 2.0


def readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_readiness_is_false_while_gameball_answers_only_retryable_failures(
    broker: LocalBroker, tmp_path: Path
) -> None:
    topic, group = unique("ready"), unique("g-ready")
    broker.create_topics([topic], partitions=1)
    with SandboxServer(faults=Faults(error_rate=1.0, error_status=503)) as sandbox:
        config = connector_config(
            broker.bootstrap, sandbox.url, topic, group,
            metrics={"not_ready_after_retrying_seconds": THRESHOLD_S},
        )
        with ConnectorProcess(config, tmp_path) as proc:
            port = proc.metrics_port()
            wait_until(lambda: readyz(port)[0] == 200, 20, "ready once in the group")
            ends = produce(broker.bootstrap, topic, orders(200, customers=50))
            _status, why = wait_until(lambda: (r := readyz(port))[0] == 503 and r, 20,
                                     "not ready while Gameball answers 503")
            assert re.fullmatch(r"Gameball has answered only retryable failures for \d+s\n", why)
            assert committed(broker.bootstrap, group, topic, 1)[0] <= 0  # none past record 0
            sandbox.set_faults(Faults())
            wait_until(lambda: readyz(port)[0] == 200, 20, "ready again once Gameball accepts")
            wait_until(lambda: committed_to_end(broker.bootstrap, group, topic, ends), 30,
                       "everything delivered and committed after the outage")
            proc.stop()
