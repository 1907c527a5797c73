"""Per-partition commit state at segment granularity, and what a crash would re-send.

Vocabulary: an offset is Kafka's *next offset to read*; a
record is done when every event it produced was accepted or dead-lettered. Here acks
come as counts per segment, so the committable offset is the `first` of the oldest
unfinished segment (or last read + 1): it never passes an unfinished record and never
moves backwards.

*Exposed* events (the crash accounting, docs/core.md): events Gameball accepted that no
commit the broker *confirmed* covers yet (dead-lettered ones would only be copied to the
dead-letter topic again). A finished segment leaves `segments` for
`retired` when the committable offset passes it, and its events stop being exposed only
when a confirmed commit reaches its end.
"""

from __future__ import annotations

from collections import deque

from connector.core.rows import Segment


class PartitionState:
    """One assigned partition. Owned by `DeliveryCore`; no I/O, no clock."""

    __slots__ = ("committed", "confirmed", "exposed", "next_read", "partition", "retired",
                 "segments", "topic")

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.segments: deque[Segment] = deque()  # read order; finished ones popped lazily
        self.retired: deque[Segment] = deque()  # finished, passed, commit not confirmed
        self.next_read: int | None = None
        self.committed: int | None = None  # last offset handed to a commit
        self.confirmed: int | None = None  # last offset the broker confirmed
        self.exposed = 0  # accepted events not yet covered by a confirmed commit

    def committable(self) -> int | None:
        """The next offset to read that may be committed; None before any read."""
        segments = self.segments
        while segments and not segments[0].pending:
            self.retired.append(segments.popleft())
        if segments:
            return segments[0].first
        return self.next_read

    def confirm(self, offset: int) -> int:
        """The broker confirmed `offset`; returns how many exposed events it covered."""
        if self.confirmed is not None and offset <= self.confirmed:
            return 0
        self.confirmed = offset
        released = 0
        retired = self.retired
        while retired and retired[0].end <= offset:
            released += retired.popleft().accepted
        self.exposed -= released
        return released

    def undone(self) -> int:
        """Events read and not yet done (waiting, in flight, or awaiting a dead letter)."""
        return sum(seg.pending for seg in self.segments)

    def span(self) -> str:
        """`topic[p]@from-to`: the offsets a next owner would read again."""
        start = "?" if self.confirmed is None else str(self.confirmed)
        end = self.committable()
        return f"{self.topic}[{self.partition}]@{start}-{'?' if end is None else end}"
