"""The delivery core against a model (hypothesis state machine): every event ends exactly
once, commits never pass an unfinished record nor go back, what a SIGKILL would re-send
stays within the bound, a customer is never in two requests at once, same-name events
are never merged, per-customer order is kept, revoke drops cleanly, and a drain always
finishes (the crash budget never deadlocks). Commits are stored or refused by the broker
when handed; the core hears it at once, never, or later (an asynchronous commit's answer,
served inside a later consume(), in any order, also after a revoke), and what a SIGKILL
would re-send is counted from what the broker stored."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from connector.core import Batch, CoreSettings, DeliveryCore, Letter, Run

TOPIC = "t"
PARTITIONS = (0, 1)
CUSTOMERS = ("a", "b", "c", "d")
NAMES = ("buy", "visit")


@dataclass
class Ev:
    id: int
    partition: int
    offset: int
    customer: str
    name: str


@dataclass
class Owned:
    """The model of one assigned partition (a fresh one after each re-assignment)."""

    next_offset: int = 0
    read_any: bool = False
    undone: dict[int, int] = field(default_factory=dict)  # offset -> events not done
    accepted: list[Ev] = field(default_factory=list)
    last_commit: int | None = None
    confirmed: int | None = None


def event_id(row: tuple[object, ...]) -> int:
    payload = row[3]
    assert isinstance(payload, dict)
    return int(payload["id"])


class CoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.configure(3, 2, 3, 12)
        self.owned = {p: Owned() for p in PARTITIONS}
        self.now = 0.0
        self.next_id = 0
        self.events: dict[int, Ev] = {}
        self.waiting: dict[str, list[int]] = {c: [] for c in CUSTOMERS}  # read order
        self.in_flight: list[Batch] = []
        self.letters: list[tuple[Letter, int]] = []  # with the event id each settles
        self.ended: dict[int, str] = {}  # event id -> accepted | dead-lettered
        self.stale: set[int] = set()  # events of revoked partitions: may never end
        # The broker's side of commits: what it stored per partition (it applies commits
        # in the order they were handed), and answers not yet delivered to the core
        # (asynchronous commits: they come late, in any order, or never; also after a
        # revoke, to the partition's next state).
        self.stored: dict[int, int | None] = dict.fromkeys(PARTITIONS)
        self.answers: list[tuple[int, int, bool]] = []  # (partition, offset, stored)

    def configure(self, max_items: int, max_in_flight: int, segment: int, bound: int) -> None:
        self.cfg = CoreSettings(max_items=max_items, linger_s=0.5, max_in_flight=max_in_flight,
                                max_buffered_events=10_000, resend_bound=bound,
                                segment_events=segment)
        self.core = DeliveryCore(self.cfg)
        for p in PARTITIONS:
            self.core.assign(TOPIC, p)

    @initialize(max_items=st.integers(1, 4), max_in_flight=st.integers(1, 3),
                segment=st.integers(2, 3), slack=st.integers(1, 10))
    def settings(self, max_items: int, max_in_flight: int, segment: int, slack: int) -> None:
        """Tight budgets too: the bound may leave room for less than one full batch."""
        self.configure(max_items, max_in_flight, segment, segment + slack)

    # --- model helpers ------------------------------------------------------------

    def _finish(self, ev_id: int, how: str) -> None:
        assert ev_id not in self.ended, f"event {ev_id} ended twice"
        ev = self.events[ev_id]
        if ev_id in self.stale:
            return
        self.ended[ev_id] = how
        own = self.owned[ev.partition]
        own.undone[ev.offset] -= 1
        if not own.undone[ev.offset]:
            del own.undone[ev.offset]
        if how == "accepted":
            own.accepted.append(ev)

    def _resend_after_kill(self) -> int:
        """What a SIGKILL now makes the next owner send again, from the model alone:
        requests in flight, plus accepted events from the offset the broker stored on
        (dead-lettered ones are only copied to the dead-letter topic again)."""
        n = sum(b.events for b in self.in_flight)
        for p, own in self.owned.items():
            start = self.stored[p]
            n += sum(1 for ev in own.accepted if start is None or ev.offset >= start)
        return n

    # --- rules --------------------------------------------------------------------

    @rule(p=st.sampled_from(PARTITIONS),
          records=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2),
                                     st.lists(st.tuples(st.sampled_from(CUSTOMERS),
                                                        st.sampled_from(NAMES)),
                                              min_size=0, max_size=2)),
                           min_size=1, max_size=6),
          served=st.booleans())
    def consume(self, p: int, records: list[tuple[int, int, list[tuple[str, str]]]],
                served: bool = False) -> None:
        """A consumed run: gaps, skipped (no events), bad (dead-letter) and 1-2 events.
        `served`: librdkafka serves the answers of asynchronous commits inside consume()."""
        while served and self.answers:
            self._answer(0)
        own = self.owned[p]
        rows, skipped, failed = [], [], []
        offset = own.next_offset
        for gap, kind, evs in records:
            offset += gap
            if kind == 0 and evs:
                own.undone[offset] = len(evs)
                for cid, name in evs:
                    ev = Ev(self.next_id, p, offset, cid, name)
                    self.events[ev.id] = ev
                    self.waiting[cid].append(ev.id)
                    rows.append((offset, cid, name, {"id": ev.id}))
                    self.next_id += 1
            elif kind == 1:
                failed.append(offset)
                own.undone[offset] = 1
            else:
                skipped.append(offset)
            offset += 1
        own.next_offset = offset
        own.read_any = True
        for letter in self.core.ingest([Run(TOPIC, p, rows, skipped, failed)], self.now):
            ev = Ev(-1 - len(self.events), p, letter.offset, "", "")
            self.events[ev.id] = ev
            self.letters.append((letter, ev.id))

    @rule(force=st.booleans(), dt=st.sampled_from([0.0, 0.3, 0.6]))
    def send(self, force: bool, dt: float) -> None:
        self.now += dt
        batch = self.core.next_batch(self.now, force)
        if batch is None:
            return
        assert len(batch.items) <= self.cfg.max_items
        busy = {item.customer_id for b in self.in_flight for item in b.items}
        assert not busy & set(batch.customers()), "customer in two requests at once"
        self.send_recorded(batch)

    @precondition(lambda self: bool(self.in_flight))
    @rule(data=st.data())
    def complete(self, data: st.DataObject) -> None:
        batch = self.in_flight.pop(data.draw(st.integers(0, len(self.in_flight) - 1)))
        rejected = [i for i in batch.items if data.draw(st.integers(0, 4)) == 0]
        out = self.core.complete(batch, self.now, rejected=[(i, None) for i in rejected])
        bad = {id(i) for i in rejected}
        for item in batch.items:
            if id(item) not in bad:
                for _seg, row in item.entries:
                    self._finish(event_id(row), "accepted")
        ids = [event_id(r) for i in rejected for _s, r in i.entries
               if event_id(r) not in self.stale]
        assert [(lt.partition, lt.offset, lt.name) for lt in out.letters] == [
            (self.events[e].partition, self.events[e].offset, self.events[e].name) for e in ids]
        self.letters.extend(zip(out.letters, ids, strict=True))
        if data.draw(st.booleans()):  # the loop's next consume() serves commit answers
            while self.answers:
                self._answer(0)

    @precondition(lambda self: bool(self.letters))
    @rule(data=st.data())
    def dead_letter_acked(self, data: st.DataObject) -> None:
        self._dead_lettered(data.draw(st.integers(0, len(self.letters) - 1)))

    def _dead_lettered(self, index: int) -> None:
        letter, ev_id = self.letters.pop(index)
        self.core.dead_lettered(letter)
        self._finish(ev_id, "dead-lettered")

    @rule(unconfirmed=st.booleans(), confirm=st.booleans(), fail=st.booleans())
    def commit(self, unconfirmed: bool, confirm: bool, fail: bool, later: bool = False) -> None:
        """Hand the core's commits; each is stored or refused by the broker now, and the
        core hears it now, `later` (`answer`), or (`confirm` False) never."""
        for t, p, o in self.core.commits(unconfirmed=unconfirmed):
            own = self.owned[p]
            assert t == TOPIC
            lowest = min(own.undone) if own.undone else own.next_offset
            assert o <= lowest, "commit passes an unfinished record"
            assert own.last_commit is None or o >= own.last_commit or unconfirmed, "went back"
            own.last_commit = o if own.last_commit is None else max(own.last_commit, o)
            if not fail:
                stored = self.stored[p]
                assert stored is None or o >= stored, "the group's offset went back"
                self.stored[p] = o
            if later:
                self.answers.append((p, o, not fail))
            elif fail:
                self.core.commit_failed(t, p)
            elif confirm:
                self.core.confirmed(t, p, o)
                own.confirmed = o if own.confirmed is None else max(own.confirmed, o)

    @rule(unconfirmed=st.booleans(), fail=st.sampled_from([False, False, False, True]))
    def commit_asynchronously(self, unconfirmed: bool, fail: bool) -> None:
        """A commit whose answer comes later (`answer`), as librdkafka's callback does."""
        self.commit(unconfirmed, True, fail, later=True)

    @precondition(lambda self: bool(self.answers))
    @rule(data=st.data())
    def answer(self, data: st.DataObject) -> None:
        """An asynchronous commit's answer reaches the core (any of those under way)."""
        self._answer(data.draw(st.integers(0, len(self.answers) - 1)))

    def _answer(self, index: int) -> None:
        p, o, ok = self.answers.pop(index)
        if ok:
            self.core.confirmed(TOPIC, p, o)
        else:
            self.core.commit_failed(TOPIC, p)

    @rule(p=st.sampled_from(PARTITIONS))
    def revoke_and_reassign(self, p: int) -> None:
        dropped_ids = {e for cid in CUSTOMERS for e in self.waiting[cid]
                       if e >= 0 and self.events[e].partition == p}
        report = self.core.revoke([(TOPIC, p)])
        assert report.dropped == len(dropped_ids)
        for cid in CUSTOMERS:
            self.waiting[cid] = [e for e in self.waiting[cid] if e not in dropped_ids]
        self.stale |= {e.id for e in self.events.values() if e.partition == p}
        # dead-letter copies under way are still acknowledged later: the core ignores them
        self.core.assign(TOPIC, p)
        self.owned[p] = Owned(next_offset=self.stored[p] or 0)  # reads from what is stored
        assert self.core.committable(TOPIC, p) is None

    @rule()
    def drain(self) -> None:
        """Shutdown-like: send everything, accept it, ack dead letters, commit and confirm:
        the core must reach idle (no budget deadlock) with every event ended once."""
        for _ in range(500):
            if self.core.is_idle():
                break
            batch = self.core.next_batch(self.now, force=True)
            if batch is not None:
                self.send_recorded(batch)
                continue
            if self.in_flight:
                self.complete_all()
            elif self.letters:
                while self.letters:
                    self._dead_lettered(0)
            elif self.answers:
                while self.answers:
                    self._answer(0)
            else:
                self.commit(unconfirmed=False, confirm=True, fail=False)
        assert self.core.is_idle(), "the drain did not finish"
        assert self.core.overruns == 0
        live = {e for e in self.events if e not in self.stale}
        assert live <= set(self.ended), "an event did not end"
        self.commit(unconfirmed=True, confirm=True, fail=False)
        for p, own in self.owned.items():
            if own.read_any:
                assert self.core.committable(TOPIC, p) == own.next_offset

    def send_recorded(self, batch: Batch) -> None:
        assert len(batch.items) <= self.cfg.max_items
        mine: dict[str, list[list[int]]] = {}
        for item in batch.items:
            assert len(set(item.names)) == len(item.names), "same-name events merged"
            mine.setdefault(item.customer_id, []).append([event_id(r) for _s, r in item.entries])
        for cid, items in mine.items():
            ids = sorted(e for ids in items for e in ids)
            queue = self.waiting[cid]
            assert ids == queue[: len(ids)], "per-customer order broken"
            del queue[: len(ids)]
            # the j-th event of a name for a customer is in the customer's j-th item
            for j, ids_j in enumerate(items):
                for e in ids_j:
                    name = self.events[e].name
                    assert sum(1 for x in ids if x < e and self.events[x].name == name) == j
        assert batch.events == sum(len(i.entries) for i in batch.items)
        # what a request body is joined from: each item's one payload, in item order
        if all(len(i.entries) == 1 for i in batch.items):
            assert batch.payloads == [i.entries[0][1][3] for i in batch.items]
        else:
            assert batch.payloads is None
        self.in_flight.append(batch)

    def complete_all(self) -> None:
        while self.in_flight:
            batch = self.in_flight.pop(0)
            self.core.complete(batch, self.now)
            for item in batch.items:
                for _seg, row in item.entries:
                    self._finish(event_id(row), "accepted")

    # --- invariants ----------------------------------------------------------------

    @invariant()
    def resend_bound_holds(self) -> None:
        resend = self._resend_after_kill()
        assert resend <= self.core.exposure <= self.cfg.resend_bound, (
            resend, self.core.exposure)

    @invariant()
    def counts_agree(self) -> None:
        waiting = sum(len(q) for q in self.waiting.values())
        assert self.core.waiting == waiting
        assert self.core.in_flight == len(self.in_flight)


CoreMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
test_core_state_machine = CoreMachine.TestCase
