"""Fault settings: defaults are harmless, bad values fail loudly, JSON round-trips."""

from __future__ import annotations

from typing import Any

import pytest

from connector.sandbox import errors
from connector.sandbox.faults import Faults


def test_defaults_inject_nothing() -> None:
    faults = Faults()
    assert faults.error_rate == 0 and faults.drop_rate == 0 and faults.latency_ms == 0
    assert faults.windows() == []
    assert faults.reject_customers == [] and faults.job_fail_customers == []
    assert faults.check_concurrent_customers is True


def test_windows_follow_the_rate_settings() -> None:
    assert Faults(rate_per_second=20, rate_per_30_seconds=400).windows() == [(20, 1.0),
                                                                            (400, 30.0)]
    assert Faults(rate_per_30_seconds=3).windows() == [(3, 30.0)]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"error_rate": 1.5}, "error_rate must be between 0 and 1"),
        ({"drop_rate": -0.1}, "drop_rate must be between 0 and 1"),
        ({"error_status": 200}, "error_status"),
        ({"latency_ms": -1}, "latency_ms must not be negative"),
        ({"rate_per_second": 0}, "rate_per_second must be at least 1"),
        ({"reject_customers": "c1"}, "reject_customers must be a list"),
    ],
)
def test_bad_values_are_refused(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        Faults(**kwargs)


def test_json_round_trip() -> None:
    faults = Faults(error_rate=0.25, latency_ms=40, drop_rate=0.05, rate_per_second=20,
                    rate_per_30_seconds=400, reject_customers=["bad"], job_delay_ms=200,
                    check_concurrent_customers=False, seed=7)
    assert Faults.from_mapping(faults.to_dict()) == faults


def test_from_mapping_takes_partial_json_and_coerces_numbers() -> None:
    faults = Faults.from_mapping({"error_rate": 1, "latency_ms": 40.0, "stall_seconds": 2})
    assert faults.error_rate == 1.0 and isinstance(faults.error_rate, float)
    assert faults.latency_ms == 40 and isinstance(faults.latency_ms, int)
    assert faults.stall_seconds == 2.0


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"error_rat": 0.1}, "unknown fault setting(s): error_rat"),
        ({"latency_ms": "40"}, "latency_ms must be a number"),
        ({"latency_ms": 1.5}, "latency_ms must be a whole number"),
        ({"check_concurrent_customers": 1}, "must be true or false"),
        ({"error_rate": None}, "error_rate must not be null"),
        ({"reject_customers": "bad"}, "reject_customers must be a list"),
        ({"reject_customers": [1]}, "reject_customers must be a list of customer id strings"),
        ({"error_rate": True}, "error_rate must be a number"),
    ],
)
def test_from_mapping_names_the_bad_key(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        Faults.from_mapping(data)
    assert fragment in str(caught.value)


def test_null_switches_a_rate_limit_off() -> None:
    assert Faults.from_mapping({"rate_per_second": None}).rate_per_second is None


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [(500, 5000, "Server Error"), (503, 5003, "Server Error"), (401, 1000, "Authentication Error"),
     (403, 1002, "Authentication Error"), (412, 2000, "Request Error"),
     (422, 3003, "Payload Error"), (400, 4000, "General Error"), (404, 4004, "General Error"),
     # statuses the reference pairs with no code: answered as a gateway would, without one
     (408, None, "HTTP Error"), (429, None, "HTTP Error"), (502, None, "HTTP Error")],
)
def test_injected_errors_pair_status_and_code(status: int, code: int | None, kind: str) -> None:
    error = errors.injected_error(status)
    assert (error.status, error.code, error.type) == (status, code, kind)
    if status == 429:
        assert ("Retry-After", "1") in error.headers
