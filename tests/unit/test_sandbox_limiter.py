"""The sandbox's two-window limiter, driven by a hand-moved clock."""

from __future__ import annotations

import pytest

from connector.sandbox.limiter import SlidingWindowLimiter, retry_after_header


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_no_windows_admits_everything() -> None:
    limiter = SlidingWindowLimiter([], Clock())
    assert all(limiter.try_admit() is None for _ in range(10_000))


def test_per_second_window_slides() -> None:
    clock = Clock()  # steps of 1/8 s stay exact in binary floating point
    limiter = SlidingWindowLimiter([(3, 1.0)], clock)
    for _ in range(3):
        assert limiter.try_admit() is None
        clock.now += 0.125
    # 4th at t=0.375: the first admission (t=0) leaves the window at t=1.0.
    assert limiter.try_admit() == pytest.approx(0.625)
    clock.now = 1000.0 + 1.0
    assert limiter.try_admit() is None  # (0, 1] holds 0.125, 0.25 and now
    assert limiter.try_admit() == pytest.approx(0.125)


def test_refused_requests_do_not_count() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter([(2, 1.0)], clock)
    assert limiter.try_admit() is None
    assert limiter.try_admit() is None
    for _ in range(100):  # hammering while limited must not extend the wait
        assert limiter.try_admit() == pytest.approx(1.0)
    clock.now += 1.0
    assert limiter.try_admit() is None


def test_both_windows_apply_and_the_longer_wait_wins() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter([(5, 1.0), (8, 30.0)], clock)
    admitted = []
    for _ in range(16):  # 8 requests/s for 2 s
        if limiter.try_admit() is None:
            admitted.append(clock.now - 1000.0)
        clock.now += 0.125
    # 5 in the first second, 3 more as the first second slides, then 8 per 30 s is full.
    assert admitted == [0.0, 0.125, 0.25, 0.375, 0.5, 1.0, 1.125, 1.25]
    # Now at t=2.0; the oldest of the 8 (t=0) leaves the 30 s window at t=30.
    assert limiter.try_admit() == pytest.approx(28.0)


def test_per_second_cap_holds_in_every_sliding_second() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter([(4, 1.0)], clock)
    stamps = []
    for _ in range(400):  # a request every 25 ms for 10 s
        if limiter.try_admit() is None:
            stamps.append(clock.now)
        clock.now += 0.025
    for i, start in enumerate(stamps):
        assert sum(1 for s in stamps[i:] if s < start + 1.0) <= 4
    assert len(stamps) >= 4 * 9  # and it does admit at the allowed pace


def test_reconfigure_keeps_history() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter([], clock)
    for _ in range(5):
        assert limiter.try_admit() is None
    limiter.configure([(5, 30.0)])
    assert limiter.try_admit() is not None  # the 5 earlier admissions still count
    limiter.reset()
    assert limiter.try_admit() is None


def test_invalid_windows_are_refused() -> None:
    with pytest.raises(ValueError):
        SlidingWindowLimiter([(0, 1.0)], Clock())
    with pytest.raises(ValueError):
        SlidingWindowLimiter([(1, 0.0)], Clock())


@pytest.mark.parametrize(("wait", "header"), [(0.001, 1), (0.999, 1), (1.0, 1), (1.01, 2),
                                              (29.2, 30)])
def test_retry_after_rounds_up_to_whole_seconds(wait: float, header: int) -> None:
    assert retry_after_header(wait) == header
