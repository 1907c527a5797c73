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
        "_next_read",
        "_order",
        "_pending",
        "_total",
        "committed",
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
        self._next_read: int | None = None
        self.committed: int | None = None  # last offset handed to Kafka's commit
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
        order, pending = self._order, self._pending
        while order and order[0] not in pending:
            self._ahead -= self._total.pop(order.popleft())
        if order:
            return order[0]
        return self._next_read

    def outstanding(self) -> int:
        """Records read but not yet done."""
        return len(self._pending)

    def exposure(self) -> int:
        """Events done (accepted or dead-lettered) whose records are not committable yet:
        what a crash now would send again."""
        self.committable()
        return self._ahead


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

    def to_commit(self) -> list[tuple[str, int, int]]:
        """(topic, partition, offset) whose committable offset moved since the last commit."""
        out = []
        for part in self._parts.values():
            offset = part.committable()
            if offset is not None and offset != part.committed:
                out.append((part.topic, part.partition, offset))
        return out

    def mark_committed(self, topic: str, partition: int, offset: int) -> None:
        part = self._parts.get((topic, partition))
        if part is not None and (part.committed is None or offset > part.committed):
            part.committed = offset

    def exposure(self) -> int:
        return sum(p.exposure() for p in self._parts.values())
