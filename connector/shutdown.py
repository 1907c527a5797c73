"""SIGTERM's time budget: the phases of a shutdown and the watchdog that bounds them all.

The CLI creates one `ShutdownBudget`, calls `begin()` from its signal thread and passes it
to the pipeline, whose `_shutdown` asks it for each phase's deadline. The whole stop takes
at most `drain_seconds + close_seconds + SLACK_S`, whatever Gameball, the dead-letter
producer or the broker do: past that the watchdog logs every thread's stack and leaves
with `os._exit(1)`. The split is in docs/delivery.md ("Shutdown budget").
"""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable

log = logging.getLogger(__name__)

SLACK_S = 2.0  # the bound is drain + close + this
ABANDON_S = 0.5  # after the drain: senders in a backoff or rate-limit wait give up
WATCHDOG_S = 1.5  # after drain + close: exit whatever is still running
HARD_S = 1.9  # after drain + close: faulthandler's C thread ends a process no thread can run in
JOBS_SHARE = 0.2  # of close_seconds, at most JOBS_MAX_S: job tracker's last polls
JOBS_MAX_S = 2.0
DEAD_LETTER_SHARE = 0.4  # of close_seconds, at most DEAD_LETTER_MAX_S: last dead-letter acks
DEAD_LETTER_MAX_S = 5.0
EXIT_WATCHDOG = 1


class ShutdownBudget:
    """When the stop began and when each phase must be over (monotonic seconds).

    `stop` is the event the pipeline's loop watches. Thread-safe: `begin` may be called
    from the signal thread and again (a no-op) from the loop.
    """

    def __init__(
        self,
        drain_seconds: float,
        close_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        exit_hard: Callable[[int], None] | None = None,
        alarm: Callable[[float], None] | None = None,
        watchdog: bool = False,
    ) -> None:
        self.drain_seconds = drain_seconds
        self.close_seconds = close_seconds
        self.stop = threading.Event()
        self._clock = clock
        self._exit_hard = exit_hard or flush_and_exit
        self._alarm = alarm or _hard_exit_later
        self._watchdog = watchdog  # the CLI's budget: enforce the bound on the process
        self._lock = threading.Lock()
        self._began: float | None = None
        self._done = threading.Event()

    @property
    def bound(self) -> float:
        """Seconds from `begin` to the process's exit, at most."""
        return self.drain_seconds + self.close_seconds + SLACK_S

    def begin(self) -> bool:
        """Start the clock (and the watchdog) and set `stop`; False if already begun."""
        with self._lock:
            if self._began is not None:
                return False
            self._began = self._clock()
        self.stop.set()
        if self._watchdog:
            # A thread inside a C call that holds the GIL (seen: confluent-kafka's rebalance
            # callback during close) stops every Python thread, the watchdog's too;
            # faulthandler's timer is a C thread that needs no GIL (docs/delivery.md).
            self._alarm(self.drain_seconds + self.close_seconds + HARD_S)
            threading.Thread(target=self._watch, name="shutdown-watchdog", daemon=True).start()
        return True

    def finished(self) -> None:
        """The process is about to exit on its own: the watchdog and the alarm stand down."""
        self._done.set()
        if self._began is not None and self._watchdog:
            faulthandler.cancel_dump_traceback_later()

    def _start(self) -> float:
        if self._began is None:
            self.begin()
        assert self._began is not None
        return self._began

    def drain_deadline(self) -> float:
        return self._start() + self.drain_seconds

    def drain_over(self) -> bool:
        """A stop began and its drain time is over (a revoke's drain ends here too)."""
        began = self._began
        return began is not None and self._clock() >= began + self.drain_seconds

    def close_deadline(self) -> float:
        """The close phase starts when the drain and abandon are over, at the latest."""
        return self._start() + self.drain_seconds + ABANDON_S + self.close_seconds

    def left(self, deadline: float, at_most: float | None = None) -> float:
        """Seconds until `deadline` (never negative), capped at `at_most`."""
        left = max(0.0, deadline - self._clock())
        return left if at_most is None else min(left, at_most)

    def close_phase(self) -> float:
        """Deadline of the close phase, from its start: close_seconds, within the bound."""
        return min(self._clock() + self.close_seconds, self.close_deadline())

    def jobs_wait(self, closing: float) -> float:
        """How long the job tracker's last status polls may take."""
        return self.left(closing, min(JOBS_MAX_S, JOBS_SHARE * self.close_seconds))

    def dead_letter_wait(self, closing: float) -> float:
        """How long to wait for the dead-letter copies' last acknowledgements."""
        return self.left(closing, min(DEAD_LETTER_MAX_S, DEAD_LETTER_SHARE * self.close_seconds))

    def _watch(self) -> None:
        began = self._began if self._began is not None else self._clock()
        wait = began + self.drain_seconds + self.close_seconds + WATCHDOG_S - self._clock()
        if self._done.wait(max(0.0, wait)):
            return
        log.critical(
            "shutdown bound reached: exiting now; offsets not committed yet are read again",
            extra={"bound_seconds": self.bound, "threads": thread_stacks()},
        )
        self._exit_hard(EXIT_WATCHDOG)


def _hard_exit_later(seconds: float) -> None:
    """After `seconds`, faulthandler writes every thread's stack to stderr (raw text: no
    Python code can run then) and calls _exit(1), from a C thread."""
    faulthandler.dump_traceback_later(seconds, exit=True)


def flush_and_exit(code: int) -> None:
    """Flush the logs and leave now, without the interpreter's exit (which joins threads
    and destroys librdkafka clients, either of which may block)."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def thread_stacks() -> dict[str, str]:
    """Every thread's current stack, by name: what a stuck shutdown waits on."""
    names = {t.ident: t.name for t in threading.enumerate()}
    return {
        names.get(ident, str(ident)): "".join(traceback.format_stack(frame))
        for ident, frame in sys._current_frames().items()
    }
