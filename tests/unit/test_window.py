"""The window: limits, same-name events, in-flight customers, and (hypothesis) every
event comes out exactly once with per-customer order kept."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from connector.records import Batch, Event, SourceRecord
from connector.window import Windower


def ev(customer: str, name: str, n: int = 0, **meta: object) -> Event:
    e = Event(customer, name, {"n": n, **meta}, SourceRecord("t", b"{}", offset_=n))
    return e


def drain(w: Windower, now: float = 0.0) -> list[Batch]:
    """Take and complete batches until the window is empty (as the pipeline would)."""
    out: list[Batch] = []
    while not w.is_empty():
        taken = []
        while (b := w.take(now, force=True)) is not None:
            taken.append(b)
        assert taken, "window holds events but cuts no batch"
        for b in taken:
            w.complete(b, now)
        out.extend(taken)
    return out


def numbers(batch: Batch) -> list[int]:
    return [e.metadata["n"] for e in batch.events()]


def test_different_events_of_one_customer_share_an_item() -> None:
    w = Windower(1000, 1.0)
    w.add(ev("c1", "place_order", 1), 0)
    w.add(ev("c1", "write_review", 2), 0)
    (batch,) = drain(w)
    assert len(batch.items) == 1
    assert set(batch.items[0].events) == {"place_order", "write_review"}


def test_same_name_events_of_one_customer_are_two_items_never_merged() -> None:
    w = Windower(1000, 1.0)
    w.add(ev("c1", "place_order", 1), 0)
    w.add(ev("c1", "place_order", 2), 0)
    (batch,) = drain(w)
    assert [item.body() for item in batch.items] == [
        {"customerId": "c1", "events": {"place_order": {"n": 1}}},
        {"customerId": "c1", "events": {"place_order": {"n": 2}}},
    ]


def test_a_full_batch_is_due_at_once_and_holds_max_items() -> None:
    w = Windower(3, 10.0)
    for i in range(7):
        w.add(ev(f"c{i}", "e", i), 0)
    assert w.full()
    first = w.take(0)
    assert first is not None and numbers(first) == [0, 1, 2]
    second = w.take(0)
    assert second is not None and numbers(second) == [3, 4, 5]
    assert w.take(0) is None  # one event left: waits for linger
    assert w.due_in(0) == 10.0
    last = w.take(10.0)
    assert last is not None and numbers(last) == [6]


def test_linger_counts_from_the_first_ready_event() -> None:
    w = Windower(1000, 0.5)
    w.add(ev("c1", "e"), 10.0)
    w.add(ev("c2", "e"), 10.4)
    assert w.take(10.2) is None
    assert abs((w.due_in(10.2) or 0) - 0.3) < 1e-9
    batch = w.take(10.5)
    assert batch is not None and len(batch) == 2


def test_customer_in_flight_waits_then_leaves_first() -> None:
    w = Windower(2, 0.0)
    w.add(ev("c1", "e", 1), 0)
    first = w.take(0)
    assert first is not None
    w.add(ev("c1", "e", 2), 0)  # c1 is in flight: held back
    w.add(ev("c2", "e", 3), 0)
    w.add(ev("c3", "e", 4), 0)
    w.add(ev("c4", "e", 5), 0)
    second = w.take(0)
    assert second is not None and numbers(second) == [3, 4]
    w.complete(first, 0)
    third = w.take(0)
    # the held event is the oldest: it goes out in the very next batch
    assert third is not None and numbers(third) == [2, 5]


def test_add_many_is_add_in_order_with_busy_customers_held() -> None:
    w = Windower(3, 0.5)
    w.add(ev("c1", "e", 1), 0)
    first = w.take(0, force=True)
    assert first is not None
    w.add_many([ev("c1", "e", 2), ev("c2", "e", 3), ev("c2", "f", 4), ev("c3", "e", 5)], 1.0)
    assert (w.ready, w.buffered, w.waiting()) == (3, 5, 4)  # c1's event is held
    assert w.due_in(1.2) == 0.0  # three ready: a full batch
    second = w.take(1.2)
    assert second is not None and numbers(second) == [3, 4, 5]
    w.complete(first, 2.0)
    third = w.take(2.0, force=True)
    assert third is not None and numbers(third) == [2]


def test_discard_drops_only_matching_waiting_events() -> None:
    w = Windower(2, 10.0)
    for i in range(5):
        w.add(ev("c1" if i % 2 else "c2", "e", i), 0)
    removed = w.discard(lambda e: e.metadata["n"] == 2)
    assert removed == 1
    assert w.buffered == 4
    out = sorted(n for b in drain(w) for n in numbers(b))
    assert out == [0, 1, 3, 4]


ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 5), st.sampled_from(["a", "b", "c"])),
        st.tuples(st.just("tick"), st.floats(0, 0.3), st.just("")),
        st.tuples(st.just("take"), st.integers(0, 1), st.just("")),
        st.tuples(st.just("complete"), st.integers(0, 10), st.just("")),
    ),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(ops=ops, max_items=st.integers(1, 6))
def test_every_event_once_within_limits_per_customer_order(
    ops: list[tuple[str, int | float, str]], max_items: int
) -> None:
    w = Windower(max_items, 0.2)
    now = 0.0
    seq = 0
    outstanding: list[Batch] = []
    taken: list[Batch] = []

    def take(force: bool) -> None:
        b = w.take(now, force)
        if b is not None:
            busy = {c for o in outstanding for c in o.customers()}
            assert not (b.customers() & busy), "a customer is in two requests at once"
            outstanding.append(b)
            taken.append(b)

    for op, arg, name in ops:
        if op == "add":
            w.add(ev(f"c{arg}", name, seq), now)
            seq += 1
        elif op == "tick":
            now += float(arg)
        elif op == "take":
            take(bool(arg))
        elif outstanding:
            w.complete(outstanding.pop(int(arg) % len(outstanding)), now)
        assert w.ready <= w.waiting() <= w.buffered
    for _ in range(seq + 2):  # finish: complete everything, keep taking until empty
        for b in outstanding:
            w.complete(b, now)
        outstanding = []
        while True:
            before = len(outstanding)
            take(True)
            if len(outstanding) == before:
                break
    for b in outstanding:
        w.complete(b, now)
    assert w.is_empty() and w.buffered == 0 and w.ready == 0
    seen = [n for b in taken for n in numbers(b)]
    assert sorted(seen) == list(range(seq)), "every event exactly once"
    for b in taken:
        assert 1 <= len(b.items) <= max_items
        for item in b.items:
            assert all(e.customer_id == item.customer_id for e in item.events.values())
    position = {n: i for i, b in enumerate(taken) for n in numbers(b)}
    by_customer: dict[str, list[int]] = {}
    for b in taken:
        for e in b.events():
            by_customer.setdefault(e.customer_id, []).append(e.metadata["n"])
    for ns in by_customer.values():
        ns.sort()
        order = [position[n] for n in ns]
        assert order == sorted(order), "per-customer order kept"
