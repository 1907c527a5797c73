"""The sender against a scripted HTTP peer: retries, bisecting, halting, abandoning.

`ScriptedClient` stands in for the network only (canned `Answer`s per request body);
the retry loop, backoff, bisect and bookkeeping under test are the real ones. Batches
are cut by a real `DeliveryCore` from rows whose payload is the mapped `Event`, as the
pipeline hands them in, and outcomes go back through `DeliveryCore.complete`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.config import RetrySettings
from connector.core import Batch, CoreSettings, DeliveryCore, Item, Run
from connector.gameball import Answer, Verdict, encode_request
from connector.ratelimit import RateLimiter, Window
from connector.records import EncodeError, Event, SourceRecord
from connector.sender import Sender, offset_ranges

OK = Answer(200, {"jobId": 1})
BAD = Answer(412, {"code": 2000, "type": "Request Error", "message": "blocked"}, request_id="r")
FAST = RetrySettings(initial_backoff_ms=1, max_backoff_ms=2, auth_backoff_ms=1)


class ScriptedClient:
    """`send(body)` answers from `script(call_number, customers)`; keeps every request."""

    endpoint = "batch"

    def __init__(self, script: Callable[[int, list[str]], Answer]) -> None:
        self.script = script
        self.requests: list[list[str]] = []
        self.sizes: list[int] = []

    def send(self, body: bytes) -> Answer:
        self.sizes.append(len(body))
        customers = [item["customerId"] for item in orjson.loads(body)["body"]]
        self.requests.append(customers)
        return self.script(len(self.requests), customers)


class Hooks:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def names(self, name: str) -> list[Any]:
        return [arg for n, arg in self.calls if n == name]

    def request_done(self, status: int | None, seconds: float, items: int) -> None:
        self.calls.append(("request_done", status))

    def retrying(self, reason: str, answer: Answer, items: Sequence[Item]) -> None:
        self.calls.append(("retrying", reason))

    def possible_duplicate(self, items: Sequence[Item]) -> None:
        self.calls.append(("possible_duplicate", offset_ranges(items)))

    def rate_limited(self, seconds: float) -> None:
        self.calls.append(("rate_limited", seconds))

    def halted(self, answer: Answer, verdict: Verdict) -> None:
        self.calls.append(("halted", verdict.reason))

    def recovered(self) -> None:
        self.calls.append(("recovered", None))


def cut(events: list[tuple[int, str, str]]) -> tuple[DeliveryCore, Batch]:
    """A core fed `(offset, customer, name)` events of partition t[0] (in offset order),
    and the one batch it cuts of them; a row's payload is the `Event`."""
    core = DeliveryCore(CoreSettings(max_items=100, linger_s=0.0, resend_bound=10_000))
    rows = [(off, cid, name, Event(cid, name, {"n": off}, SourceRecord("t", b"{}", 0, off)))
            for off, cid, name in events]
    core.ingest([Run("t", 0, rows)], 0.0)
    batch = core.next_batch(0.0, force=True)
    assert batch is not None and batch.events == len(events)
    return core, batch


def batch_of(customers: list[str]) -> Batch:
    """One item per customer (distinct), one event each, at offsets 0, 1, ..."""
    return cut([(off, cid, "place_order") for off, cid in enumerate(customers)])[1]


def event_of(item: Item, name: str = "place_order") -> Event:
    (ev,) = [row[3] for _seg, row in item.entries if row[2] == name]
    assert isinstance(ev, Event)
    return ev


def make(
    script: Callable[[int, list[str]], Answer],
    retry: RetrySettings = FAST,
    limiter: RateLimiter | None = None,
    stop: threading.Event | None = None,
    encode: Callable[[Sequence[Item], bool, Any], bytes] = encode_request,
) -> tuple[Sender, ScriptedClient, Hooks]:
    client = ScriptedClient(script)
    hooks = Hooks()
    sender = Sender(client, limiter, retry, hooks, stop or threading.Event(),  # type: ignore[arg-type]
                    encode=encode)
    return sender, client, hooks


def accepted_customers(delivery: Any) -> list[str]:
    return [item.customer_id for items, _job in delivery.accepted for item in items]


# --- bisecting ---------------------------------------------------------------------------


