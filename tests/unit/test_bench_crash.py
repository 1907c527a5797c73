"""bench.crash_exposure: re-sent events per kill, counted from the sandbox's items."""

from __future__ import annotations

from typing import Any

import orjson

from bench.crash_exposure import resend_bound, resent_per_kill
from bench.dataset import records
from bench.naive_peer import to_item


def items(*numbers: int) -> list[dict[str, Any]]:
    """Sandbox items as the benchmark's mapping makes them, one order each."""
    return [{"customerId": f"cust-{n % 7:05d}", "events": {
        "place_order": {"order_id": f"ord-{n:09d}", "amount": 1.0}}} for n in numbers]


def test_each_kill_counts_what_the_next_process_sent_again() -> None:
    # process 0 delivers 0-5 and is killed; process 1 starts from a commit at 2 (re-sends
    # 2-5), delivers to 9, killed; process 2 starts from 8 (re-sends 8-9) and goes on.
    delivered = items(0, 1, 2, 3, 4, 5) + items(2, 3, 4, 5, 6, 7, 8, 9) + items(8, 9, 10, 11)
    counted = resent_per_kill(delivered, boundaries=[6, 14])
    assert counted.per_kill == [4, 2]
    assert counted.within == 0
    assert counted.events == 18 and counted.distinct == 12


def test_an_event_sent_again_two_kills_later_counts_for_the_later_kill() -> None:
    delivered = items(0, 1) + items(2) + items(1, 3)
    counted = resent_per_kill(delivered, boundaries=[2, 3])
    assert counted.per_kill == [0, 1]


def test_a_duplicate_without_a_kill_is_counted_apart() -> None:
    delivered = items(0, 1, 1) + items(0, 2, 2)
    counted = resent_per_kill(delivered, boundaries=[3])
    assert counted.per_kill == [1]  # order 0 again after the kill
    assert counted.within == 2  # order 1 twice before it, order 2 twice after it


def test_items_with_several_events_count_each_event() -> None:
    two = [{"customerId": "c", "events": {
        "place_order": {"order_id": "ord-000000001"},
        "refund": {"order_id": "ord-000000002"}}}]
    counted = resent_per_kill(two + two, boundaries=[1])
    assert counted.per_kill == [2] and counted.events == 4


def test_the_benchmark_orders_map_to_items_the_counter_reads() -> None:
    data = [to_item(orjson.loads(value)) for _, value in records(50, 10, seed=3)]
    counted = resent_per_kill(data + data[:5], boundaries=[50])
    assert counted.per_kill == [5] and counted.distinct == 50


def test_the_bound_is_the_configured_one_or_the_default() -> None:
    assert resend_bound({"batch": {"max_resend_events": 5000}}) == 5000
    # the default covers at least the requests in flight (docs/core.md)
    assert resend_bound({"batch": {"max_items": 20, "max_in_flight": 2}}) >= 2 * 20
    assert resend_bound({}) >= resend_bound({"batch": {"max_items": 20}})
