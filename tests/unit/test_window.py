"""The window: limits, same-name events, in-flight customers, and (hypothesis) every
event comes out exactly once with per-customer order kept."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.records import Batch, Event, SourceRecord
from connector.window import Windower


def ev(customer: str, name: str, n: int = 0, **meta: object) -> Event:
    e = Event(customer, name, {"n": n, **meta}, SourceRecord("t", b"{}", offset_=n))
    e.payload = orjson.dumps(e.metadata)
    return e


def drain(w: Windower) -> list[Batch]:
    """Take and complete batches until the window is empty (as the sender would)."""
    out: list[Batch] = []
    while not w.is_empty():
        w.flush()
        taken = []
        while (b := w.take()) is not None:
            taken.append(b)
        assert taken, "window holds events but seals no batch"
        for b in taken:
            w.complete(b)
        out.extend(taken)
    return out


def test_different_events_of_one_customer_share_an_item() -> None:
    w = Windower(1000, 1 << 20, 1.0)
    w.add(ev("c1", "place_order", 1), 0)
    w.add(ev("c1", "write_review", 2), 0)
    (batch,) = drain(w)
    assert len(batch.items) == 1
    assert set(batch.items[0].events) == {"place_order", "write_review"}


def test_same_name_events_of_one_customer_are_two_items_never_merged() -> None:
    w = Windower(1000, 1 << 20, 1.0)
    w.add(ev("c1", "place_order", 1), 0)
    w.add(ev("c1", "place_order", 2), 0)
    (batch,) = drain(w)
    bodies = [item.body() for item in batch.items]
    assert bodies == [
        {"customerId": "c1", "events": {"place_order": {"n": 1}}},
        {"customerId": "c1", "events": {"place_order": {"n": 2}}},
    ]


def test_batch_closes_at_max_items() -> None:
    w = Windower(3, 1 << 20, 10.0)
    for i in range(7):
        w.add(ev(f"c{i}", "e", i), 0)
    sizes = [len(b) for b in drain(w)]
    assert sizes == [3, 3, 1]


def test_batch_closes_at_max_bytes() -> None:
    w = Windower(1000, 2000, 10.0)
    for i in range(20):
        w.add(ev(f"c{i}", "e", i, blob="x" * 200), 0)
    batches = drain(w)
    assert len(batches) > 1
    from connector.gameball import encode_batch

    assert all(len(encode_batch(b)) <= 2000 for b in batches)
    assert sum(len(b) for b in batches) == 20


def test_linger_closes_the_open_batch() -> None:
    w = Windower(1000, 1 << 20, 0.5)
    w.add(ev("c1", "e"), 10.0)
    assert w.poll(10.2) is not None and w.take() is None
    assert w.poll(10.5) is None
    assert w.take() is not None


def test_customer_in_flight_waits_until_its_batch_completes() -> None:
    w = Windower(1000, 1 << 20, 0.0)
    w.add(ev("c1", "e", 1), 0)
    w.poll(0)
    first = w.take()
    assert first is not None
    w.add(ev("c1", "e", 2), 0)
    w.add(ev("c2", "e", 3), 0)
    w.poll(1)
    second = w.take()
    assert second is not None and second.customers() == {"c2"}
    assert w.waiting() == 1
    w.complete(first)
    w.poll(2)
    third = w.take()
    assert third is not None and [i.body()["events"]["e"]["n"] for i in third.items] == [2]


def test_discard_drops_only_matching_events_and_keeps_order() -> None:
    w = Windower(2, 1 << 20, 10.0)
    for i in range(5):
        w.add(ev("c1" if i % 2 else "c2", "e", i), 0)
    removed = w.discard(lambda e: e.metadata["n"] == 2)
    assert removed == 1
    assert w.buffered == 4
    out = [e.metadata["n"] for b in drain(w) for e in b.events()]
    assert sorted(out) == [0, 1, 3, 4]


ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 5), st.sampled_from(["a", "b", "c"])),
        st.tuples(st.just("tick"), st.floats(0, 0.3), st.just("")),
        st.tuples(st.just("take"), st.integers(0, 0), st.just("")),
        st.tuples(st.just("complete"), st.integers(0, 10), st.just("")),
    ),
    max_size=200,
)


@settings(max_examples=200, deadline=None)
@given(ops=ops, max_items=st.integers(1, 6))
def test_every_event_once_within_limits_per_customer_order(
    ops: list[tuple[str, int | float, str]], max_items: int
) -> None:
    w = Windower(max_items, 1 << 20, 0.2)
    now = 0.0
    seq = 0
    outstanding: list[Batch] = []
    taken: list[Batch] = []
    for op, arg, name in ops:
        if op == "add":
            w.add(ev(f"c{arg}", name, seq), now)
            seq += 1
        elif op == "tick":
            now += float(arg)
            w.poll(now)
        elif op == "take":
            b = w.take()
            if b is not None:
                busy = {c for o in outstanding for c in o.customers()}
                assert not (b.customers() & busy), "a customer is in two requests at once"
                outstanding.append(b)
                taken.append(b)
        elif outstanding:
            w.complete(outstanding.pop(int(arg) % len(outstanding)))
    # finish: complete everything, keep taking until empty
    for _ in range(seq + 2):
        for b in outstanding:
            w.complete(b)
        outstanding = []
        w.flush()
        while (b := w.take()) is not None:
            outstanding.append(b)
            taken.append(b)
    for b in outstanding:
        w.complete(b)
    assert w.is_empty() and w.buffered == 0
    seen = [e.metadata["n"] for b in taken for e in b.events()]
    assert sorted(seen) == list(range(seq)), "every event exactly once"
    for b in taken:
        assert 1 <= len(b.items) <= max_items
        for item in b.items:
            assert all(e.customer_id == item.customer_id for e in item.events.values())
    # per customer: events come out in read order across batches
    position = {e.metadata["n"]: i for i, b in enumerate(taken) for e in b.events()}
    by_customer: dict[str, list[int]] = {}
    for b in taken:
        for e in b.events():
            by_customer.setdefault(e.customer_id, []).append(e.metadata["n"])
    for numbers in by_customer.values():
        numbers.sort()
        batches = [position[n] for n in numbers]
        assert batches == sorted(batches), "per-customer order kept"
