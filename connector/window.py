"""Group events into batch requests: items, bytes and linger limits, customer rules.

Rules (why: Gameball's request shapes and its 422/2001 "Concurrent Request In
Progress"; see docs/delivery.md):
- an item holds one customer's events keyed by *distinct* names: a second event of
  the same name for that customer starts a new item, never overwrites;
- a batch closes on `max_items`, `max_bytes` (encoded body) or `linger`;
- a customer is never in two batches that are sealed or in flight at once: its later
  events wait until the earlier batch completes, then go out in their read order.
Per-customer order is kept; events of different customers may overtake each other.

Pure: the clock is passed in as numbers. The pipeline calls `add`, `poll`, `take`
and `complete` from its loop thread.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator

from connector.records import Batch, Event, Item

# Bytes of JSON around one item and one event beyond the encoded metadata.
_ITEM_OVERHEAD = 32
_EVENT_OVERHEAD = 8
_BODY_OVERHEAD = 16


class _Open:
    __slots__ = ("by_customer", "items", "size", "started")

    def __init__(self, started: float) -> None:
        self.items: list[Item] = []
        self.by_customer: dict[str, list[Item]] = {}
        self.size = _BODY_OVERHEAD
        self.started = started


class Windower:
    """Builds `Batch`es from events; counts every event it holds until completed."""

    def __init__(self, max_items: int, max_bytes: int, linger_s: float) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.linger_s = linger_s
        self._open: _Open | None = None
        self._sealed: deque[Batch] = deque()
        self._busy: dict[str, int] = {}  # customer -> sealed or in-flight batches holding it
        self._waiting: dict[str, deque[Event]] = {}  # held back customers, in arrival order
        self._seq = 0
        self._now = 0.0
        self.buffered = 0  # events added and not yet completed or discarded

    # --- input ----------------------------------------------------------------------

    def add(self, event: Event, now: float) -> None:
        """Take one event (its `payload` already encoded)."""
        self._now = now
        self.buffered += 1
        cid = event.customer_id
        queue = self._waiting.get(cid)
        if queue is not None:
            queue.append(event)
        elif cid in self._busy:
            self._waiting[cid] = deque((event,))
        elif not self._place(event):
            self._waiting[cid] = deque((event,))

    def _place(self, event: Event) -> bool:
        """Put the event in the open batch; False when its customer just got sealed away."""
        cid, name = event.customer_id, event.name
        size = len(event.payload) + len(name) + _EVENT_OVERHEAD
        opened = self._open
        if opened is not None:
            for item in opened.by_customer.get(cid, ()):
                if name not in item.events:
                    if opened.size + size > self.max_bytes:
                        break
                    item.events[name] = event
                    opened.size += size
                    return True
        size += len(cid) + _ITEM_OVERHEAD
        if opened is not None and (
            len(opened.items) >= self.max_items or opened.size + size > self.max_bytes
        ):
            in_open = cid in opened.by_customer
            self._seal()
            opened = None
            if in_open:  # the customer is now in a sealed batch: it must wait
                return False
        if opened is None:
            opened = self._open = _Open(self._now)
        item = Item(cid, {name: event})
        opened.items.append(item)
        opened.by_customer.setdefault(cid, []).append(item)
        opened.size += size
        return True

    def _seal(self) -> None:
        opened = self._open
        self._open = None
        if opened is None or not opened.items:
            return
        busy = self._busy
        for cid in opened.by_customer:
            busy[cid] = busy.get(cid, 0) + 1
        self._seq += 1
        self._sealed.append(Batch(opened.items, self._seq))

    # --- output ---------------------------------------------------------------------

    def poll(self, now: float) -> float | None:
        """Seal the open batch if it lingered long enough; seconds until it will, or None."""
        self._now = now
        opened = self._open
        if opened is None:
            return None
        due = opened.started + self.linger_s - now
        if due <= 0:
            self._seal()
            return None
        return due

    def flush(self) -> None:
        """Seal the open batch now (shutdown, revoke)."""
        self._seal()

    def take(self) -> Batch | None:
        """The oldest sealed batch, ready to send, or None."""
        return self._sealed.popleft() if self._sealed else None

    def complete(self, batch: Batch) -> None:
        """A taken batch is finished (accepted, dead-lettered or dropped): release customers."""
        busy = self._busy
        self.buffered -= sum(len(item.events) for item in batch.items)
        released = []
        for item in batch.items:
            cid = item.customer_id
            left = busy.get(cid)
            if left is None:
                continue  # customer listed twice in this batch, already released
            if left > 1:
                busy[cid] = left - 1
            else:
                del busy[cid]
                released.append(cid)
        for cid in released:
            self._release(cid)

    def _release(self, cid: str) -> None:
        queue = self._waiting.pop(cid, None)
        while queue:
            if not self._place(queue[0]):  # placing sealed a batch holding the customer
                self._waiting[cid] = queue
                return
            queue.popleft()

    # --- rebalance ------------------------------------------------------------------

    def discard(self, drop: Callable[[Event], bool]) -> int:
        """Remove not-yet-taken events for which `drop` is true; returns how many.

        The others are windowed again in their original order (sealed batches, the
        open batch, then waiting customers), so per-customer order is kept.
        """
        events: list[Event] = []
        for batch in self._sealed:
            self._unbusy(batch)
            events.extend(batch.events())
        self._sealed.clear()
        if self._open is not None:
            events.extend(ev for item in self._open.items for ev in item.events.values())
            self._open = None
        waiting, self._waiting = self._waiting, {}
        for queue in waiting.values():
            events.extend(queue)
        self.buffered -= len(events)
        kept = [ev for ev in events if not drop(ev)]
        for ev in kept:
            self.add(ev, self._now)
        return len(events) - len(kept)

    def _unbusy(self, batch: Batch) -> None:
        for cid in {item.customer_id for item in batch.items}:
            left = self._busy.get(cid, 0)
            if left > 1:
                self._busy[cid] = left - 1
            else:
                self._busy.pop(cid, None)

    # --- introspection ----------------------------------------------------------------

    def sealed(self) -> int:
        return len(self._sealed)

    def waiting(self) -> int:
        return sum(len(q) for q in self._waiting.values())

    def is_empty(self) -> bool:
        return self.buffered == 0

    def pending_events(self) -> Iterator[Event]:
        """Every event not yet taken (tests and diagnostics)."""
        for q in self._waiting.values():
            yield from q
        for b in self._sealed:
            yield from b.events()
        if self._open is not None:
            for item in self._open.items:
                yield from item.events.values()
