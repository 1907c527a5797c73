"""Cut batch requests from the events waiting to be sent.

Events wait in per-customer queues (customers ordered by their oldest waiting
event). When the pipeline has a free send slot it asks `take()` for a batch, which is
cut from the oldest customers first, so an event that had to wait goes out in the
very next request. Rules (why: Gameball's request shapes and its 422/2001
"Concurrent Request In Progress"; docs/delivery.md):
- an item holds one customer's events keyed by *distinct* names: a second event of
  the same name for that customer starts a new item, never overwrites;
- a batch holds at most `max_items` items (the sender splits a body over `max_bytes`);
- a batch is cut when `max_items` events are ready, or `linger_s` after the first
  ready event arrived, or at once when flushing (shutdown, revoke);
- a customer is never in two batches at once: while one is in flight, the
  customer's later events wait, then leave in their read order.
Per-customer order is kept; events of different customers may overtake each other.

Pure: time is passed in. The pipeline calls every method from its loop thread.
"""

from __future__ import annotations

from collections.abc import Callable

from connector.records import Batch, Event, Item


class Windower:
    """Holds events until they are cut into batches and those batches complete."""

    def __init__(self, max_items: int, linger_s: float) -> None:
        self.max_items = max_items
        self.linger_s = linger_s
        # customer -> waiting events, oldest first (lists: most hold one event)
        self._queues: dict[str, list[Event]] = {}
        self._busy: set[str] = set()  # customers in a batch taken and not completed
        self._first_at: float | None = None  # arrival of the oldest ready event (approx.)
        self.ready = 0  # waiting events whose customer is not busy
        self.buffered = 0  # events added and not yet completed or discarded

    # --- input ----------------------------------------------------------------------

    def add(self, event: Event, now: float) -> None:
        """Take one event (tests and one-off callers; the pipeline uses `add_many`)."""
        self.add_many([event], now)

    def add_many(self, events: list[Event], now: float) -> None:
        """`add` for each event, in order (the pipeline's hot path: one call per poll)."""
        queues = self._queues
        busy = self._busy
        ready = 0
        for event in events:
            cid = event.customer_id
            queue = queues.get(cid)
            if queue is None:
                queues[cid] = [event]
            else:
                queue.append(event)
            if cid not in busy:
                ready += 1
        self.buffered += len(events)
        if ready:
            self.ready += ready
            if self._first_at is None:
                self._first_at = now

    # --- output ---------------------------------------------------------------------

    def full(self) -> bool:
        """A whole batch is ready: reading further ahead only adds waiting."""
        return self.ready >= self.max_items

    def due_in(self, now: float) -> float | None:
        """Seconds until a batch is due by linger (0: now), or None when nothing is ready."""
        if not self.ready or self._first_at is None:
            return None
        if self.ready >= self.max_items:
            return 0.0
        return max(0.0, self._first_at + self.linger_s - now)

    def take(self, now: float, force: bool = False) -> Batch | None:
        """Cut the next batch if one is due (`force`: whatever is ready), else None."""
        if not self.ready:
            return None
        if not force:
            due = self.due_in(now)
            if due is None or due > 0:
                return None
        items: list[Item] = []
        append = items.append
        count = 0  # len(items), kept as a local: this loop runs once per event sent
        taken = 0  # events, for `ready`
        max_items = self.max_items
        busy = self._busy
        mark = busy.add
        emptied: list[str] = []
        for cid, queue in self._queues.items():
            if cid in busy:
                continue
            if count >= max_items:
                break
            if len(queue) == 1:  # the common case: one waiting event, one new item
                event = queue[0]
                append(Item(cid, {event.name: event}))
                mark(cid)
                count += 1
                taken += 1
                emptied.append(cid)
                continue
            mine: list[Item] = []
            used = 0
            for event in queue:
                name = event.name
                target = None
                for item in mine:  # the first item of this customer without that name
                    if name not in item.events:
                        target = item
                        break
                if target is None:
                    if len(items) >= max_items:
                        break
                    target = Item(cid)
                    mine.append(target)
                    items.append(target)
                target.events[name] = event
                used += 1
            count = len(items)
            taken += used
            del queue[:used]
            # never empty here: the loop above checked there was room for one more item
            busy.add(cid)
            if queue:
                self.ready -= len(queue)  # what is left waits for this batch now
            else:
                emptied.append(cid)
        queues = self._queues
        for cid in emptied:
            del queues[cid]
        self.ready -= taken
        if not self.ready:
            self._first_at = None
        return Batch(items, taken) if items else None

    def complete(self, batch: Batch, now: float) -> None:
        """A taken batch is finished (accepted, dead-lettered or dropped)."""
        self.buffered -= batch.event_count
        for cid in {item.customer_id for item in batch.items}:
            self._busy.discard(cid)
            queue = self._queues.get(cid)
            if queue:
                self.ready += len(queue)
                if self._first_at is None:
                    self._first_at = now

    # --- rebalance ------------------------------------------------------------------

    def discard(self, drop: Callable[[Event], bool]) -> int:
        """Remove waiting events for which `drop` is true; returns how many."""
        removed = 0
        for cid in list(self._queues):
            queue = self._queues[cid]
            kept = [ev for ev in queue if not drop(ev)]
            gone = len(queue) - len(kept)
            if not gone:
                continue
            removed += gone
            if cid not in self._busy:
                self.ready -= gone
            if kept:
                self._queues[cid] = kept
            else:
                del self._queues[cid]
        self.buffered -= removed
        if not self.ready:
            self._first_at = None
        return removed

    # --- introspection ----------------------------------------------------------------

    def waiting(self) -> int:
        """Events not yet in a batch (ready or held back behind their customer)."""
        return sum(len(q) for q in self._queues.values())

    def is_empty(self) -> bool:
        return self.buffered == 0
