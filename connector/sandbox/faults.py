"""What the sandbox does wrong on purpose, and how much.

One plain dataclass, replaced as a whole at run time (`SandboxServer.set_faults`,
`PUT /_sandbox/faults`, CLI flags). Which endpoints each fault touches is in
docs/sandbox.md; in short, the send endpoints get all of them, job status and stop
latency, stall and their own rate limit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from connector.gameball_codes import BY_CODE


@dataclass
class Faults:
    """Fault settings; the defaults are a well-behaved API (no faults at all).

    Raises ValueError on out-of-range values so a typo fails loudly, not silently.
    """

    error_rate: float = 0.0  # share of send requests answered `error_status`, nothing stored
    error_status: int = 500
    latency_ms: int = 0  # added before every API answer
    drop_rate: float = 0.0  # share of send requests stored, then closed without an answer
    rate_per_second: int | None = None  # sliding windows over admitted arrivals -> 429
    rate_per_30_seconds: int | None = None
    retry_after_seconds: int | None = None  # None: time until the window has room (>= 1 s)
    stall_seconds: float = 0.0  # from now on, hold every API request this long
    reject_customers: list[str] = field(default_factory=list)  # -> reject_code, nothing stored
    reject_code: int = 2000  # a code of the reference's table; answered with its status
    job_fail_customers: list[str] = field(default_factory=list)  # accepted, failed in the job
    job_delay_ms: int = 0  # a batch job completes this long after acceptance
    # The "Others" bucket (overview--rate-limiting.mdx: 30/s, 360/30 s) on status reads
    # and stops; null: no limit.
    status_rate_per_second: int | None = None
    status_rate_per_30_seconds: int | None = None
    check_concurrent_customers: bool = True  # same customer in two requests at once -> 2001
    seed: int | None = None  # for the error and drop dice

    def __post_init__(self) -> None:
        for name in ("error_rate", "drop_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if not 400 <= self.error_status <= 599:
            raise ValueError(f"error_status must be an HTTP error status (400-599), "
                             f"got {self.error_status}")
        for name in ("latency_ms", "job_delay_ms", "stall_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.reject_code not in BY_CODE:
            raise ValueError(f"reject_code must be a code of Gameball's error table, "
                             f"got {self.reject_code}")
        for name in ("rate_per_second", "rate_per_30_seconds", "retry_after_seconds",
                     "status_rate_per_second", "status_rate_per_30_seconds"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (or null for no limit)")
        for name in ("reject_customers", "job_fail_customers"):
            value = getattr(self, name)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{name} must be a list of customer id strings")

    def windows(self) -> list[tuple[int, float]]:
        """The limiter windows these faults ask for."""
        windows: list[tuple[int, float]] = []
        if self.rate_per_second is not None:
            windows.append((self.rate_per_second, 1.0))
        if self.rate_per_30_seconds is not None:
            windows.append((self.rate_per_30_seconds, 30.0))
        return windows

    def status_windows(self) -> list[tuple[int, float]]:
        """The limiter windows for status reads and stops (the "Others" bucket)."""
        windows: list[tuple[int, float]] = []
        if self.status_rate_per_second is not None:
            windows.append((self.status_rate_per_second, 1.0))
        if self.status_rate_per_30_seconds is not None:
            windows.append((self.status_rate_per_30_seconds, 30.0))
        return windows

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy (GET /_sandbox/faults)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Faults:
        """Build from JSON (PUT /_sandbox/faults); unknown keys and bad types raise ValueError."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown fault setting(s): {', '.join(unknown)}; "
                             f"known: {', '.join(known)}")
        values: dict[str, Any] = {}
        for name, value in data.items():
            values[name] = _coerce(name, known[name].type, value)
        return cls(**values)


def _coerce(name: str, annotation: object, value: Any) -> Any:
    # Annotations are strings here (from __future__ import annotations).
    kind = str(annotation)
    optional = "None" in kind
    if value is None:
        if optional:
            return None
        raise ValueError(f"{name} must not be null")
    if kind.startswith("bool"):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false")
        return value
    if kind.startswith("list"):
        return value  # __post_init__ checks it is a list of strings
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    if kind.startswith("int"):
        if value != int(value):
            raise ValueError(f"{name} must be a whole number")
        return int(value)
    return float(value)
