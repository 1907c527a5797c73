"""Between the delivery core's batches and the sender's: the pipeline's in-flight table.

The core (`connector.core`) cuts batches of rows; the sender, the job tracker and the
dead-letter path still work on `records.Item`s of `Event`s (the record travels with its
event). The pipeline puts the `Event` itself in the row's payload slot, so a core batch
becomes a sender batch by regrouping, and a sender's `Delivery` maps back to the core
items `DeliveryCore.complete` takes. Called from the loop thread only (docs/core.md,
"Wiring").
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from connector.core import Batch as CoreBatch
from connector.core import Item as CoreItem
from connector.core.rows import Entry
from connector.records import Batch, Event, Item
from connector.sender import Delivery


def to_sender(batch: CoreBatch) -> Batch:
    """The sender's batch for a core batch: one `records.Item` per core item."""
    items = []
    for item in batch.items:
        entries = item.entries
        if len(entries) == 1:  # the common item
            row = entries[0][1]
            items.append(Item(item.customer_id, {row[2]: row[3]}))
        else:
            items.append(Item(item.customer_id, {row[2]: row[3] for _s, row in entries}))
    return Batch(items, batch.events)


class InFlight:
    """Sender batches handed to sender threads, with the core batches they came from."""

    def __init__(self) -> None:
        self._sent: dict[int, CoreBatch] = {}

    def send(self, batch: CoreBatch) -> Batch:
        out = to_sender(batch)
        self._sent[id(out)] = batch
        return out

    def outcome(self, delivery: Delivery) -> tuple[
        CoreBatch, list[tuple[CoreItem, object]], list[CoreItem], list[Event]
    ]:
        """(core batch, rejected core items with their cause, abandoned core items, the
        events of the letters `complete` will return, in their order). Events the sender
        could not encode (`delivery.failed`) are rejected with their `RecordError`."""
        core = self._sent.pop(id(delivery.batch))
        rejected: list[tuple[CoreItem, object]] = []
        abandoned: list[CoreItem] = []
        if not (delivery.rejected or delivery.abandoned or delivery.failed):
            return core, rejected, abandoned, []
        entry_of: dict[int, Entry] = {
            id(row[3]): (seg, row) for item in core.items for seg, row in item.entries
        }

        def back(customer_id: str, events: Iterable[Event]) -> CoreItem:
            return CoreItem(customer_id, [entry_of[id(ev)] for ev in events])

        for item, answer in delivery.rejected:
            rejected.append((back(item.customer_id, item.events.values()), answer))
        for ev, err in delivery.failed:
            rejected.append((back(ev.customer_id, [ev]), err))
        for item in delivery.abandoned:
            abandoned.append(back(item.customer_id, item.events.values()))
        # `DeliveryCore.complete` writes a letter per rejected entry of a live segment,
        # in this order: the same walk pairs each letter with its event (and record).
        letters: list[Any] = [row[3] for item, _ in rejected for seg, row in item.entries
                              if not seg.dropped]
        return core, rejected, abandoned, letters

    def __len__(self) -> int:
        return len(self._sent)
