"""bench.crash_exposure: re-sent events per kill, counted from the sandbox's items."""

from __future__ import annotations

from typing import Any

import orjson

from bench.crash_exposure import count_resent, resend_bound, tagged
from bench.dataset import records
from bench.naive_peer import to_item
from bench.services import connector_config


def items(process: int, *orders: int, partition: int = 0) -> list[dict[str, Any]]:
    """Tagged sandbox items, one order each; order n sits at offset n of `partition`."""
    return [{"customerId": f"cust-{n % 7:05d}", "events": {"place_order": {
        "order_id": f"ord-{n:09d}", "amount": 1.0, "sent_by": process,
        "partition": partition, "offset": n}}} for n in orders]


def test_each_kill_counts_what_its_process_delivered_past_the_commit() -> None:
    # process 0 delivers 0-5, killed with 2 committed: 2-5 are its exposure; process 1
    # re-sends 2-5, delivers to 9, killed with 8 committed; process 2 re-sends 8-9.
    delivered = items(0, 0, 1, 2, 3, 4, 5) + items(1, 2, 3, 4, 5, 6, 7, 8, 9) + items(2, 8, 9, 10)
    counted = count_resent(delivered, committed=[{0: 2}, {0: 8}])
    assert counted.per_kill == [4, 2]
    assert counted.exposed == [4, 2] and counted.carried == [0, 0]
    assert counted.after_kill == [4, 2]
    assert counted.within == counted.out_of_order == 0
    assert counted.events == 17 and counted.distinct == 11


def test_an_event_sent_again_two_kills_later_counts_for_the_process_that_sent_it() -> None:
    # process 0 delivers 0-3 (committed: 0); process 1 re-sends 0-1 only and is killed
    # (still 0 committed); process 2 re-sends 0-3. Orders 2 and 3 are process 0's
    # exposure, carried past kill 1: the former count charged all four to kill 1.
    delivered = items(0, 0, 1, 2, 3) + items(1, 0, 1) + items(2, 0, 1, 2, 3)
    counted = count_resent(delivered, committed=[{0: 0}, {0: 0}])
    assert counted.exposed == [4, 2] and counted.carried == [0, 2]
    assert counted.per_kill == [4, 2]  # 0, 1 twice (from 0, then from 1); 2, 3 from 0
    assert counted.after_kill == [2, 4]


def test_partitions_are_held_to_their_own_committed_offset() -> None:
    delivered = items(0, 0, 1, 2, partition=0) + items(0, 10, 11, partition=1)
    counted = count_resent(delivered + items(1, 2, 11, partition=0), committed=[{0: 2, 1: 11}])
    assert counted.exposed == [2]  # order 2 in partition 0, order 11 in partition 1
    # nothing committed yet (-1001) in a partition: all it delivered there is exposed
    assert count_resent(delivered, committed=[{0: -1001, 1: 11}]).exposed == [4]


def test_a_duplicate_without_a_kill_and_a_late_request_are_counted_apart() -> None:
    delivered = items(0, 0, 1, 1) + items(1, 0, 2, 2) + items(0, 3)
    counted = count_resent(delivered, committed=[{0: 0}])
    assert counted.per_kill == [1]  # order 0 again after the kill
    assert counted.within == 2  # order 1 twice before it, order 2 twice after it
    assert counted.out_of_order == 1  # process 0's order 3 stored after process 1's
    assert counted.exposed == [3]  # orders 0, 1, 3: the late one is still process 0's


def test_items_with_several_events_count_each_event() -> None:
    def two(process: int) -> list[dict[str, Any]]:
        return [{"customerId": "c", "events": {
            name: {"order_id": f"ord-00000000{n}", "sent_by": process, "partition": 0,
                   "offset": n} for n, name in ((1, "place_order"), (2, "refund"))}}]
    counted = count_resent(two(0) + two(1), committed=[{0: 0}])
    assert counted.per_kill == [2] and counted.events == 4


def test_the_benchmark_mapping_tagged_maps_to_items_the_counter_reads() -> None:
    config = tagged(connector_config("b", "orders", "g", "http://s", {}), 3)
    assert config["mappings"][0]["metadata"]["sent_by"] == "`3`"
    data = [to_item(orjson.loads(value)) for _, value in records(50, 10, seed=3)]
    for n, item in enumerate(data):  # what the tags add, as the connector maps them
        item["events"]["place_order"].update(sent_by=0, partition=0, offset=n)
    counted = count_resent(data + [{**d, "events": {"place_order": {
        **d["events"]["place_order"], "sent_by": 1}}} for d in data[:5]], [{0: 0}])
    assert counted.per_kill == [5] and counted.distinct == 50


def test_the_bound_is_the_configured_one_or_the_default() -> None:
    assert resend_bound({"batch": {"max_resend_events": 5000}}) == 5000
    # the default covers at least the requests in flight (docs/core.md)
    assert resend_bound({"batch": {"max_items": 20, "max_in_flight": 2}}) >= 2 * 20
    assert resend_bound({}) >= resend_bound({"batch": {"max_items": 20}})
