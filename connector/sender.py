"""Deliver one core batch to Gameball: rate limit, retry, bisect, and report the outcome.

Runs on a sender thread (the pipeline keeps up to `max_in_flight` of them busy) so
the poll loop never sleeps. Retries use tenacity: exponential backoff with full
jitter, at least `Retry-After`; unlimited by default (`retry.max_attempts: 0`),
because losing a loyalty event is worse than waiting. A rejected batch (4xx with a
payload or customer error) is split in halves until the bad items are alone; the
good ones are delivered. Authentication/account errors never give up and never
reject data: they wait `auth_backoff_ms` and try again. See docs/delivery.md.
Works on `connector.core` batches as `DeliveryCore.next_batch` cuts them; `encode` makes
a request body of items: the pipeline's rows carry their events' JSON, made at ingest
(`event_json.encode_items` joins it), the re-drive's the mapped `Event`
(`gameball.encode_request`, the default). The `Delivery` goes back to
`DeliveryCore.complete` as it is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import tenacity

from connector.config import RetrySettings
from connector.core import Batch, Item
from connector.gameball import (
    Action,
    Answer,
    GameballClient,
    Verdict,
    classify,
    encode_request,
)
from connector.ratelimit import RateLimiter
from connector.records import EncodeError, RecordError

# items, batch endpoint -> request body; TypeError/ValueError when an event has no JSON form
# (items, batch endpoint?, the items' payloads as the cut noted them or None) -> body
Encode = Callable[[Sequence[Item], bool, Any], bytes]


class SenderHooks(Protocol):
    """What the sender tells the outside world (metrics, health, logs). `items` are the
    core items of the request concerned (a batch, or a half of one)."""

    def request_done(self, status: int | None, seconds: float, items: int) -> None: ...
    def retrying(self, reason: str, answer: Answer, items: Sequence[Item]) -> None: ...
    def possible_duplicate(self, items: Sequence[Item]) -> None: ...
    def rate_limited(self, seconds: float) -> None: ...
    def halted(self, answer: Answer, verdict: Verdict) -> None: ...
    def recovered(self) -> None: ...


@dataclass
class Delivery:
    """The outcome of one core batch: each of its events is in exactly one list, inside
    the batch's own items or in new items holding some of an item's entries (a bisected
    or partly unencodable item). Ready for `DeliveryCore.complete(batch, now,
    rejected + failed, abandoned)`."""

    batch: Batch
    # (items, the answer's jobId as sent: the job tracker judges it, connector/jobreads.py)
    accepted: list[tuple[list[Item], Any]] = field(default_factory=list)
    rejected: list[tuple[Item, Answer]] = field(default_factory=list)
    abandoned: list[Item] = field(default_factory=list)  # shutdown/revoke cut it short
    # Events taken out before any request, an item of one entry each: they cannot be
    # encoded (or the sender failed on them); the shell hands them to `dead_letter.on_error`.
    failed: list[tuple[Item, RecordError]] = field(default_factory=list)
    possible_duplicates: int = 0  # events of requests whose answer was lost


def events_in(items: Sequence[Item]) -> int:
    return sum(len(item.entries) for item in items)


def offset_ranges(items: Sequence[Item]) -> str:
    """`topic[p]@lo-hi, ...` of the items' records (for logs), from their segments and rows."""
    spans: dict[tuple[str, int], tuple[int, int]] = {}
    for item in items:
        for seg, row in item.entries:
            key = (seg.topic, seg.partition)
            off = row[0]
            lo, hi = spans.get(key, (off, off))
            spans[key] = (min(lo, off), max(hi, off))
    return ", ".join(f"{t}[{p}]@{lo}-{hi}" for (t, p), (lo, hi) in sorted(spans.items()))


class _Again(Exception):
    def __init__(self, answer: Answer, verdict: Verdict) -> None:
        super().__init__(verdict.reason)
        self.answer = answer
        self.verdict = verdict


class _Abandoned(Exception):
    pass


EXHAUSTED = "retries_exhausted"


class SenderFailed(RecordError):
    """The sender failed on a batch for a reason of its own (a defect): its undecided
    events are handed to `dead_letter.on_error` rather than ending the process."""

    stage = "send"


