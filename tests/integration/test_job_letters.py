"""connector/job_letters.py with the real fetcher, dead-letter producer and broker: a
failed job item is copied to the dead-letter topic with its original bytes re-read by
offset; one whose record cannot be read any more becomes a reference copy, counted."""

from __future__ import annotations

import threading

import orjson

from connector.jobs import EventRef
from connector.localbroker import LocalBroker
from connector.refetch import TIMED_OUT
from tests.support import (
    dead_letter_parts,
    read_all,
    three_records,
    wait_until,
)


def test_failed_job_items_reach_the_dead_letters_with_their_bytes_or_as_references(
    broker: LocalBroker,
) -> None:
    topic, dlq = three_records(broker)
    registry, _metrics, dead_letters, bad, letters = dead_letter_parts(
        broker.bootstrap, topic, dlq)
    error = {"code": 3000, "type": "Payload Error", "message": "bad metadata"}
    # Reported from the tracker's threads, as the tracker does.
    reports = [EventRef(topic, 0, 1, "c1", "place_order"),
               EventRef(topic, 0, 1, "c1", "write_review"),  # same record, second event
               EventRef(topic, 0, 77, "c9", "place_order")]  # never written: unreadable
    threads = [threading.Thread(target=letters.failed, args=(ref, 4711, error))
               for ref in reports]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    written: list[int] = []

    def all_written() -> bool:
        written.append(letters.poll())
        bad.poll()
        return sum(written) == 3 and bad.pending == 0

    wait_until(all_written, 60, "three copies acknowledged")
    assert letters.idle
    copies = read_all(broker.bootstrap, dlq, quiet=2.0)
    assert len(copies) == 3
    by_event = {}
    for msg in copies:
        headers = dict(msg.headers())
        by_event[(headers["gameball.error.customerId"], headers["gameball.error.event"])] = (
            msg, headers)
        assert headers["gameball.error.reason"] == b"job_failed"
        assert headers["gameball.error.jobId"] == b"4711"
        assert headers["gameball.error.code"] == b"3000"
    for name in (b"place_order", b"write_review"):
        msg, headers = by_event[(b"c1", name)]
        assert (msg.key(), msg.value()) == (b"k1", b'{"n": 1}')
        assert headers["src"] == b"shop" and headers["gameball.error.offset"] == b"1"
        assert "gameball.error.value_replaced" not in headers
    msg, headers = by_event[(b"c9", b"place_order")]
    assert orjson.loads(msg.value()) == {"topic": topic, "partition": 0, "offset": 77,
                                         "customerId": "c9", "event": "place_order"}
    assert headers["gameball.error.value_replaced"] == b"unavailable"
    assert headers["gameball.error.unavailable"] == TIMED_OUT.encode()
    assert headers["gameball.error.offset"] == b"77"
    assert registry.get_sample_value("gameball_connector_job_records_unavailable_total",
                                     {"reason": TIMED_OUT}) == 1
    letters.close(1.0)
    dead_letters.flush(5.0)
