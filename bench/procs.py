"""Child processes measured by the OS: CPU and peak RSS from `os.wait4`, a /proc timeline.

`bench.run` starts every measured program (limit, connector, naive peer) through
`Measured`, so the numbers are that process's own: user+sys CPU from the rusage the
kernel returns when it is reaped, and the peak RSS from /proc/<pid>/status `VmHWM`
(`ru_maxrss` alone is not the child's: the kernel keeps the high-water mark of the
memory it had before `exec`, i.e. the bench process's own size at the spawn, 149 MB
with a 200,000-record data set in memory, whatever the child used). A sampler thread reads
/proc/<pid>/stat every few tens of milliseconds so the CPU spent in start-up (imports,
group join) can be told apart from the CPU spent processing records.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Sample:
    wall: float  # time.time()
    cpu_s: float  # user + system so far
    rss_mb: float


@dataclass(frozen=True)
class Usage:
    """What the kernel reported when the process was reaped."""

    exit_code: int
    user_s: float
    sys_s: float
    max_rss_mb: float
    started: float  # wall clock
    ended: float

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s


def read_stat(pid: int) -> tuple[float, float] | None:
    """(cpu seconds, rss MB) of a live process from /proc; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
    except OSError:
        return None
    # Fields after the command name (which may contain spaces) start at field 3.
    rest = text[text.rfind(b")") + 2 :].split()
    utime, stime, rss = int(rest[11]), int(rest[12]), int(rest[21])
    return (utime + stime) / _TICK, rss * _PAGE / 1e6


def read_hwm_mb(pid: int) -> float:
    """Peak resident set (MiB) of a live process's current image; 0.0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Measured:
    """One child process: start, watch, stop, reap with its rusage.

    Used by bench.run for every measured program. `wait` raises TimeoutError at its
    deadline (the caller then kills the process: a benchmark never hangs).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        stdout_path: Path | None = None,
        sample_every: float = 0.05,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.stdout_path = stdout_path
        self.env = env
        self.sample_every = sample_every
        self.samples: list[Sample] = []
        self.usage: Usage | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._started = 0.0
        self._sampler: threading.Thread | None = None
        self._hwm_mb = 0.0  # the largest VmHWM read while the process ran
        self._reaped = threading.Event()

    def start(self) -> Measured:
        log = self.log_path.open("wb")
        out = self.stdout_path.open("wb") if self.stdout_path else log
        try:
            self._started = time.time()
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=log, env=self.env)
        finally:
            log.close()
            if out is not log:
                out.close()
        self._sampler = threading.Thread(target=self._sample, name=f"sample-{self.name}",
                                         daemon=True)
        self._sampler.start()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, "start() first"
        return self.proc.pid

    def _sample(self) -> None:
        while not self._reaped.is_set():
            got = read_stat(self.pid)
            if got is None:
                return
            self.samples.append(Sample(time.time(), got[0], got[1]))
            self._hwm_mb = max(self._hwm_mb, read_hwm_mb(self.pid))
            self._reaped.wait(self.sample_every)

    def poll(self) -> Usage | None:
        """Reap the process if it has exited (keeping its rusage); None while it runs."""
        if self.usage is not None:
            return self.usage
        pid, status, ru = os.wait4(self.pid, os.WNOHANG)
        if pid == 0:
            return None
        ended = time.time()
        self._reaped.set()
        code = os.waitstatus_to_exitcode(status)
        assert self.proc is not None
        self.proc.returncode = code  # reaped here: Popen must not wait for it again
        peak = self._hwm_mb or ru.ru_maxrss / 1024  # rusage only if /proc was never read
        self.usage = Usage(code, ru.ru_utime, ru.ru_stime, peak, self._started, ended)
        return self.usage

    def running(self) -> bool:
        return self.poll() is None

    def wait(self, timeout: float) -> Usage:
        deadline = time.monotonic() + timeout
        while True:
            usage = self.poll()
            if usage is not None:
                return usage
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.name} still running after {timeout:.0f}s")
            time.sleep(0.01)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        if self.usage is None and self.proc is not None:
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> Usage:
        """SIGTERM, wait up to `timeout`, then SIGKILL."""
        self.signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except TimeoutError:
            self.signal(signal.SIGKILL)
            return self.wait(10)

    def cpu_at(self, wall: float) -> float | None:
        """CPU seconds the process had used at `wall` (linear between samples)."""
        before = [s for s in self.samples if s.wall <= wall]
        after = [s for s in self.samples if s.wall > wall]
        if not before:
            return after[0].cpu_s if after else None
        a = before[-1]
        if not after:
            return a.cpu_s
        b = after[0]
        share = (wall - a.wall) / (b.wall - a.wall) if b.wall > a.wall else 0.0
        return a.cpu_s + share * (b.cpu_s - a.cpu_s)
