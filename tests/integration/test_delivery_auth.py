"""Auth failure (issue 4): a wrong API key is not the data's fault.

Nothing may be committed or dead-lettered, /readyz must say not ready, and the log
must name the cause (without the key), while the connector keeps trying slowly.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path

from connector.localbroker import LocalBroker
from connector.sandbox.server import SandboxServer
from tests.support import (
    SECRET_KEY,
    ConnectorProcess,
    by_customer,
    committed,
    connector_config,
    orders,
    produce,
    read_all,
    unique,
    wait_until,
)

PARTITIONS = 3
WRONG_KEY = "wrong-key-7f3a9c"
DRAIN = 3.0


def readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def nothing_committed(broker: LocalBroker, group: str, topic: str) -> bool:
    """No partition's committed offset is past its first record (0), or none at all."""
    got = committed(broker.bootstrap, group, topic, PARTITIONS)
    return all(offset in (-1001, 0) for offset in got.values())


def test_wrong_key_commits_nothing_and_says_why(broker: LocalBroker, tmp_path: Path) -> None:
    topic, dlq, group = unique("auth"), unique("auth-dlq"), unique("g-auth")
    broker.create_topics([topic], partitions=PARTITIONS)
    broker.create_topics([dlq], partitions=1)
    produce(broker.bootstrap, topic, orders(500, customers=50), key=by_customer(50))

    with SandboxServer() as sandbox:
        config = connector_config(
            broker.bootstrap, sandbox.url, topic, group,
            gameball={"retry": {"auth_backoff_ms": 300, "max_attempts": 2}},
            dead_letter={"topic": dlq},
            shutdown={"drain_seconds": DRAIN},
        )
        with ConnectorProcess(config, tmp_path, env={"GAMEBALL_API_KEY": WRONG_KEY}) as proc:
            port = proc.metrics_port()
            # It keeps trying (well past max_attempts: credentials never exhaust retries)...
            wait_until(
                lambda: sandbox.stats()["requests"]
                .get("POST /api/v4.0/integrations/batch/events", {})
                .get("401", 0) >= 6,
                30, "repeated 401 answers",
            )
            # ...is not ready, and says why...
            _status, body = wait_until(
                lambda: (r := readyz(port))[0] == 503 and r, 10, "/readyz 503"
            )
            assert "credentials" in body
            line = wait_until(
                lambda: next(
                    (e for e in proc.logs() if e.get("level") == "ERROR"
                     and "credentials" in e.get("msg", "")), None),
                10, "an error line naming the cause",
            )
            assert line["cause"] == "auth"
            assert "HTTP 401" in line["answer"] and "code=1000" in line["answer"]
            assert "invalid API key" in line["answer"]
            # ...commits nothing, and the accepted count stays zero.
            assert nothing_committed(broker, group, topic)
            assert sandbox.stats()["items_accepted"] == 0
            # A halted batch can never finish: SIGTERM waits the drain time once, then
            # abandons it (it is re-read next time) and exits 0.
            stopping = time.monotonic()
            proc.stop()
            stop_seconds = time.monotonic() - stopping
            assert stop_seconds < DRAIN + 3.0, stop_seconds

    # Not even at shutdown: what Gameball never accepted stays uncommitted.
    assert nothing_committed(broker, group, topic)
    # ...nor dead-lettered: a wrong key is not the records' fault.
    assert read_all(broker.bootstrap, dlq, quiet=2.0) == []
    errors = [e for e in proc.logs() if e.get("level") == "ERROR"]
    assert len(errors) == 1  # loud once, then at most once per minute
    # what the minute swallowed is not lost: shutdown logs the count
    (summary,) = [e for e in proc.logs()
                  if e.get("msg") == "suppressed repeats" and e.get("key") == "halt"]
    assert summary["repeated"] >= 5  # at least 6 refusals, one of them logged
    assert WRONG_KEY not in proc.text()
    assert SECRET_KEY not in proc.text()