class Sender:
    """Shared by all sender threads; holds no per-batch state."""

    def __init__(
        self,
        client: GameballClient,
        limiter: RateLimiter | None,
        retry: RetrySettings,
        hooks: SenderHooks,
        stop: threading.Event,
        clock: Callable[[], float] = time.monotonic,
        max_bytes: int = 1024 * 1024,
        encode: Encode = encode_request,
    ) -> None:
        self._client = client
        self._encode_items = encode
        self._max_bytes = max_bytes
        self._limiter = limiter
        self._retry = retry
        self._hooks = hooks
        self._stop = stop
        self._clock = clock
        self._batch_endpoint = client.endpoint == "batch"
        self._halted = False
        self._backoff = tenacity.wait_random_exponential(
            multiplier=retry.initial_backoff_ms / 1000, max=retry.max_backoff_ms / 1000
        )

    def body(self, batch: Batch) -> bytes | None:
        """The request body of `batch`, for `deliver`; None when it cannot be made here
        (`deliver` encodes again on its thread and finds which events have no JSON form,
        or fails the batch as a defect of the sender). Called by `Senders.submit` on the
        loop thread, which nothing raised here may end."""
        try:
            return self._encode_items(batch.items, self._batch_endpoint, batch.payloads)
        except Exception:  # orjson.JSONEncodeError is a TypeError; anything else: a defect
            return None

    def deliver(self, batch: Batch, body: bytes | None = None) -> Delivery:
        """Send the core `batch` (`body`: its items already encoded) until every event is
        accepted, rejected or abandoned (on stop), or failed (unencodable, or a defect of
        the sender: never raised)."""
        result = Delivery(batch)
        try:
            self._deliver(batch.items, result, body)
        except Exception as exc:  # a defect, not the data: the thread must not end the run
            decided = {id(row) for item in _decided(result) for _seg, row in item.entries}
            err = SenderFailed("sender_failed", f"{type(exc).__name__}: {exc}")
            result.failed.extend(
                (Item(item.customer_id, [entry]), err)
                for item in batch.items for entry in item.entries
                if id(entry[1]) not in decided
            )
        return result

    def _encode(self, items: Sequence[Item]) -> bytes:
        return self._encode_items(items, self._batch_endpoint, None)

    def _deliver(self, items: list[Item], result: Delivery, body: bytes | None = None) -> None:
        if body is None:
            try:
                body = self._encode(items)  # once per request: halves are encoded anew
            except (TypeError, ValueError):  # orjson.JSONEncodeError is a TypeError
                items = self._encodable(items, result)
                if not items:
                    return
                body = self._encode(items)
        if len(body) > self._max_bytes and len(items) > 1:
            # the window counts items only; the byte limit is kept here, where it is exact
            mid = len(items) // 2
            self._deliver(items[:mid], result)
            self._deliver(items[mid:], result)
            return
        try:
            answer, verdict = self._send_until_decided(items, body, result)
        except _Abandoned:
            result.abandoned.extend(items)
            return
        if verdict.action is Action.ACCEPTED:
            result.accepted.append((items, answer.body.get("jobId") if answer.body else None))
        elif len(items) == 1 or verdict.reason == EXHAUSTED:
            # Exhausted retries say nothing about which item is bad: splitting would
            # only multiply the requests to a peer that keeps failing.
            result.rejected.extend((item, answer) for item in items)
        else:
            mid = len(items) // 2
            self._deliver(items[:mid], result)
            self._deliver(items[mid:], result)

    def _encodable(self, items: list[Item], result: Delivery) -> list[Item]:
        """`items` without the events that cannot be encoded (those go to `result.failed`
        with stage=encode, an item each); each event is tried alone, inside a request's
        own nesting."""
        kept: list[Item] = []
        for item in items:
            good = []
            for entry in item.entries:
                one = Item(item.customer_id, [entry])
                try:
                    self._encode([one])
                except (TypeError, ValueError) as exc:
                    result.failed.append((one, EncodeError("unencodable", str(exc))))
                else:
                    good.append(entry)
            if len(good) == len(item.entries):
                kept.append(item)
            elif good:
                kept.append(Item(item.customer_id, good))
        return kept

    def _send_until_decided(
        self, items: list[Item], body: bytes, result: Delivery
    ) -> tuple[Answer, Verdict]:

        def attempt() -> tuple[Answer, Verdict]:
            self._wait_for_slot()
            started = self._clock()
            answer = self._client.send(body)
            self._hooks.request_done(answer.status, self._clock() - started, len(items))
            verdict = classify(answer)
            if answer.maybe_sent:
                result.possible_duplicates += events_in(items)
                self._hooks.possible_duplicate(items)
            if verdict.action in (Action.RETRY, Action.HALT):
                if answer.status == 429 and self._limiter is not None:
                    self._limiter.throttled(self._clock(), answer.retry_after)
                if verdict.action is Action.HALT:
                    self._halted = True
                    self._hooks.halted(answer, verdict)
                else:
                    self._hooks.retrying(verdict.reason, answer, items)
                raise _Again(answer, verdict)
            if self._halted:
                self._halted = False
                self._hooks.recovered()
            return answer, verdict

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Again),
            wait=self._wait,
            stop=self._should_stop,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _Again as exc:  # attempts exhausted: the data goes to the dead-letter topic
            if self._stop.is_set():
                raise _Abandoned from None
            return exc.answer, Verdict(Action.REJECT, EXHAUSTED)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Again):
            if exc.verdict.action is Action.HALT:
                return self._retry.auth_backoff_ms / 1000
            return max(exc.answer.retry_after or 0.0, float(self._backoff(state)))
        return float(self._backoff(state))

    def _should_stop(self, state: tenacity.RetryCallState) -> bool:
        if self._stop.is_set():
            raise _Abandoned
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Again) and exc.verdict.action is Action.HALT:
            return False  # credentials are not the data's fault: never give up on it
        limit = self._retry.max_attempts
        return bool(limit) and state.attempt_number >= limit

    def _sleep(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise _Abandoned

    def _wait_for_slot(self) -> None:
        if self._limiter is None:
            return
        while True:
            delay = self._limiter.acquire(self._clock())
            if delay <= 0:
                return
            self._hooks.rate_limited(delay)
            if self._stop.wait(delay):
                raise _Abandoned


def _decided(result: Delivery) -> list[Item]:
    """Every item `result` has decided already (accepted, rejected, abandoned, failed)."""
    out = [item for items, _ in result.accepted for item in items]
    out += [item for item, _ in result.rejected]
    out += result.abandoned
    out += [item for item, _ in result.failed]
    return out