def test_bisect_isolates_the_bad_items_and_delivers_the_rest() -> None:
    customers = [f"c{i}" for i in range(16)]
    bad = {"c3", "c12"}
    sender, client, _ = make(lambda _n, cs: BAD if bad & set(cs) else OK)
    delivery = sender.deliver(batch_of(customers))
    assert sorted(accepted_customers(delivery)) == sorted(set(customers) - bad)
    assert sorted(item.customer_id for item, _ in delivery.rejected) == sorted(bad)
    assert all(answer.code == 2000 and answer.request_id == "r" for _, answer in delivery.rejected)
    assert not delivery.abandoned
    # every good item was accepted exactly once; bisect cost stays logarithmic per bad item
    sent_ok = [c for cs in client.requests if not bad & set(cs) for c in cs]
    assert sorted(sent_ok) == sorted(set(customers) - bad)
    assert len(client.requests) <= 1 + 2 * len(bad) * 4


@settings(max_examples=40, deadline=None)
@given(size=st.integers(1, 40), data=st.data())
def test_every_item_ends_in_exactly_one_list(size: int, data: st.DataObject) -> None:
    customers = [f"c{i}" for i in range(size)]
    bad = set(data.draw(st.lists(st.sampled_from(customers), max_size=size)))
    sender, _, _ = make(lambda _n, cs: BAD if bad & set(cs) else OK)
    delivery = sender.deliver(batch_of(customers))
    rejected = [item.customer_id for item, _ in delivery.rejected]
    assert sorted(accepted_customers(delivery) + rejected) == sorted(customers)
    assert set(rejected) == bad


def test_retries_inside_a_bisected_half_do_not_lose_it() -> None:
    """A 500 while bisecting is retried like any other; the half is not dead-lettered."""

    failed_once: list[int] = []

    def script(n: int, cs: list[str]) -> Answer:
        if "c1" in cs:
            return BAD
        if not failed_once:
            failed_once.append(n)
            return Answer(500, None)
        return OK

    sender, _, hooks = make(script)
    delivery = sender.deliver(batch_of(["c0", "c1", "c2", "c3"]))
    assert sorted(accepted_customers(delivery)) == ["c0", "c2", "c3"]
    assert [i.customer_id for i, _ in delivery.rejected] == ["c1"]
    assert hooks.names("retrying") == ["server_error"]


# --- retrying ------------------------------------------------------------------------------


def test_retries_until_success() -> None:
    answers = [Answer(500, None), Answer(None, error="NewConnectionError"), Answer(429, None),
               Answer(422, {"code": 2001}), Answer(503, None), OK]
    sender, client, hooks = make(lambda n, _cs: answers[n - 1])
    delivery = sender.deliver(batch_of(["a", "b"]))
    assert accepted_customers(delivery) == ["a", "b"]
    assert delivery.accepted[0][1] == 1  # the jobId
    assert len(client.requests) == 6
    assert hooks.names("retrying") == [
        "server_error", "connection", "rate_limited", "concurrent_customer", "server_error"
    ]


def test_max_attempts_dead_letters_everything_without_bisecting() -> None:
    retry = RetrySettings(max_attempts=3, initial_backoff_ms=1, max_backoff_ms=2)
    sender, client, _ = make(lambda _n, _cs: Answer(503, None), retry)
    delivery = sender.deliver(batch_of([f"c{i}" for i in range(8)]))
    assert not delivery.accepted
    assert len(delivery.rejected) == 8
    assert len(client.requests) == 3  # exhausted retries do not split the batch


def test_unlimited_by_default() -> None:
    sender, client, _ = make(lambda n, _cs: OK if n == 40 else Answer(502, None))
    delivery = sender.deliver(batch_of(["a"]))
    assert accepted_customers(delivery) == ["a"]
    assert len(client.requests) == 40


def test_retry_after_is_honoured() -> None:
    limiter = RateLimiter([Window(1000, 1.0)], 0.0)
    answers = [Answer(429, None, retry_after=0.3), OK]
    sender, _, hooks = make(lambda n, _cs: answers[n - 1], limiter=limiter)
    started = time.monotonic()
    delivery = sender.deliver(batch_of(["a"]))
    assert time.monotonic() - started >= 0.3
    assert hooks.names("retrying") == ["rate_limited"]
    assert accepted_customers(delivery) == ["a"]
    assert limiter.penalty == 0.5  # and the limiter slowed down


# --- halting ---------------------------------------------------------------------------


def test_halt_keeps_retrying_and_never_rejects() -> None:
    retry = RetrySettings(max_attempts=2, initial_backoff_ms=1, max_backoff_ms=2,
                          auth_backoff_ms=1)
    answers = [Answer(403, {"code": 1002})] * 5 + [Answer(422, {"code": 6001}), OK]
    sender, client, hooks = make(lambda n, _cs: answers[n - 1], retry)
    delivery = sender.deliver(batch_of(["a", "b"]))
    assert accepted_customers(delivery) == ["a", "b"]
    assert not delivery.rejected
    assert len(client.requests) == 7  # more than max_attempts: credentials are not the data
    assert hooks.names("halted") == ["auth"] * 5 + ["account"]
    assert len(hooks.names("recovered")) == 1


