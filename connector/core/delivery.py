"""`DeliveryCore`: the loop's bookkeeping as arrows, one call per chunk, batch or ack.

    ingest(runs, now)          consumed chunk -> segments, waiting events
    next_batch(now, force)     a free sender's next request, within the crash budget
    complete(batch, ...)       accepted counted per segment; rejected -> dead-letter tickets
    dead_lettered(letter)      the broker has the copy: its event is done
    commits() / confirmed()    what to commit; what the broker confirmed
    revoke(parts)              drop waiting events; late acks are ignored
    may_read / may_send / held_back_since / due_in   flow control

Crash budget (docs/core.md): `exposure` = events in flight + events accepted that no
commit the broker *confirmed* covers yet. A batch is cut only
while exposure + batch <= `resend_bound - reserve`; when that stops everything, one
batch of the oldest waiting segment may use the reserve. So a SIGKILL at any moment
re-sends at most `resend_bound` events. Pure: no Kafka, no threads, `now` passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from connector.core.partitions import PartitionState
from connector.core.rows import Batch, Item, Letter, Run, Segment
from connector.core.segmenting import last_read, spans
from connector.core.window import CustomerWindow

_NO_TS = 1 << 62


@dataclass(frozen=True, slots=True)
class CoreSettings:
    """The delivery rules' numbers (from `batch.*` settings; docs/configuration.md)."""

    max_items: int = 500
    linger_s: float = 0.5
    max_in_flight: int = 8
    max_buffered_events: int = 20_000
    resend_bound: int = 8_000  # events a SIGKILL may make the next process send again
    # Segment size in events: acks and commits move by segments; the crash budget
    # keeps one segment in reserve. 0: min(128, resend_bound // 4), at least 1.
    segment_events: int = 0

    @property
    def reserve(self) -> int:
        if self.segment_events > 0:
            return self.segment_events
        return max(1, min(128, self.resend_bound // 4))


@dataclass(slots=True)
class Completion:
    """What a completed delivery changed: accepted events, tickets to dead-letter."""

    accepted: int = 0
    letters: list[Letter] = field(default_factory=list)
    oldest_ms: int | None = None  # oldest accepted record's timestamp (end-to-end latency)
    ignored: int = 0  # events of revoked partitions: their acks no longer count


@dataclass(frozen=True, slots=True)
class Revoked:
    """What a revoke left behind (for the possible-duplicates count and log)."""

    dropped: int  # waiting events removed
    unconfirmed: int  # events done since the last confirmed commit
    in_flight: int  # events still in requests (or awaiting a dead letter)
    spans: list[str]


class DeliveryCore:
    """All delivery state of one consumer; every method is called from one thread."""

    def __init__(self, settings: CoreSettings) -> None:
        self.settings = settings
        self._max_items = settings.max_items
        self._seg_events = settings.reserve
        self._window = CustomerWindow()
        self._parts: dict[tuple[str, int], PartitionState] = {}
        self._first_at: float | None = None  # arrival of the oldest ready event (approx.)
        self._seq = 0
        self.in_flight = 0  # batches
        self.in_flight_events = 0
        self.exposed = 0  # accepted events no confirmed commit covers (all partitions)
        self.buffered = 0  # events ingested, not yet completed or dropped
        self.dead_letters_pending = 0
        self.overruns = 0  # unblocking cuts that had to pass the bound (docs/core.md)
        self._held_since: float | None = None

    # --- input ------------------------------------------------------------------------

    def assign(self, topic: str, partition: int) -> None:
        """A newly assigned partition starts fresh (an old state is dropped)."""
        old = self._parts.pop((topic, partition), None)
        if old is not None:  # assigned again without a revoke: its waiting events go too
            self._forget(old)
            self.buffered -= self._window.discard({(topic, partition)})
            if not self._window.ready:
                self._first_at = None
        self._parts[(topic, partition)] = PartitionState(topic, partition)

    def ingest(self, runs: Iterable[Run], now: float) -> list[Letter]:
        """Take one consumed chunk; returns tickets for its `failed` records, in offset
        order (the shell dead-letters them and calls `dead_lettered`)."""
        letters: list[Letter] = []
        add = self._window.add
        size = self._seg_events
        ready = 0
        for run in runs:
            key = (run.topic, run.partition)
            part = self._parts.get(key)
            if part is None:
                part = self._parts[key] = PartitionState(run.topic, run.partition)
            last = last_read(run.rows, run.skipped, run.failed)
            if last < 0:
                continue
            for first, end, rows, failed in spans(run.rows, run.failed, last, size):
                seg = self._segment(part, first, end, len(rows) + len(failed),
                                    run.timestamp_ms)
                if failed:
                    letters.extend(Letter(seg, o) for o in failed)
                    self.dead_letters_pending += len(failed)
                ready += add(seg, rows)
                self.buffered += len(rows)
            part.next_read = last + 1
        if ready and self._first_at is None:
            self._first_at = now
        return letters

    def _segment(self, part: PartitionState, first: int, end: int, events: int,
                 timestamp_ms: int = -1) -> Segment:
        self._seq += 1
        seg = Segment(part.topic, part.partition, first, end, events, self._seq, timestamp_ms)
        part.segments.append(seg)
        return seg

    # --- output -----------------------------------------------------------------------

    @property
    def exposure(self) -> int:
        """Events a SIGKILL now could make the next process send again."""
        return self.in_flight_events + self.exposed

    def _budget(self) -> int:
        """Events a normal batch may carry now (the reserve kept for unblocking)."""
        return self.settings.resend_bound - self._seg_events - self.exposure

    def due_in(self, now: float) -> float | None:
        """Seconds until a batch is due by linger (0: now), None when nothing is ready."""
        ready = self._window.ready
        if not ready or self._first_at is None:
            return None
        if ready >= self._max_items:
            return 0.0
        return max(0.0, self._first_at + self.settings.linger_s - now)

    def may_send(self) -> bool:
        """A sender is free and the crash budget allows a batch (normal or unblocking)."""
        return self._plan() is not None

    def _plan(self) -> tuple[int, Segment | None, bool] | None:
        """(events the next batch may carry, the only segment it may take, overrun), or
        None while no batch may go. Normal batches keep the reserve; with nothing in
        flight, one batch of the oldest front segment may use it (docs/core.md)."""
        ready = self._window.ready
        if not ready or self.in_flight >= self.settings.max_in_flight:
            return None
        budget = self._budget()
        if budget >= min(self._max_items, ready):
            return budget, None, False
        if self.in_flight:
            return None  # a completion will free budget or the head
        only = self._oldest_front()
        if only is None:
            return None
        budget = self.settings.resend_bound - self.exposure
        if budget >= 1:
            return budget, only, False
        if self._parts_settling():
            return None  # a confirmation or a dead letter will free budget
        return 1, only, True

    def next_batch(self, now: float, force: bool = False) -> Batch | None:
        """Cut the next request for a free sender (`force`: do not wait for linger)."""
        if not force:
            due = self.due_in(now)
            if due is None or due > 0:
                return None
        plan = self._plan()
        if plan is None:
            return None
        budget, only, overrun = plan
        window = self._window
        batch = window.cut(self._max_items, budget, only)
        if not batch.items:
            return None
        if overrun:
            self.overruns += 1
        if not window.ready:
            self._first_at = None
        self.in_flight += 1
        self.in_flight_events += batch.events
        self._held_since = None
        return batch

    def _oldest_front(self) -> Segment | None:
        fronts = self._window.fronts()
        return min(fronts, key=lambda s: s.seq) if fronts else None

    def _parts_settling(self) -> bool:
        """A finished segment with accepted events awaits a confirmed commit, or a dead
        letter its acknowledgement: exposure will fall (or the head move) without sending."""
        if self.dead_letters_pending:
            return True
        for part in self._parts.values():
            part.committable()
            if any(seg.accepted for seg in part.retired):
                return True
        return False

    # --- acks -------------------------------------------------------------------------

    def complete(self, batch: Batch, now: float, rejected: Sequence[tuple[Item, object]] = (),
                 abandoned: Sequence[Item] = ()) -> Completion:
        """A sent batch ended: every event accepted unless an item listed as rejected
        holds it, with its cause (to be dead-lettered: returned as tickets carrying the
        cause and the row's payload), or an abandoned one (shutdown or revoke cut it
        short: stays undone). Listed items may be new ones holding some of a batch item's
        entries; each entry at most once. `sender.Delivery`'s lists fit."""
        self.in_flight -= 1
        self.in_flight_events -= batch.events
        self.buffered -= batch.events
        out = Completion()
        counts = batch.counts
        if rejected or abandoned:
            counts = dict(counts)
            for item in (*(i for i, _ in rejected), *abandoned):
                for seg, _row in item.entries:
                    counts[seg] -= 1
            for item, cause in rejected:
                for seg, row in item.entries:
                    if not seg.dropped:
                        out.letters.append(Letter(seg, row[0], row[1], row[2], cause, row[3]))
            self.dead_letters_pending += len(out.letters)
        parts = self._parts
        for seg, n in counts.items():
            if seg.dropped:
                out.ignored += n
                continue
            seg.pending -= n
            seg.accepted += n
            out.accepted += n
            parts[(seg.topic, seg.partition)].exposed += n
        self.exposed += out.accepted
        if out.accepted and not (rejected or abandoned):
            out.oldest_ms = batch.oldest_ms  # the common case: every event accepted
        elif out.accepted:
            oldest = _NO_TS
            # by row: the shell may list new items holding some of a batch item's entries
            skip = {id(row) for i in (*(i for i, _ in rejected), *abandoned)
                    for _seg, row in i.entries}
            for item in batch.items:
                for seg, row in item.entries:
                    ts = seg.timestamp_ms
                    if 0 <= ts < oldest and not (skip and id(row) in skip):
                        oldest = ts
            if oldest != _NO_TS:
                out.oldest_ms = oldest
        if self._window.release(batch.customers()) and self._first_at is None:
            self._first_at = now
        return out

    def dead_lettered(self, letter: Letter) -> None:
        """The broker acknowledged the dead-letter copy of `letter`'s record."""
        self.dead_letters_pending -= 1
        seg = letter.segment
        if seg.dropped:
            return
        seg.pending -= 1  # not exposed: a re-read copies it to the dead letters again

    # --- commits ----------------------------------------------------------------------

    def commits(self, unconfirmed: bool = False) -> list[tuple[str, int, int]]:
        """(topic, partition, offset) to commit now, marked as handed. `unconfirmed`
        (revoke, shutdown): also what was handed but not confirmed yet."""
        out = []
        for part in self._parts.values():
            offset = part.committable()
            last = part.confirmed if unconfirmed else part.committed
            if offset is not None and offset != last:
                out.append((part.topic, part.partition, offset))
                if part.committed is None or offset > part.committed:
                    part.committed = offset
        return out

    def confirmed(self, topic: str, partition: int, offset: int) -> None:
        """The broker confirmed a commit (asynchronous callback or synchronous answer)."""
        part = self._parts.get((topic, partition))
        if part is not None:
            part.committable()
            self.exposed -= part.confirm(offset)

    def commit_failed(self, topic: str, partition: int) -> None:
        """A commit failed: hand the offset again at the next `commits()`."""
        part = self._parts.get((topic, partition))
        if part is not None:
            part.committed = part.confirmed

    # --- rebalance --------------------------------------------------------------------

    def revoke(self, parts: Iterable[tuple[str, int]]) -> Revoked:
        """Forget partitions: waiting events dropped, late acks for them ignored."""
        gone = [p for p in (self._parts.pop((t, n), None) for t, n in parts) if p is not None]
        if not gone:
            return Revoked(0, 0, 0, [])
        spans = [p.span() for p in gone]
        unconfirmed = sum(p.exposed for p in gone)
        undone = sum(p.undone() for p in gone)
        for part in gone:
            self._forget(part)
        dropped = self._window.discard({(p.topic, p.partition) for p in gone})
        self.buffered -= dropped
        if not self._window.ready:
            self._first_at = None
        return Revoked(dropped, unconfirmed, max(0, undone - dropped), spans)

    def discard_past(self, held: dict[tuple[str, int], int]) -> int:
        """Drop waiting events above each partition's offset in `held` (the shell holds
        a partition at a bad record: nothing past it is sent). They stay pending, so no
        commit passes them; returns how many were dropped."""
        dropped = self._window.discard(set(), past=held)
        self.buffered -= dropped
        if not self._window.ready:
            self._first_at = None
        return dropped

    def _forget(self, part: PartitionState) -> None:
        self.exposed -= part.exposed
        for seg in part.segments:
            seg.dropped = True
        for seg in part.retired:
            seg.dropped = True

    # --- flow control -----------------------------------------------------------------

    def blocked(self) -> bool:
        """A whole batch is ready but may not be sent yet."""
        return self._window.ready >= self._max_items and not self.may_send()

    def awaiting_confirmation(self) -> bool:
        """Accepted events awaiting a confirmed commit are what holds batches back: the
        shell should commit now and get the answer (synchronously, or by serving the
        asynchronous commit's callback) instead of only waiting for completions."""
        ready = self._window.ready
        return bool(ready) and self.exposed > 0 and self._budget() < min(self._max_items, ready)

    def may_read(self) -> bool:
        """Reading further ahead is useful: not blocked, and under `max_buffered_events`."""
        return not self.blocked() and self.buffered < self.settings.max_buffered_events

    def held_back_since(self, now: float) -> float | None:
        """Since when reading has been held back without a batch sent (None: it is not);
        the shell pauses the partitions when this lasts."""
        if self.may_read():
            self._held_since = None
        elif self._held_since is None:
            self._held_since = now
        return self._held_since

    # --- introspection ----------------------------------------------------------------

    @property
    def ready(self) -> int:
        return self._window.ready

    @property
    def waiting(self) -> int:
        return self._window.waiting

    def undone(self, parts: Iterable[tuple[str, int]] | None = None) -> int:
        """Events read and not done, in the given partitions (default all)."""
        keys = list(self._parts) if parts is None else parts
        states = [self._parts.get((t, n)) for t, n in keys]
        return sum(p.undone() for p in states if p is not None)

    def committable(self, topic: str, partition: int) -> int | None:
        part = self._parts.get((topic, partition))
        return None if part is None else part.committable()

    def is_idle(self) -> bool:
        return not self.buffered and not self.in_flight and not self.dead_letters_pending
