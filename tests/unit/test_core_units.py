"""DeliveryCore, one method at a time: what the shell sees from each arrow."""

from __future__ import annotations

from typing import Any

import orjson

from connector.core import Batch, CoreSettings, DeliveryCore, Run, encode_items
from connector.core.segmenting import spans

T = "orders"


def core(**kw: Any) -> DeliveryCore:
    base: dict[str, Any] = {"max_items": 3, "linger_s": 1.0, "max_in_flight": 2,
                            "max_buffered_events": 100, "resend_bound": 100,
                            "segment_events": 2}
    base.update(kw)
    c = DeliveryCore(CoreSettings(**base))
    c.assign(T, 0)
    return c


def row(offset: int, cid: str, name: str = "buy") -> tuple[int, str, str, Any]:
    return (offset, cid, name, {"o": offset})


def sent(batch: Batch) -> list[tuple[str, list[int]]]:
    return [(i.customer_id, [r[0] for _s, r in i.entries]) for i in batch.items]


def test_skipped_records_commit_at_once_and_a_record_s_events_stay_in_one_segment() -> None:
    c = core(max_items=5)
    c.ingest([Run(T, 0, [], skipped=[0, 1])], 0.0)
    assert c.commits() == [(T, 0, 2)]
    c.ingest([Run(T, 0, [row(2, "a"), row(3, "b"), row(3, "c"), row(3, "d"), row(4, "e")])], 0.0)
    batch = c.next_batch(0.0, force=True)
    assert batch is not None
    # segment_events 2, but record 3's three events join record 2's segment: 4 + 1
    assert sorted((s.first, s.end, n) for s, n in batch.counts.items()) == [(2, 4, 4), (4, 5, 1)]


def test_commit_stops_at_the_oldest_unfinished_segment_and_never_goes_back() -> None:
    c = core(segment_events=1, max_items=1)
    c.ingest([Run(T, 0, [row(0, "a"), row(1, "b"), row(2, "c")])], 0.0)
    first = c.next_batch(0.0, force=True)
    second = c.next_batch(0.0, force=True)
    assert first is not None and second is not None
    c.complete(second, 0.0)  # offset 1 done, 0 not
    assert c.commits() == [(T, 0, 0)]
    c.complete(first, 0.0)
    assert c.commits() == [(T, 0, 2)]
    assert c.commits() == []  # nothing moved
    assert c.committable(T, 0) == 2


def test_a_customer_in_flight_waits_and_its_events_leave_in_read_order() -> None:
    c = core(max_items=5)
    c.ingest([Run(T, 0, [row(0, "a"), row(1, "b")])], 0.0)
    first = c.next_batch(0.0, force=True)
    assert first is not None and sent(first) == [("a", [0]), ("b", [1])]
    c.ingest([Run(T, 0, [row(2, "a"), row(3, "c"), row(4, "a", "visit")])], 0.0)
    second = c.next_batch(0.0, force=True)
    assert second is not None and sent(second) == [("c", [3])]  # a is in flight
    c.complete(first, 0.0)
    third = c.next_batch(0.0, force=True)
    assert third is not None and sent(third) == [("a", [2, 4])]


def test_the_jth_event_of_a_name_goes_into_the_jth_item_and_max_items_holds() -> None:
    c = core(max_items=3, segment_events=10)
    c.ingest([Run(T, 0, [row(0, "a", "buy"), row(1, "a", "buy"), row(2, "a", "visit"),
                         row(3, "a", "buy"), row(4, "a", "visit"), row(5, "b")])], 0.0)
    batch = c.next_batch(0.0, force=True)
    assert batch is not None
    assert [(i.customer_id, i.names) for i in batch.items] == [
        ("a", ["buy", "visit"]), ("a", ["buy", "visit"]), ("a", ["buy"])]
    assert batch.events == 5 and c.waiting == 1  # b waits for the next batch


