"""Which offsets may be committed: per partition, the lowest record not yet done.

Vocabulary used everywhere: Kafka commits the *next offset to read*. A record is
*done* when every event it produced was accepted by Gameball or dead-lettered, or
when it produced none (skipped). The committable offset of a partition is the
offset of its lowest record that is not done, or last read + 1 when all are done;
it never passes an unacked record and never moves backwards.

Pure: no I/O, no clock. The pipeline calls `read` from the poll loop and `ack`
when a batch completes (same thread), `OffsetTracker.revoke` on rebalance.
"""

from __future__ import annotations

from collections import deque


class PartitionOffsets:
    """Offsets of one assigned partition; handed to events as their `ticket`."""

    __slots__ = (
        "_ahead",
        "_done",
        "_done_confirmed",
        "_handed",
        "_next_read",
        "_order",
        "_pending",
        "_total",
        "committed",
        "confirmed",
        "partition",
        "revoked",
        "topic",
    )

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self._pending: dict[int, int] = {}  # offset -> events not yet done
        self._total: dict[int, int] = {}  # offset -> events, for records still in _order
        self._order: deque[int] = deque()  # pending offsets in read order (lazy deletes)
        self._ahead = 0  # events done whose record is not committable yet
        self._done = 0  # events of records below the committable offset, since assignment
        self._done_confirmed = 0  # ... of records below the confirmed offset
        self._handed: dict[int, int] = {}  # offset handed to a commit -> _done at that time
        self._next_read: int | None = None
        self.committed: int | None = None  # last offset handed to Kafka's commit
        self.confirmed: int | None = None  # last offset the broker confirmed committed
        self.revoked = False

    def read(self, offset: int, events: int) -> None:
        """Record that `offset` was read and produced `events` events (0 = done now)."""
        self._next_read = offset + 1
        if events:
            self._pending[offset] = events
            self._total[offset] = events
            self._order.append(offset)

    def ack(self, offset: int) -> None:
        """One event of the record at `offset` is done. Ignored after revoke."""
        if self.revoked:
            return
        left = self._pending.get(offset)
        if left is None:
            return
        self._ahead += 1
        if left > 1:
            self._pending[offset] = left - 1
        else:
            del self._pending[offset]

    def committable(self) -> int | None:
        """The next offset to read that may be committed, or None before any read."""
        order, pending, total = self._order, self._pending, self._total
        moved = 0  # summed in a local: this loop runs once per record
        while order and order[0] not in pending:
            moved += total.pop(order.popleft())
        if moved:
            self._ahead -= moved
            self._done += moved
        if order:
            return order[0]
        return self._next_read

    def outstanding(self) -> int:
        """Records read but not yet done."""
        return len(self._pending)

    def undone(self) -> int:
        """Events read but not yet done (buffered, in flight or awaiting dead-lettering)."""
        return sum(self._pending.values())

    def exposure(self) -> int:
        """Events done (accepted or dead-lettered) whose records are not committable yet:
        what a crash now would send again."""
        self.committable()
        return self._ahead

    def handed(self, offset: int) -> None:
        """`offset` (just returned by `committable`) was handed to a commit."""
        self.committed = offset
        self._handed[offset] = self._done

    def confirm(self, offset: int) -> None:
        """The broker confirmed `offset` committed (asynchronous callback or synchronous)."""
        if self.confirmed is not None and offset <= self.confirmed:
            return
        self.confirmed = offset
        done = self._handed.get(offset)
        if done is not None:
            self._done_confirmed = done
        self._handed = {o: d for o, d in self._handed.items() if o > offset}

    def unconfirmed(self) -> int:
        """Events done (accepted or dead-lettered) since the last confirmed commit: what
        the next owner of the partition sends again if no further commit lands."""
        self.committable()
        return self._done - self._done_confirmed + self._ahead

    def span(self) -> str:
        """`topic[p]@from-to`: the offsets a next owner would read again."""
        start = "?" if self.confirmed is None else str(self.confirmed)
        end = self.committable()
        return f"{self.topic}[{self.partition}]@{start}-{'?' if end is None else end}"


class OffsetTracker:
    """All assigned partitions. Owned by the pipeline's poll-loop thread."""

    def __init__(self) -> None:
        self._parts: dict[tuple[str, int], PartitionOffsets] = {}

    def assign(self, topic: str, partition: int) -> PartitionOffsets:
        """A fresh tracker for a newly assigned partition (replacing any old one)."""
        old = self._parts.get((topic, partition))
        if old is not None:
            old.revoked = True
        part = PartitionOffsets(topic, partition)
        self._parts[(topic, partition)] = part
        return part

    def get(self, topic: str, partition: int) -> PartitionOffsets:
        """The partition's tracker; assigns one when a record arrives before the callback."""
        part = self._parts.get((topic, partition))
        return part if part is not None else self.assign(topic, partition)

    def revoke(self, topic: str, partition: int) -> PartitionOffsets | None:
        """Forget a partition; late acks for its events are ignored from now on."""
        part = self._parts.pop((topic, partition), None)
        if part is not None:
            part.revoked = True
        return part

    def find(self, topic: str, partition: int) -> PartitionOffsets | None:
        """The partition's tracker if it is assigned (commit callbacks may come late)."""
        return self._parts.get((topic, partition))

    def to_commit(self, unconfirmed: bool = False) -> list[tuple[str, int, int]]:
        """(topic, partition, offset) whose committable offset moved since the last commit;
        with `unconfirmed`, since the last one the broker confirmed (revoke and shutdown:
        an asynchronous commit still under way may yet fail)."""
        out = []
        for part in self._parts.values():
            offset = part.committable()
            last = part.confirmed if unconfirmed else part.committed
            if offset is not None and offset != last:
                out.append((part.topic, part.partition, offset))
        return out

    def mark_committed(self, topic: str, partition: int, offset: int) -> None:
        """`offset` was handed to a commit (called right after `to_commit`)."""
        part = self._parts.get((topic, partition))
        if part is not None and (part.committed is None or offset > part.committed):
            part.handed(offset)

    def confirm(self, topic: str, partition: int, offset: int) -> None:
        part = self._parts.get((topic, partition))
        if part is not None:
            part.confirm(offset)

    def exposure(self) -> int:
        return sum(p.exposure() for p in self._parts.values())