# --- stopping ----------------------------------------------------------------------------


def test_stop_abandons_a_retrying_batch() -> None:
    stop = threading.Event()

    def script(n: int, _cs: list[str]) -> Answer:
        if n == 3:
            stop.set()
        return Answer(500, None)

    sender, client, _ = make(script, stop=stop)
    delivery = sender.deliver(batch_of(["a", "b", "c"]))
    assert [i.customer_id for i in delivery.abandoned] == ["a", "b", "c"]
    assert not delivery.accepted and not delivery.rejected
    assert len(client.requests) == 3


def test_stop_abandons_a_halted_batch_too() -> None:
    stop = threading.Event()
    retry = RetrySettings(auth_backoff_ms=60_000)
    sender, _, _ = make(lambda _n, _cs: Answer(401, None), retry, stop=stop)
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    delivery = sender.deliver(batch_of(["a"]))
    assert time.monotonic() - started < 5
    assert len(delivery.abandoned) == 1


def test_stop_while_waiting_for_the_rate_limiter() -> None:
    stop = threading.Event()
    limiter = RateLimiter([Window(1, 1.0)], 0.0)
    limiter.set_share(0, 3)  # owns nothing: would wait forever
    sender, client, hooks = make(lambda _n, _cs: OK, limiter=limiter, stop=stop)
    threading.Timer(0.2, stop.set).start()
    delivery = sender.deliver(batch_of(["a"]))
    assert len(delivery.abandoned) == 1
    assert not client.requests
    assert hooks.names("rate_limited")


# --- unknown outcomes --------------------------------------------------------------------


def test_answer_lost_after_sending_counts_possible_duplicates() -> None:
    answers = [Answer(None, error="read timed out", maybe_sent=True), OK]
    sender, _, hooks = make(lambda n, _cs: answers[n - 1])
    delivery = sender.deliver(batch_of(["a", "b", "c"]))
    assert delivery.possible_duplicates == 3
    assert hooks.names("possible_duplicate") == ["t[0]@0-2"]  # from the items' rows
    assert accepted_customers(delivery) == ["a", "b", "c"]


def test_no_answer_before_sending_is_not_a_duplicate() -> None:
    answers = [Answer(None, error="NewConnectionError: refused", maybe_sent=False), OK]
    sender, _, hooks = make(lambda n, _cs: answers[n - 1])
    delivery = sender.deliver(batch_of(["a", "b"]))
    assert delivery.possible_duplicates == 0
    assert hooks.names("possible_duplicate") == []


def test_rate_limiter_paces_the_requests() -> None:
    limiter = RateLimiter([Window(20, 1.0)], 0.0)
    sender, client, hooks = make(lambda _n, _cs: OK, limiter=limiter)
    started = time.monotonic()
    for _ in range(5):
        sender.deliver(batch_of(["a"]))
    elapsed = time.monotonic() - started
    assert len(client.requests) == 5
    assert elapsed >= 4 / 20  # 5 sends need at least 4 refills at 20/s (less the burst)
    assert hooks.names("rate_limited")


def test_a_body_over_max_bytes_is_split_and_every_item_still_goes() -> None:
    customers = [f"c{i}" for i in range(40)]
    client = ScriptedClient(lambda n, sent: Answer(200, {"jobId": n}))
    sender = Sender(client, None, FAST, Hooks(), threading.Event(),  # type: ignore[arg-type]
                    max_bytes=800)
    delivery = sender.deliver(batch_of(customers))
    assert sorted(accepted_customers(delivery)) == sorted(customers)
    assert len(client.sizes) > 1 and max(client.sizes) <= 800
    assert len(encode_request(batch_of(customers).items)) > 800  # it really had to split


# --- encoding ----------------------------------------------------------------------------


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"d": value}
    return value


