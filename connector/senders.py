"""The sender threads: `max_in_flight` of them, each delivering one batch at a time.

The loop thread submits batches and collects finished deliveries; nothing else touches
the queue. `abandon` tells every sender to give up at its next wait (shutdown, after the
drain time): their deliveries come back with the undecided items `abandoned`.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from connector.core import Batch
from connector.sender import Delivery, Sender


class Senders:
    """A pool of sender threads around one `Sender` (it holds no per-batch state)."""

    def __init__(self, sender: Sender, threads: int, abandoned: threading.Event) -> None:
        self._sender = sender
        self._abandoned = abandoned  # the Sender's stop event
        self._executor = ThreadPoolExecutor(threads, "sender")
        self._done: queue.SimpleQueue[Future[Delivery]] = queue.SimpleQueue()

    def submit(self, batch: Batch) -> None:
        """Hand `batch` to a free sender thread (the core never cuts more than
        `max_in_flight`, so it never waits for one). Its body is encoded here, on the
        loop thread, while the cut's items are still in this core's cache: on a sender
        thread the same walk cost more (bench/results/HISTORY.md, fifth session)."""
        body = self._sender.body(batch)
        fut = self._executor.submit(self._sender.deliver, batch, body)
        fut.add_done_callback(self._done.put)

    def finished(self, wait: float = 0.0) -> list[Delivery]:
        """Every finished delivery, waiting up to `wait` seconds for the first one."""
        try:
            fut = self._done.get(timeout=wait) if wait > 0 else self._done.get_nowait()
        except queue.Empty:
            return []
        out = [fut.result()]
        while True:
            try:
                out.append(self._done.get_nowait().result())
            except queue.Empty:
                return out

    def abandon(self) -> None:
        """Senders give up at their next wait or retry (shutdown past the drain time)."""
        self._abandoned.set()

    def close(self) -> None:
        """No more batches; threads still inside an HTTP read are left to the exit."""
        self._executor.shutdown(wait=False, cancel_futures=True)
