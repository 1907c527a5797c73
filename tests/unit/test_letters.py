"""Dead-letter copies read back (connector/letters.py): the original record, the attempt
count, and which copies a re-drive takes."""

from __future__ import annotations

import pytest

from connector.deadletter import H, error_headers
from connector.letters import PREFIX, Letter, Selection, parse_time
from connector.records import Event, SourceRecord

ORIGINAL = SourceRecord(topic_="shop.orders", partition_=2, offset_=41, key_=b"c7",
                        value_=b'{"id": "o-1"}', headers_=(("trace", b"t-1"),),
                        timestamp_ms=1_700_000_000_000)


def _copy(extra: dict[str, object] | None = None, route: str | None = "orders",
          offset: int = 5, ts: int = 1_764_576_000_000) -> SourceRecord:
    """What the dead-letter producer writes for ORIGINAL: its headers plus the error ones."""
    headers = list(ORIGINAL.headers() or [])
    headers += error_headers(ORIGINAL, "gameball", "rejected", "bad customer", route=route,
                             extra=extra, now=0)
    return SourceRecord(topic_="dlq", partition_=0, offset_=offset, key_=ORIGINAL.key(),
                        value_=ORIGINAL.value(), headers_=tuple(headers), timestamp_ms=ts)


def test_the_prefix_is_the_dead_letter_producers() -> None:
    assert PREFIX == H


def test_a_letter_is_the_original_record_again() -> None:
    letter = Letter.read(_copy())
    assert (letter.topic(), letter.partition(), letter.offset()) == ("shop.orders", 2, 41)
    assert letter.key() == b"c7" and letter.value() == b'{"id": "o-1"}'
    assert letter.headers() == [("trace", b"t-1")]  # the error headers are not the record's
    assert (letter.reason, letter.route, letter.attempt) == ("rejected", "orders", 1)
    assert letter.where() == "dlq[0]@5" and letter.origin() == "shop.orders[2]@41"


def test_the_attempt_header_counts_failures() -> None:
    assert Letter.read(_copy({"attempt": 3})).attempt == 3
    assert Letter.read(_copy({"attempt": "x"})).attempt == 1  # unreadable: counted as one


def test_selection_rules() -> None:
    letter = Letter.read(_copy({"attempt": 2}, ts=parse_time("2026-12-01T10:00:00Z")))
    assert Selection().why_not(letter) is None
    assert Selection(max_attempts=2).why_not(letter) == "max_attempts"
    assert Selection(reasons=["job_failed"]).why_not(letter) == "reason"
    assert Selection(reasons=["job_failed", "rejected"]).why_not(letter) is None
    assert Selection(routes=["reviews"]).why_not(letter) == "route"
    assert Selection(since_ms=parse_time("2026-12-01T10:00:01Z")).why_not(letter) == (
        "before_since")
    assert Selection(until_ms=parse_time("2026-12-01T10:00:00Z")).why_not(letter) == (
        "after_until")
    assert Selection(since_ms=parse_time("2026-12-01")).why_not(letter) is None
    foreign = Letter.read(SourceRecord(topic_="dlq", value_=b"{}"))
    assert Selection().why_not(foreign) == "no_origin"


def test_parse_time_wants_utc_times() -> None:
    assert parse_time("1970-01-02") == 86_400_000
    assert parse_time("1970-01-01T00:01:00Z") == 60_000
    with pytest.raises(ValueError, match="UTC time"):
        parse_time("yesterday")


def test_a_copy_for_one_rejected_event_resends_only_that_event() -> None:
    """A record whose `place_order` was accepted and `first_order` rejected: re-driving the
    copy must not send `place_order` a second time (a second reward)."""
    letter = Letter.read(_copy({"event": "first_order", "customerId": "c7"}))
    events = [Event("c7", "place_order", {}, letter), Event("c7", "first_order", {}, letter)]
    assert [ev.name for ev in letter.resend(events)] == ["first_order"]
    assert letter.resend([Event("c7", "renamed", {}, letter)]) == []  # counted as a skip


def test_a_bad_record_copy_resends_every_event() -> None:
    letter = Letter.read(_copy(route=None))  # no `event` header: the whole record failed
    events = [Event("c7", "place_order", {}, letter), Event("c7", "first_order", {}, letter)]
    assert letter.resend(events) == events