def test_a_batch_is_due_by_linger_or_when_max_items_are_ready() -> None:
    c = core(max_items=3, linger_s=1.0)
    c.ingest([Run(T, 0, [row(0, "a")])], 10.0)
    assert c.due_in(10.0) == 1.0
    assert c.next_batch(10.5) is None
    assert c.next_batch(11.0) is not None
    c.ingest([Run(T, 0, [row(1, "b"), row(2, "c"), row(3, "d")])], 12.0)
    assert c.due_in(12.0) == 0.0
    assert c.next_batch(12.0) is not None


def test_oldest_customers_go_first() -> None:
    c = core(max_items=2, max_in_flight=1)
    c.ingest([Run(T, 0, [row(0, "a"), row(1, "b"), row(2, "c")])], 0.0)
    batch = c.next_batch(0.0, force=True)
    assert batch is not None and batch.customers() == ["a", "b"]
    assert not c.may_send()  # one sender, busy


def test_rejected_items_become_dead_letter_tickets_and_hold_the_commit_until_acked() -> None:
    c = core(max_items=3)
    c.ingest([Run(T, 0, [row(0, "a"), row(1, "b", "visit")], timestamp_ms=500)], 0.0)
    batch = c.next_batch(0.0, force=True)
    assert batch is not None
    bad = batch.items[1]
    done = c.complete(batch, 0.0, rejected=[(bad, "400")])
    assert done.accepted == 1 and done.oldest_ms == 500
    (letter,) = done.letters
    assert (letter.topic, letter.partition, letter.offset, letter.customer_id, letter.name) == (
        T, 0, 1, "b", "visit")
    assert letter.cause == "400" and bad.refs() == [(T, 0, 1, "visit")]
    assert letter.payload == {"o": 1}  # the row's payload: the shell finds its record there
    assert c.commits() == [(T, 0, 0)]  # both records are one segment: it waits for the copy
    c.dead_lettered(letter)
    assert c.commits() == [(T, 0, 2)]
    assert c.is_idle()


def test_bad_records_at_ingest_are_tickets_too() -> None:
    c = core()
    letters = c.ingest([Run(T, 0, [row(1, "a")], skipped=[2], failed=[0])], 0.0)
    assert [(lt.offset, lt.name) for lt in letters] == [(0, None)]
    batch = c.next_batch(0.0, force=True)
    assert batch is not None
    c.complete(batch, 0.0)
    assert c.commits() == [(T, 0, 0)]
    c.dead_lettered(letters[0])
    assert c.commits() == [(T, 0, 3)]


def test_abandoned_items_stay_undone() -> None:
    c = core()
    c.ingest([Run(T, 0, [row(0, "a"), row(1, "b")])], 0.0)
    batch = c.next_batch(0.0, force=True)
    assert batch is not None
    done = c.complete(batch, 0.0, abandoned=[batch.items[0]])
    assert done.accepted == 1 and not done.letters
    assert c.commits() == [(T, 0, 0)]
    assert c.undone() == 1


def test_exposure_falls_only_when_the_broker_confirms_the_commit() -> None:
    """The crash accounting: accepted events count until a confirmed commit covers them,
    not merely until the committable offset passes them (today's gap)."""
    c = core(max_items=2, segment_events=1, resend_bound=10, max_in_flight=4)
    c.ingest([Run(T, 0, [row(i, f"c{i}") for i in range(8)])], 0.0)
    first = c.next_batch(0.0, force=True)
    assert first is not None and c.exposure == 2
    c.complete(first, 0.0)
    assert c.commits() == [(T, 0, 2)]
    assert c.exposure == 2  # committable passed them, the broker has not confirmed
    c.commit_failed(T, 0)
    assert c.commits() == [(T, 0, 2)]  # handed again
    c.confirmed(T, 0, 2)
    assert c.exposure == 0


