"""Child processes measured by the OS: CPU from `os.wait4`, peak RSS, a /proc timeline.

`bench.run` starts every measured program (limit, connector, the peers) through
`Measured`, so the numbers are that process's own: user+sys CPU from the rusage the
kernel returns when it is reaped. A sampler thread reads /proc/<pid>/stat every few
tens of milliseconds so the CPU spent in start-up (imports, group join) can be told
apart from the CPU spent processing records.

Peak RSS is the child's `VmHWM` (/proc/<pid>/status, its own address space's high-water
mark), read by the same sampler until the process exits. Not `ru_maxrss`: Linux carries
the parent's high-water mark into a child over fork+exec (exec_mmap keeps the old mm's
peak), so every child of a 116 MB bench.run reported at least 116 MB. `ru_maxrss` is
kept beside it.

The same sampler reads /proc/stat: the CPU the whole machine was busy with (every process,
the sandbox and the broker included), so that a run's throughput can be read against
how much of the machine was left (`Measured.machine_between`).
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
    hwm_mb: float | None = None  # VmHWM: the peak RSS so far
    machine_busy_s: float | None = None  # CPU seconds every core was busy, since boot


@dataclass(frozen=True)
class Usage:
    """What the kernel reported when the process was reaped."""

    exit_code: int
    user_s: float
    sys_s: float
    max_rss_mb: float  # peak RSS: the last VmHWM sampled, else ru_maxrss
    started: float  # wall clock
    ended: float
    ru_maxrss_mb: float = 0.0  # what wait4 said (floored by the parent's peak, see above)

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s


def read_hwm(pid: int) -> float | None:
    """VmHWM of a live process in MB; None once it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError):
        return None
    return None


def read_machine_busy() -> float | None:
    """Busy CPU seconds of the whole machine since boot (all cores)."""
    try:
        with open("/proc/stat", "rb") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[:7])
    return (user + nice + system + irq + softirq) / _TICK  # not idle, iowait or steal


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
        self.peak_mb: float | None = None  # highest VmHWM read
        self.usage: Usage | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._started = 0.0
        self._sampler: threading.Thread | None = None
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
            hwm = read_hwm(self.pid)
            if hwm is not None:
                self.peak_mb = max(self.peak_mb or 0.0, hwm)
            self.samples.append(Sample(time.time(), got[0], got[1], hwm, read_machine_busy()))
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
        ru_maxrss = ru.ru_maxrss / 1024
        self.usage = Usage(code, ru.ru_utime, ru.ru_stime,
                           ru_maxrss if self.peak_mb is None else self.peak_mb,
                           self._started, ended, ru_maxrss)
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

    def machine_between(self, start: float, done: float) -> float | None:
        """Busy CPU seconds of the whole machine between two wall times (the nearest
        samples inside); None without two samples there."""
        inside = [s for s in self.samples
                  if start <= s.wall <= done and s.machine_busy_s is not None]
        if len(inside) < 2 or inside[-1].wall <= inside[0].wall:
            return None
        first, last = inside[0], inside[-1]
        assert first.machine_busy_s is not None and last.machine_busy_s is not None
        rate = (last.machine_busy_s - first.machine_busy_s) / (last.wall - first.wall)
        return rate * (done - start)
