"""Per-customer queues of waiting events, and the cut of one batch from them.

The delivery rules (docs/delivery.md): customers are served oldest
queue first; a customer is in at most one batch at a time (its later events wait,
then leave in read order); the j-th waiting event of a name for a customer goes into
the customer's j-th item of the batch, so same-name events are never merged; a batch
holds at most `max_items` items. New here: a cut also stops at `max_events` (the
crash budget) and may be limited to the events of one segment (the unblocking cut).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from connector.core.rows import Batch, Entry, Item, Row, Segment


class CustomerWindow:
    """Waiting events by customer; `busy` customers have a batch in flight."""

    __slots__ = ("busy", "queues", "ready", "waiting")

    def __init__(self) -> None:
        self.queues: dict[str, list[Entry]] = {}
        self.busy: set[str] = set()
        self.ready = 0  # waiting events whose customer is not busy
        self.waiting = 0  # all waiting events

    def add(self, seg: Segment, rows: Sequence[Row]) -> int:
        """Queue the rows of one segment; returns how many became ready."""
        queues = self.queues
        busy = self.busy
        ready = 0
        for row in rows:
            cid = row[1]
            queue = queues.get(cid)
            if queue is None:
                queues[cid] = [(seg, row)]
            else:
                queue.append((seg, row))
            if cid not in busy:
                ready += 1
        self.waiting += len(rows)
        self.ready += ready
        return ready

    def cut(self, max_items: int, max_events: int, only: Segment | None = None) -> Batch:
        """Take up to `max_items` items / `max_events` events, oldest customers first;
        with `only`, just that segment's events at the head of their customer's queue.
        What the completion needs of the batch (its customers, its oldest record stamp)
        and what its request body is made of (each item's payload) are noted here, while
        the entries are in cache, not walked again later. An empty batch when nothing
        could be taken."""
        items: list[Item] = []
        append = items.append
        payloads: list[Any] = []  # each item's one payload, while no item holds several
        keep_payload = payloads.append
        several = False
        segs: list[Segment] = []  # one per event taken, counted once at the end (in C)
        keep_seg = segs.append
        customers: list[str] = []
        keep_cid = customers.append
        taken = 0  # events
        busy = self.busy
        emptied: list[str] = []
        for cid, queue in self.queues.items():
            if cid in busy:
                continue
            if len(items) >= max_items or taken >= max_events:
                break
            if only is not None and queue[0][0] is not only:
                continue
            if len(queue) == 1:  # the common case: the queue becomes the item
                seg, row = queue[0]
                keep_seg(seg)
                append(Item(cid, queue))
                keep_payload(row[3])
                busy.add(cid)
                keep_cid(cid)
                emptied.append(cid)
                taken += 1
                continue
            mine: list[list[Entry]] = []
            seen: dict[str, int] = {}
            used = 0
            room = max_items - len(items)
            for entry in queue:
                if taken + used >= max_events or (only is not None and entry[0] is not only):
                    break
                name = entry[1][2]
                j = seen.get(name, 0)
                if j == len(mine):
                    if j >= room:
                        break
                    mine.append([])
                mine[j].append(entry)
                seen[name] = j + 1
                used += 1
                keep_seg(entry[0])
            for entries in mine:
                append(Item(cid, entries))
                if len(entries) == 1:
                    keep_payload(entries[0][1][3])
                else:
                    several = True
            taken += used
            del queue[:used]
            busy.add(cid)
            keep_cid(cid)
            if queue:
                self.ready -= len(queue)  # what is left waits for this batch now
            else:
                emptied.append(cid)
        queues = self.queues
        for cid in emptied:
            del queues[cid]
        self.ready -= taken
        self.waiting -= taken
        counts = dict(Counter(segs))
        # the oldest stamp of its segments; records without a timestamp have -1
        oldest = min([s.timestamp_ms for s in counts if s.timestamp_ms >= 0], default=None)
        return Batch(items, counts, taken, customers, oldest,
                     None if several else payloads)

    def release(self, customers: list[str]) -> int:
        """The batch holding `customers` ended; returns how many events became ready."""
        busy = self.busy
        queues = self.queues
        ready = 0
        for cid in customers:
            if cid in busy:
                busy.discard(cid)
                queue = queues.get(cid)
                if queue:
                    ready += len(queue)
        self.ready += ready
        return ready

    def fronts(self) -> set[Segment]:
        """Segments of the first waiting event of each free customer (the unblocking cut
        picks the oldest of them; a scan, called only when the crash budget is spent)."""
        busy = self.busy
        return {queue[0][0] for cid, queue in self.queues.items() if cid not in busy}

    def discard(self, dropped: set[tuple[str, int]],
                past: dict[tuple[str, int], int] | None = None) -> int:
        """Remove waiting events of the given partitions, or (`past`) those of a
        partition above an offset; returns how many."""
        removed = 0
        for cid in list(self.queues):
            queue = self.queues[cid]
            if past is None:
                kept = [e for e in queue if (e[0].topic, e[0].partition) not in dropped]
            else:
                kept = [e for e in queue
                        if e[1][0] <= past.get((e[0].topic, e[0].partition), e[1][0])]
            gone = len(queue) - len(kept)
            if not gone:
                continue
            removed += gone
            if cid not in self.busy:
                self.ready -= gone
            if kept:
                self.queues[cid] = kept
            else:
                del self.queues[cid]
        self.waiting -= removed
        return removed