def test_a_late_answer_releases_only_what_its_own_commit_covered() -> None:
    """An asynchronous commit's answer comes inside a later consume(), after more
    segments finished (and after newer commits were handed): it covers its own offset
    only, and an older answer after a newer one changes nothing."""
    c = core(max_items=2, segment_events=2, resend_bound=20, max_in_flight=4)
    c.ingest([Run(T, 0, [row(i, f"c{i}") for i in range(6)])], 0.0)
    first = c.next_batch(0.0, force=True)
    assert first is not None
    c.complete(first, 0.0)
    assert c.commits() == [(T, 0, 2)]  # handed; its answer is under way
    rest = [c.next_batch(0.0, force=True) for _ in range(2)]
    for batch in rest:
        assert batch is not None
        c.complete(batch, 0.0)
    assert c.exposure == 6
    c.confirmed(T, 0, 2)  # the answer to the commit of 2, with 2-5 done meanwhile
    assert c.exposure == 4
    assert c.commits() == [(T, 0, 6)]
    c.confirmed(T, 0, 6)
    c.confirmed(T, 0, 2)  # a stale answer again: nothing comes back or goes
    assert c.exposure == 0 and c.commits(unconfirmed=True) == []


def test_a_spent_budget_sends_the_oldest_segment_only_then_waits_for_confirmation() -> None:
    c = core(max_items=2, segment_events=2, resend_bound=4, max_in_flight=4)
    # segments: (a0, b1) (a2, c3) (d4, e5); normal batches may fill 4 - 2 (reserve)
    c.ingest([Run(T, 0, [row(0, "a"), row(1, "b"), row(2, "a"), row(3, "c"), row(4, "d"),
                         row(5, "e")])], 0.0)
    first = c.next_batch(0.0, force=True)
    assert first is not None and sent(first) == [("a", [0]), ("a", [2])]
    assert c.next_batch(0.0, force=True) is None  # 2 + 2 > 4 - 2, one in flight
    c.complete(first, 0.0)
    assert c.exposure == 2 and c.commits() == [(T, 0, 0)]  # b1 holds the head back
    heads = []
    for _ in range(2):  # nothing in flight: one batch of the oldest segment's events
        batch = c.next_batch(0.0, force=True)
        assert batch is not None
        heads.append(sent(batch))
        c.complete(batch, 0.0)
        assert c.exposure <= 4
    assert heads == [[("b", [1])], [("c", [3])]]
    assert c.commits() == [(T, 0, 4)] and c.exposure == 4
    assert c.next_batch(0.0, force=True) is None  # spent: the commit must be confirmed
    assert c.awaiting_confirmation() and not c.may_send() and c.blocked()
    c.confirmed(T, 0, 4)
    assert c.exposure == 0 and not c.awaiting_confirmation()
    last = c.next_batch(0.0, force=True)
    assert last is not None and sent(last) == [("d", [4]), ("e", [5])]
    assert c.overruns == 0


def test_revoke_drops_waiting_events_and_ignores_late_completions() -> None:
    c = core(max_items=1)
    c.assign(T, 1)
    c.ingest([Run(T, 0, [row(0, "a"), row(1, "b")]), Run(T, 1, [row(0, "c")])], 0.0)
    batch = c.next_batch(0.0, force=True)
    assert batch is not None and batch.customers() == ["a"]
    report = c.revoke([(T, 0)])
    assert (report.dropped, report.in_flight, report.unconfirmed) == (1, 1, 0)
    assert report.spans == [f"{T}[0]@?-0"]
    assert c.complete(batch, 0.0).ignored == 1
    assert c.committable(T, 0) is None and c.waiting == 1
    c.assign(T, 0)
    assert c.commits() == [(T, 1, 0)]  # the fresh partition 0 has read nothing


def test_flow_control_stops_reading_at_the_buffer_bound_and_when_blocked() -> None:
    c = core(max_items=2, max_in_flight=1, max_buffered_events=3)
    c.ingest([Run(T, 0, [row(0, "a"), row(1, "b")])], 0.0)
    assert c.may_read() and c.held_back_since(0.0) is None
    assert c.next_batch(0.0) is not None
    c.ingest([Run(T, 0, [row(2, "c"), row(3, "d")])], 1.0)
    assert c.blocked() and not c.may_read()  # a whole batch waits for the one sender
    assert c.held_back_since(1.0) == 1.0
    assert c.held_back_since(2.5) == 1.0


