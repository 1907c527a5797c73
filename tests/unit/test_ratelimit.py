"""The rate limiter with an injected clock: simulated senders, exact window checks.

Every simulation sends as fast as the limiter allows (the worst case for the
account) and then counts sends in every span of `seconds + margin`.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right

from hypothesis import given, settings
from hypothesis import strategies as st

from connector.ratelimit import RateLimiter, Window

WINDOWS = [Window(20, 1.0), Window(400, 30.0)]  # the sandbox's numbers in the tests
MARGIN = 0.1


def max_in_span(times: list[float], span: float) -> int:
    """The most sends that fit in any closed span of `span` seconds."""
    times = sorted(times)
    best = 0
    for i, start in enumerate(times):
        best = max(best, bisect_right(times, start + span) - i)
    return best


def assert_within(times: list[float], windows: list[Window] = WINDOWS) -> None:
    for w in windows:
        got = max_in_span(times, w.seconds + MARGIN)
        assert got <= w.limit, f"{got} sends within {w.seconds + MARGIN}s, limit {w.limit}"


def greedy(limiter: RateLimiter, start: float, end: float) -> list[float]:
    """Send whenever allowed between `start` and `end`; returns the send times."""
    now, sent = start, []
    while now < end:
        wait = limiter.acquire(now)
        if wait <= 0:
            sent.append(now)
        else:
            now += wait + 1e-9
    return sent


def test_single_replica_never_exceeds_either_window() -> None:
    limiter = RateLimiter(WINDOWS, MARGIN)
    sent = greedy(limiter, 0.0, 95.0)
    assert_within(sent)
    # ...and still runs close to the sustained ceiling (400/30 s = 13.3/s).
    steady = [t for t in sent if 35.0 <= t < 95.0]
    assert 12.5 <= len(steady) / 60.0 <= 400 / 30


def test_per_second_window_binds_when_it_is_the_tighter_one() -> None:
    windows = [Window(10, 1.0), Window(10_000, 30.0)]
    limiter = RateLimiter(windows, MARGIN)
    sent = greedy(limiter, 0.0, 20.0)
    assert_within(sent, windows)
    assert len([t for t in sent if t >= 5.0]) / 15.0 >= 7.5


def test_the_first_send_waits_for_a_token() -> None:
    """A fresh process starts empty: it cannot know what a killed predecessor sent."""
    limiter = RateLimiter(WINDOWS, MARGIN)
    first = limiter.acquire(100.0)
    assert 0 < first < 0.2
    assert limiter.acquire(100.0 + first) == 0.0


def test_share_scales_the_rate() -> None:
    limiter = RateLimiter(WINDOWS, MARGIN)
    limiter.set_share(1, 3, now=0.0)
    assert limiter.share == 1 / 3
    sent = greedy(limiter, 0.0, 60.0)
    rate = len([t for t in sent if t >= 30.0]) / 30.0
    assert 0.9 * (400 / 30 / 3) <= rate <= 400 / 30 / 3


def test_no_partition_no_sends() -> None:
    limiter = RateLimiter(WINDOWS, MARGIN)
    limiter.set_share(0, 3, now=0.0)
    assert greedy(limiter, 0.0, 10.0) == []
    limiter.set_share(3, 3, now=10.0)
    assert greedy(limiter, 10.0, 12.0)


def test_429_halves_the_rate_then_it_recovers() -> None:
    limiter = RateLimiter(WINDOWS, MARGIN)
    before = len(greedy(limiter, 0.0, 60.0)[-400:])  # warm up
    assert before
    base = limiter.limits(60.0)
    limiter.throttled(60.0, None)
    assert limiter.penalty == 0.5
    assert limiter.limits(60.0) == [r * 0.5 for r in base]
    # a 429 empties the buckets: the next send waits for a fresh token
    assert limiter.acquire(60.0) > 0
    limiter.throttled(60.5, None)  # the same burst met by another in-flight request
    assert limiter.penalty == 0.5
    limiter.throttled(62.0, None)
    assert limiter.penalty == 0.25
    sent = greedy(limiter, 62.0, 92.0)
    assert len(sent) <= 30 * 400 / 30 * 0.25 + 1
    # without 429s the rate comes back, a quarter per 30 s window
    greedy(limiter, 92.0, 300.0)
    assert limiter.penalty == 1.0
    assert limiter.limits(300.0) == base


def test_penalty_never_reaches_zero() -> None:
    limiter = RateLimiter(WINDOWS, MARGIN)
    for i in range(50):
        limiter.throttled(float(i * 2), None)
    assert limiter.penalty == RateLimiter.PENALTY_FLOOR
    assert greedy(limiter, 100.0, 110.0)


def test_retry_after_blocks_every_sender() -> None:
    limiter = RateLimiter(WINDOWS, MARGIN)
    greedy(limiter, 0.0, 5.0)
    limiter.throttled(5.0, 2.5)
    assert limiter.acquire(5.0) == 2.5
    assert limiter.acquire(6.0) == 1.5
    sent = greedy(limiter, 6.0, 12.0)
    assert sent and min(sent) >= 7.5


# --- several replicas, rebalances and crashes -------------------------------------------

PARTITIONS = 3


@st.composite
def schedules(draw: st.DrawFn) -> list[tuple[float, str, tuple[int, ...]]]:
    """Rebalances (who owns each partition) and crashes at increasing times."""
    events: list[tuple[float, str, tuple[int, ...]]] = []
    t = 0.0
    owner = tuple(draw(st.lists(st.integers(0, 2), min_size=PARTITIONS, max_size=PARTITIONS)))
    events.append((0.0, "assign", owner))
    for _ in range(draw(st.integers(1, 6))):
        t += draw(st.floats(0.2, 25.0))
        if draw(st.booleans()):
            owner = tuple(
                draw(st.lists(st.integers(0, 2), min_size=PARTITIONS, max_size=PARTITIONS))
            )
            events.append((t, "assign", owner))
        else:
            events.append((t, "crash", (draw(st.integers(0, 2)),)))
    return events


def simulate(schedule: list[tuple[float, str, tuple[int, ...]]], end: float,
             explicit_now: bool) -> list[float]:
    """Three greedy replicas; at a rebalance, losers give partitions up before gainers
    get them (as both Kafka protocols do); a crash replaces a replica's limiter."""
    limiters = [RateLimiter(WINDOWS, MARGIN) for _ in range(3)]
    owned = [0, 0, 0]
    for lim in limiters:
        lim.set_share(0, PARTITIONS, now=0.0)
    sent: list[float] = []
    queue: list[tuple[float, int, int]] = [(0.0, r, 0) for r in range(3)]  # (time, replica, gen)
    gen = [0, 0, 0]
    events = list(schedule)
    while queue:
        t, r, g = heapq.heappop(queue)
        if t >= end:
            break
        while events and events[0][0] <= t:
            when, kind, arg = events.pop(0)
            if kind == "crash":
                (victim,) = arg
                limiters[victim] = RateLimiter(WINDOWS, MARGIN)
                limiters[victim].set_share(owned[victim], PARTITIONS, now=when)
                gen[victim] += 1
                heapq.heappush(queue, (when, victim, gen[victim]))
                continue
            new = [sum(1 for o in arg if o == i) for i in range(3)]
            order = sorted(range(3), key=lambda i: new[i] - owned[i])  # losers first
            for step, i in enumerate(order):
                at = when + step * 0.01
                if explicit_now:
                    limiters[i].set_share(new[i], PARTITIONS, now=at)
                else:
                    limiters[i].set_share(new[i], PARTITIONS)
            owned = new
        if g != gen[r]:
            continue  # a crashed replica's old schedule
        wait = limiters[r].acquire(t)
        if wait <= 0:
            sent.append(t)
            heapq.heappush(queue, (t, r, g))
        else:
            heapq.heappush(queue, (t + wait + 1e-9, r, g))
    return sent


