"""The offset tracker: the committable offset never passes an unacked record and
never moves backwards, whatever order acks arrive in (hypothesis state machine)."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from connector.offsets import OffsetTracker, PartitionOffsets


def test_skipped_records_never_hold_a_partition_back() -> None:
    part = PartitionOffsets("t", 0)
    part.read(0, 0)
    part.read(1, 0)
    assert part.committable() == 2


def test_commit_stops_at_the_first_unacked_record() -> None:
    part = PartitionOffsets("t", 0)
    part.read(10, 1)
    part.read(11, 0)
    part.read(12, 2)
    assert part.committable() == 10
    part.ack(12)
    part.ack(12)
    assert part.committable() == 10  # 12 is done, 10 is not
    part.ack(10)
    assert part.committable() == 13


def test_a_record_with_several_events_waits_for_all() -> None:
    part = PartitionOffsets("t", 0)
    part.read(0, 3)
    part.ack(0)
    part.ack(0)
    assert part.committable() == 0
    part.ack(0)
    assert part.committable() == 1


def test_acks_after_revoke_are_ignored_and_reassign_starts_fresh() -> None:
    tracker = OffsetTracker()
    old = tracker.get("t", 0)
    old.read(5, 1)
    tracker.revoke("t", 0)
    old.ack(5)
    assert old.committable() == 5
    new = tracker.assign("t", 0)
    assert new.committable() is None
    assert tracker.to_commit() == []


def test_to_commit_reports_only_moved_partitions() -> None:
    tracker = OffsetTracker()
    a, b = tracker.get("t", 0), tracker.get("t", 1)
    a.read(0, 0)
    b.read(0, 1)
    assert sorted(tracker.to_commit()) == [("t", 0, 1), ("t", 1, 0)]
    for t, p, o in tracker.to_commit():
        tracker.mark_committed(t, p, o)
    assert tracker.to_commit() == []
    b.ack(0)
    assert tracker.to_commit() == [("t", 1, 1)]


def test_revoke_repeats_a_commit_the_broker_has_not_confirmed() -> None:
    """An asynchronous commit still under way at revoke may fail after it (tansu answers
    ILLEGAL_GENERATION during rebalances): the revoke's commit must not skip it."""
    tracker = OffsetTracker()
    part = tracker.get("t", 0)
    part.read(0, 2)
    part.ack(0)
    part.ack(0)
    for t, p, o in tracker.to_commit():  # asynchronous: handed, not confirmed
        tracker.mark_committed(t, p, o)
    assert tracker.to_commit() == []
    assert tracker.to_commit(unconfirmed=True) == [("t", 0, 1)]
    assert part.unconfirmed() == 2  # both events come again if no commit lands
    assert part.span() == "t[0]@?-1"
    tracker.confirm("t", 0, 1)
    assert tracker.to_commit(unconfirmed=True) == []
    assert part.unconfirmed() == 0


def test_unconfirmed_counts_events_since_the_confirmed_offset() -> None:
    part = PartitionOffsets("t", 0)
    for offset in range(4):
        part.read(offset, 1)
    part.ack(0)
    part.ack(1)
    assert part.committable() == 2
    part.handed(2)
    part.ack(3)  # done, but 2 is not: exposure
    part.confirm(2)
    assert part.unconfirmed() == 1
    part.ack(2)
    assert part.unconfirmed() == 2
    assert part.span() == "t[0]@2-4"


class TrackerMachine(RuleBasedStateMachine):
    """Poll with gaps, ack in any order, commit and confirm, revoke and re-assign."""

    def __init__(self) -> None:
        super().__init__()
        self.tracker = OffsetTracker()
        self.part = self.tracker.assign("t", 0)
        self.next_offset = 0
        self.unacked: dict[int, int] = {}  # offset -> events left (model)
        self.acked: dict[int, int] = {}  # offset -> events done (model)
        self.read_any = False
        self.last = -1
        self.handed: list[int] = []
        self.confirmed: int | None = None

    @rule(gap=st.integers(0, 3), events=st.integers(0, 3))
    def poll(self, gap: int, events: int) -> None:
        offset = self.next_offset + gap  # compaction/transactions leave gaps
        self.part.read(offset, events)
        if events:
            self.unacked[offset] = events
        self.next_offset = offset + 1
        self.read_any = True

    @precondition(lambda self: bool(self.unacked))
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        offset = data.draw(st.sampled_from(sorted(self.unacked)))
        self.part.ack(offset)
        self.acked[offset] = self.acked.get(offset, 0) + 1
        self.unacked[offset] -= 1
        if not self.unacked[offset]:
            del self.unacked[offset]

    @rule()
    def commit(self) -> None:
        for t, p, o in self.tracker.to_commit():
            self.tracker.mark_committed(t, p, o)
            self.handed.append(o)

    @precondition(lambda self: bool(self.handed))
    @rule(data=st.data())
    def confirm(self, data: st.DataObject) -> None:
        """The broker confirms one handed commit (answers may come late or out of order)."""
        offset = data.draw(st.sampled_from(self.handed))
        self.tracker.confirm("t", 0, offset)
        if self.confirmed is None or offset > self.confirmed:
            self.confirmed = offset

    @rule()
    def revoke_and_reassign(self) -> None:
        committable = self.part.committable()
        self.tracker.revoke("t", 0)
        self.part = self.tracker.assign("t", 0)
        # the new owner resumes from what was committable
        self.next_offset = committable if committable is not None else 0
        self.unacked = {}
        self.acked = {}
        self.read_any = False
        self.last = -1
        self.handed = []
        self.confirmed = None

    @invariant()
    def never_passes_an_unacked_record_nor_moves_back(self) -> None:
        got = self.part.committable()
        if not self.read_any:
            assert got is None
            return
        assert got is not None
        expected = min(self.unacked) if self.unacked else self.next_offset
        assert got == expected
        assert got >= self.last
        self.last = got
        # what a crash now would re-send: done events of records not yet committable
        assert self.part.exposure() == sum(n for o, n in self.acked.items() if o >= got)
        # what a new owner re-sends if no further commit lands: done events from the
        # confirmed offset on
        start = -1 if self.confirmed is None else self.confirmed
        assert self.part.unconfirmed() == sum(n for o, n in self.acked.items() if o >= start)


TrackerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
test_tracker_state_machine = TrackerMachine.TestCase