def test_request_bodies_are_gameball_s_shapes_and_take_pre_encoded_metadata() -> None:
    c = core(max_items=3)
    frag = orjson.Fragment(b'{"amount":5}')
    c.ingest([Run(T, 0, [(0, "a", "buy", frag, -1), (1, "a", "visit", {"x": 1}, -1)])], 0.0)
    batch = c.next_batch(0.0, force=True)
    assert batch is not None
    assert orjson.loads(batch.body()) == {
        "body": [{"customerId": "a", "events": {"buy": {"amount": 5}, "visit": {"x": 1}}}]}
    assert orjson.loads(encode_items(batch.items, batch_endpoint=False)) == {
        "customerId": "a", "events": {"buy": {"amount": 5}, "visit": {"x": 1}}}


def test_bad_records_are_cut_into_segments_with_the_rows_in_offset_order() -> None:
    c = core(max_items=5, segment_events=2)
    letters = c.ingest([Run(T, 0, [row(0, "a"), row(2, "b"), row(3, "c")], failed=[1])], 0.0)
    batch = c.next_batch(0.0, force=True)
    assert batch is not None
    assert sorted((s.first, s.end, s.events) for s in batch.counts) == [
        (0, 1, 1), (1, 3, 2), (3, 4, 1)]
    c.complete(batch, 0.0)
    assert c.commits() == [(T, 0, 1)]  # the bad record 1 starts a segment: record 0 commits
    c.dead_lettered(letters[0])
    assert c.commits() == [(T, 0, 4)]


def test_assigning_a_partition_again_drops_its_old_waiting_events() -> None:
    c = core()
    c.ingest([Run(T, 0, [row(0, "a"), row(1, "b")])], 0.0)
    c.assign(T, 0)  # no revoke came first (a lost partition re-assigned)
    assert c.waiting == 0 and c.buffered == 0 and c.next_batch(0.0, force=True) is None
    assert c.commits() == []


def test_segments_meet_end_to_first_and_never_split_a_record() -> None:
    rows = [row(0, "a"), row(2, "b"), row(2, "c"), row(2, "d"), row(5, "e")]
    cut = [(first, end, [r[0] for r in seg_rows], bad)
           for first, end, seg_rows, bad in spans(rows, [], 6, 2)]
    assert cut == [(0, 5, [0, 2, 2, 2], []), (5, 7, [5], [])]  # record 2 kept whole
    mixed = [(first, end, [r[0] for r in seg_rows], bad)
             for first, end, seg_rows, bad in spans(rows, [4, 1], 6, 2)]
    # a bad record starts a segment: what precedes it commits even if it never ends
    assert mixed == [(0, 1, [0], []), (1, 2, [], [1]), (2, 4, [2, 2, 2], []), (4, 7, [5], [4])]


def test_discard_past_drops_waiting_events_after_a_held_record_and_commits_stop_there() -> None:
    c = core(max_items=5)
    c.assign(T, 1)
    letters = c.ingest([Run(T, 0, [row(0, "a"), row(2, "b"), row(3, "a")], failed=[1]),
                        Run(T, 1, [row(0, "c")])], 0.0)
    assert [letter.offset for letter in letters] == [1]
    assert c.discard_past({(T, 0): 1}) == 2  # records 2 and 3 of partition 0
    assert c.waiting == 2 and c.buffered == 2
    batch = c.next_batch(0.0, force=True)
    assert batch is not None and sent(batch) == [("a", [0]), ("c", [0])]
    c.complete(batch, 0.0)
    # the held record never ends (on_error: stop): partition 0 commits up to it only
    assert sorted(c.commits()) == [(T, 0, 1), (T, 1, 1)]
    assert c.undone([(T, 0)]) == 3 and c.waiting == 0