def test_events_that_cannot_be_encoded_are_taken_out_before_any_request() -> None:
    # c3's item holds three events (distinct names); only its bad one leaves it.
    _core, batch = cut([(0, "c0", "place_order"), (1, "c1", "place_order"),
                        (2, "c2", "place_order"), (3, "c3", "place_order"),
                        (9, "c3", "refund"), (10, "c3", "review")])
    deep = event_of(batch.items[1])
    deep.metadata = {"deep": nested(300)}
    huge = event_of(batch.items[2])
    huge.metadata = {"n": 2**70}
    bad = event_of(batch.items[3], "review")
    bad.metadata = {"deep": nested(252)}
    sender, client, _ = make(lambda _n, _cs: OK)
    delivery = sender.deliver(batch)
    assert all(len(item.entries) == 1 for item, _ in delivery.failed)  # one event each
    failed = {id(event_of(item, item.entries[0][1][2])): err for item, err in delivery.failed}
    assert set(failed) == {id(deep), id(huge), id(bad)}
    assert {(e.stage, e.reason) for e in failed.values()} == {("encode", "unencodable")}
    assert client.requests == [["c0", "c3"]]  # one request, without the bad events
    sent = [row[0] for items, _ in delivery.accepted for item in items for _s, row in item.entries]
    assert sorted(sent) == [0, 3, 9]


def test_a_sender_defect_fails_the_batch_events_and_never_raises() -> None:
    def broken(_n: int, _cs: list[str]) -> Answer:
        raise RuntimeError("boom")

    sender, _, _ = make(broken)
    batch = batch_of(["c0", "c1"])
    delivery = sender.deliver(batch)
    assert [item.customer_id for item, _ in delivery.failed] == ["c0", "c1"]
    assert {(e.stage, e.reason) for _, e in delivery.failed} == {("send", "sender_failed")}
    assert "RuntimeError: boom" in delivery.failed[0][1].detail


def test_an_encoder_defect_reaches_neither_the_loop_thread_nor_gameball() -> None:
    """`body` runs on the loop thread (`Senders.submit`): a defect there gives no body,
    and `deliver` fails the batch's events as the sender's own failure."""
    def broken(_items: Sequence[Item], _batch: bool = True, _payloads: Any = None) -> bytes:
        raise RuntimeError("encoder defect")

    sender, client, _ = make(lambda n, _cs: OK, encode=broken)
    batch = batch_of(["c0", "c1"])
    assert sender.body(batch) is None
    delivery = sender.deliver(batch, sender.body(batch))
    assert [item.customer_id for item, _ in delivery.failed] == ["c0", "c1"]
    assert {(e.stage, e.reason) for _, e in delivery.failed} == {("send", "sender_failed")}
    assert client.requests == []


def test_a_body_is_encoded_once_per_request_not_per_attempt() -> None:
    """Retries send the same bytes again; only the halves of a bisected batch are new."""
    encoded: list[int] = []

    def counting(items: Sequence[Item], batch_endpoint: bool = True,
                 payloads: Any = None) -> bytes:
        encoded.append(len(items))
        return encode_request(items, batch_endpoint)

    answers = [Answer(500, None), Answer(503, None), OK]
    sender, client, _ = make(lambda n, _cs: answers[n - 1], encode=counting)
    sender.deliver(batch_of(["a", "b", "c", "d"]))
    assert len(client.requests) == 3 and encoded == [4]
    encoded.clear()
    sender, client, _ = make(lambda _n, cs: BAD if "c" in cs else OK, encode=counting)
    sender.deliver(batch_of(["a", "b", "c", "d"]))
    assert encoded == [4, 2, 2, 1, 1]  # the batch, its halves, the bad half's halves
    assert len(client.requests) == 5


def test_a_delivery_completes_its_core_batch_and_each_letter_carries_its_event() -> None:
    """The outcome goes to `DeliveryCore.complete` as it is: accepted events counted per
    segment, rejected and unencodable ones back as letters with their `Event` (whose
    record the pipeline dead-letters), abandoned ones left undone."""
    core, batch = cut([(0, "a", "buy"), (1, "a", "view"), (2, "b", "buy"), (3, "c", "buy")])
    event_of(batch.items[2], "buy").metadata = {"n": 2**70}  # c's event cannot be encoded
    sender, _, _ = make(lambda _n, cs: BAD if "b" in cs else OK)
    delivery = sender.deliver(batch)
    assert [item.customer_id for items, _ in delivery.accepted for item in items] == ["a"]
    done = core.complete(batch, 0.0, [*delivery.rejected, *delivery.failed], delivery.abandoned)
    assert done.accepted == 2  # a's two events
    assert [(ltr.offset, ltr.customer_id, ltr.name) for ltr in done.letters] == [
        (2, "b", "buy"), (3, "c", "buy")]
    assert [type(ltr.cause) for ltr in done.letters] == [Answer, EncodeError]
    assert [ltr.payload.record.offset() for ltr in done.letters] == [2, 3]
    assert core.undone() == 2  # both await their dead-letter copy
    for letter in done.letters:
        core.dead_lettered(letter)
    assert core.commits() == [("t", 0, 4)]
