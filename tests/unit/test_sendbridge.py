"""The pipeline's in-flight table: a core batch becomes the sender's batch, and the
sender's outcome comes back as the core's items, with each letter's event."""

from __future__ import annotations

from connector.core import CoreSettings, DeliveryCore, Run
from connector.gameball import Answer
from connector.records import EncodeError, Event, SourceRecord
from connector.sendbridge import InFlight
from connector.sender import Delivery


def event(offset: int, customer: str, name: str) -> Event:
    return Event(customer, name, {"n": offset}, SourceRecord("t", b"{}", 0, offset))


def test_outcome_maps_rejected_failed_and_abandoned_back_and_pairs_letters() -> None:
    core = DeliveryCore(CoreSettings(max_items=10, linger_s=0.0, resend_bound=100))
    evs = [event(0, "a", "buy"), event(1, "a", "view"), event(2, "b", "buy"),
           event(3, "c", "buy"), event(4, "d", "buy")]
    core.ingest([Run("t", 0, [(i, e.customer_id, e.name, e, -1)
                              for i, e in enumerate(evs)])], 0.0)
    cut = core.next_batch(0.0, force=True)
    assert cut is not None
    table = InFlight()
    sent = table.send(cut)
    assert [(i.customer_id, sorted(i.events)) for i in sent.items] == [
        ("a", ["buy", "view"]), ("b", ["buy"]), ("c", ["buy"]), ("d", ["buy"])]
    assert sent.event_count == 5 and len(table) == 1
    a, b, c, d = sent.items
    answer = Answer(400, {"code": 4001})
    bad = EncodeError("unencodable", "x")
    outcome = Delivery(sent, accepted=[([a], 7)], rejected=[(b, answer)],
                       abandoned=[d], failed=[(c.events["buy"], bad)])
    batch, rejected, abandoned, letter_events = table.outcome(outcome)
    assert batch is cut and len(table) == 0
    assert [(item.customer_id, cause) for item, cause in rejected] == [("b", answer), ("c", bad)]
    assert [item.customer_id for item in abandoned] == ["d"]
    done = core.complete(batch, 0.0, rejected, abandoned)
    assert done.accepted == 2  # a's two events
    assert [(ltr.offset, ltr.cause) for ltr in done.letters] == [(2, answer), (3, bad)]
    assert letter_events == [evs[2], evs[3]]
    assert core.undone() == 3  # two awaiting their dead letter, d's event read again


def test_a_fully_accepted_delivery_needs_no_lookup() -> None:
    core = DeliveryCore(CoreSettings(max_items=10, linger_s=0.0, resend_bound=100))
    ev = event(0, "a", "buy")
    core.ingest([Run("t", 0, [(0, "a", "buy", ev, -1)])], 0.0)
    cut = core.next_batch(0.0, force=True)
    assert cut is not None
    table = InFlight()
    sent = table.send(cut)
    batch, rejected, abandoned, letters = table.outcome(Delivery(sent, accepted=[(sent.items, 1)]))
    assert (batch, rejected, abandoned, letters) == (cut, [], [], [])
    assert core.complete(batch, 0.0).accepted == 1