def test_a_handed_commit_is_handed_again_until_confirmed_and_a_revoke_reports_it() -> None:
    """Ported from the offset tracker's tests: an asynchronous commit still under way at
    revoke may fail after it (tansu answers ILLEGAL_GENERATION during rebalances), so
    `commits(unconfirmed=True)` hands it again; plain `commits()` reports only moved
    partitions."""
    c = core(max_items=5, segment_events=1)
    c.assign(T, 1)
    c.ingest([Run(T, 0, [row(0, "a"), row(1, "b")]), Run(T, 1, [], skipped=[0])], 0.0)
    batch = c.next_batch(0.0, force=True)
    assert batch is not None
    c.complete(batch, 0.0)
    assert sorted(c.commits()) == [(T, 0, 2), (T, 1, 1)]  # handed, not confirmed
    assert c.commits() == []  # nothing moved since
    assert sorted(c.commits(unconfirmed=True)) == [(T, 0, 2), (T, 1, 1)]
    c.confirmed(T, 1, 1)
    assert c.commits(unconfirmed=True) == [(T, 0, 2)]
    report = c.revoke([(T, 0)])
    assert (report.unconfirmed, report.spans) == (2, [f"{T}[0]@?-2"])  # both come again


def test_ready_events_leave_out_customers_in_flight_until_their_batch_ends() -> None:
    """Ported from the window's tests: a busy customer's events wait (not ready, so no
    batch is due for them) and leave first once its batch ends."""
    c = core(max_items=3, linger_s=0.5, segment_events=10)
    c.ingest([Run(T, 0, [row(0, "c1")])], 0.0)
    first = c.next_batch(0.0, force=True)
    assert first is not None
    c.ingest([Run(T, 0, [row(1, "c1"), row(2, "c2"), row(3, "c2", "visit"), row(4, "c3")])],
             1.0)
    assert (c.ready, c.waiting, c.buffered) == (3, 4, 5)  # c1's event is held
    assert c.due_in(1.2) == 0.0  # three ready events: a full batch is due
    second = c.next_batch(1.2)
    assert second is not None and sent(second) == [("c2", [2, 3]), ("c3", [4])]
    c.complete(first, 2.0)
    assert (c.ready, c.waiting) == (1, 1)
    third = c.next_batch(2.0, force=True)
    assert third is not None and sent(third) == [("c1", [1])]


def test_a_partly_rejected_batch_reports_the_oldest_stamp_of_what_was_accepted() -> None:
    c = core(max_items=3)
    c.ingest([Run(T, 0, [row(0, "a")], timestamp_ms=500),
              Run(T, 1, [row(0, "b")], timestamp_ms=400)], 0.0)
    batch = c.next_batch(0.0, force=True)
    assert batch is not None and batch.oldest_ms == 400
    done = c.complete(batch, 0.0, rejected=[(batch.items[1], "400")])  # b's, the older run
    assert done.accepted == 1 and done.oldest_ms == 500


def test_an_all_accepted_batch_reports_its_oldest_record_stamp_ignoring_unstamped_ones() -> None:
    """Stamps come per consumed run (its first record's), carried by its segments."""
    c = core(max_items=5)
    c.ingest([Run(T, 0, [row(0, "a")], timestamp_ms=700), Run(T, 1, [row(1, "b")]),
              Run(T, 2, [row(2, "c")], timestamp_ms=300),
              Run(T, 3, [row(3, "a")], timestamp_ms=900)], 0.0)
    batch = c.next_batch(0.0, force=True)
    assert batch is not None
    assert c.complete(batch, 0.0).oldest_ms == 300  # not -1: record 1 has no timestamp
    c.ingest([Run(T, 0, [row(4, "d"), row(5, "e")])], 0.0)
    batch = c.next_batch(0.0, force=True)
    assert batch is not None
    done = c.complete(batch, 0.0)
    assert done.accepted == 2 and done.oldest_ms is None  # no record has one