@settings(max_examples=60, deadline=None)
@given(schedule=schedules(), explicit_now=st.booleans())
def test_replicas_together_stay_within_the_account_limit(
    schedule: list[tuple[float, str, tuple[int, ...]]], explicit_now: bool
) -> None:
    sent = simulate(schedule, 90.0, explicit_now)
    assert_within(sent)


def test_a_rebalance_hands_the_quota_over() -> None:
    """Replica 0 owns everything, then replicas 1 and 2 take two partitions mid-run."""
    schedule = [(0.0, "assign", (0, 0, 0)), (20.0, "assign", (0, 1, 2))]
    sent = simulate(schedule, 80.0, explicit_now=True)
    assert_within(sent)
    late = [t for t in sent if t >= 50.0]
    assert len(late) / 30.0 >= 0.9 * 400 / 30 * (1 - 0.02)  # the account still runs full


def test_share_change_without_a_time_is_conservative() -> None:
    limiter = RateLimiter(WINDOWS, MARGIN)
    limiter.set_share(1, 3, now=0.0)
    greedy(limiter, 0.0, 10.0)
    limiter.set_share(3, 3)  # the callback did not say when: refill at the lower rate
    wait = limiter.acquire(20.0)
    assert wait == 0.0  # ten idle seconds at 1/3 rate still fill the (small) bucket
    sent = greedy(limiter, 20.0, 50.0)
    assert_within(sent)
