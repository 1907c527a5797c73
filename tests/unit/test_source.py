"""The consumer wrapper's shutdown bound: a close stuck in the group protocol must not
keep a stopping connector alive (the offsets are committed before it)."""

from __future__ import annotations

import threading
import time

from connector.config import parse
from connector.source import Source

CONFIG = """
kafka: {bootstrap_servers: "127.0.0.1:1", topics: [orders]}
gameball: {api_key: key-123456, secret_key: secret-123456}
mappings: [{topic: orders, customer_id: customer, event: place_order}]
"""


class StuckConsumer:
    """Stands in for librdkafka's close waiting on a coordinator that never answers."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.closing = threading.Event()

    def close(self) -> None:
        self.closing.set()
        self.release.wait(30)


def test_close_gives_up_after_its_bound_and_only_once() -> None:
    source = Source(parse(CONFIG, {}), on_assign=lambda _p: None, on_revoke=lambda _p, _l: None)
    stuck = StuckConsumer()
    source._consumer = stuck  # type: ignore[assignment]
    started = time.monotonic()
    assert source.close(0.3) is False
    assert 0.3 <= time.monotonic() - started < 5
    assert stuck.closing.is_set()
    assert source.close(0.3) is True  # nothing left to close
    stuck.release.set()


def test_close_reports_a_close_that_finished() -> None:
    source = Source(parse(CONFIG, {}), on_assign=lambda _p: None, on_revoke=lambda _p, _l: None)
    stuck = StuckConsumer()
    stuck.release.set()
    source._consumer = stuck  # type: ignore[assignment]
    assert source.close(5) is True


def test_the_revoke_inside_close_can_still_commit() -> None:
    """librdkafka runs the final revoke callback inside close(); it commits through the
    consumer, which must still be there."""
    source = Source(parse(CONFIG, {}), on_assign=lambda _p: None, on_revoke=lambda _p, _l: None)
    seen: list[object] = []

    class RevokingConsumer:
        def close(self) -> None:
            seen.append(source.consumer)  # what _revoked -> pipeline -> commit_sync uses

    consumer = RevokingConsumer()
    source._consumer = consumer  # type: ignore[assignment]
    assert source.close(5) is True
    assert seen == [consumer]
