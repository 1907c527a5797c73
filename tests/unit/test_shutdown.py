"""The shutdown budget: each phase's deadline from SIGTERM, and the watchdog that ends
the process at the bound whatever is stuck (docs/delivery.md, "Shutdown budget")."""

from __future__ import annotations

import logging

import pytest

from connector.shutdown import ABANDON_S, HARD_S, SLACK_S, WATCHDOG_S, ShutdownBudget
from tests.support import wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_phases_fit_inside_drain_plus_close_plus_two_seconds() -> None:
    clock = Clock()
    budget = ShutdownBudget(20, 10, clock=clock)
    assert budget.bound == 20 + 10 + SLACK_S
    assert not budget.stop.is_set() and not budget.drain_over()
    assert budget.begin()
    assert not budget.begin()  # a second signal changes nothing
    assert budget.stop.is_set()
    assert budget.drain_deadline() == 120
    clock.now = 119.9
    assert not budget.drain_over()
    clock.now = 120.0
    assert budget.drain_over()
    # The close phase gets close_seconds from its start, never past the schedule.
    clock.now = 101.0  # drained early
    assert budget.close_phase() == 111.0
    clock.now = 120.5  # drain and abandon used up
    closing = budget.close_phase()
    assert closing == 100 + 20 + ABANDON_S + 10
    assert closing < 100 + budget.bound - (SLACK_S - ABANDON_S) + 1e-9
    # The job tracker and the dead-letter flush take their shares, the consumer the rest.
    assert budget.jobs_wait(closing) == 2.0
    assert budget.dead_letter_wait(closing) == 4.0
    clock.now = closing - 1
    assert budget.dead_letter_wait(closing) == 1.0
    assert budget.left(closing) == 1.0
    clock.now = closing + 5
    assert budget.left(closing) == 0.0


def test_a_shutdown_without_a_signal_starts_its_budget_when_asked() -> None:
    clock = Clock()
    budget = ShutdownBudget(3, 4, clock=clock)
    assert budget.drain_deadline() == 103  # begins now (a failure, not a signal)
    assert budget.stop.is_set()


def test_the_watchdog_exits_at_the_bound_and_names_what_was_stuck(
    caplog: pytest.LogCaptureFixture,
) -> None:
    codes: list[int] = []
    alarms: list[float] = []
    budget = ShutdownBudget(0.1, 0.2, exit_hard=codes.append, alarm=alarms.append,
                            watchdog=True)
    with caplog.at_level(logging.CRITICAL, logger="connector.shutdown"):
        budget.begin()
        wait_until(lambda: codes, 0.1 + 0.2 + WATCHDOG_S + 2, "the watchdog's exit")
    assert codes == [1]
    assert alarms == [pytest.approx(0.1 + 0.2 + HARD_S)]  # the C backstop, later
    assert WATCHDOG_S < HARD_S < SLACK_S
    (record,) = [r for r in caplog.records if r.msg.startswith("shutdown bound reached")]
    stacks = record.threads  # type: ignore[attr-defined]
    assert "shutdown-watchdog" in stacks and "MainThread" in stacks
    assert "wait_until" in stacks["MainThread"]  # where this test's main thread was


def test_the_watchdog_stands_down_when_the_process_exits_by_itself() -> None:
    codes: list[int] = []
    alarms: list[float] = []
    budget = ShutdownBudget(0.0, 0.05, exit_hard=codes.append, alarm=alarms.append,
                            watchdog=True)
    budget.begin()
    budget.finished()
    with pytest.raises(AssertionError):
        wait_until(lambda: codes, WATCHDOG_S + 0.5, "no exit")
    assert codes == []
    assert alarms == [pytest.approx(0.05 + HARD_S)]
