"""The retry table: HTTP status x Gameball error code -> action and reason, row by row.

docs/delivery.md has the same table with the reason for every row.
"""

from __future__ import annotations

import email.utils

import pytest

from connector import gameball_codes
from connector.gameball import MAX_RETRY_AFTER, Action, Answer, classify, parse_retry_after

ACCEPTED, RETRY, REJECT, HALT = Action.ACCEPTED, Action.RETRY, Action.REJECT, Action.HALT


def err(code: int) -> dict[str, object]:
    return {"code": code, "type": "t", "message": "m", "requestId": "r-1"}


TABLE = [
    # (what, answer, action, reason)
    ("200 with a jobId", Answer(200, {"jobId": 7}), ACCEPTED, "ok"),
    ("200 from Send Events", Answer(200, {"success": True}), ACCEPTED, "ok"),
    ("412 precondition failed 2000", Answer(412, err(2000)), REJECT, "rejected"),
    ("404 customer not found 7000", Answer(404, err(7000)), REJECT, "rejected"),
    ("422 invalid value 3003", Answer(422, err(3003)), REJECT, "rejected"),
    ("400 invalid payload 3016", Answer(400, err(3016)), REJECT, "rejected"),
    ("400 failed 4000", Answer(400, err(4000)), REJECT, "rejected"),
    ("400 something wrong 4500", Answer(400, err(4500)), REJECT, "rejected"),
    ("404 not found 4004", Answer(404, err(4004)), REJECT, "rejected"),
    ("400 without an error object", Answer(400, None), REJECT, "rejected"),
    ("422 without a code", Answer(422, {"message": "bad"}), REJECT, "rejected"),
    ("400 unknown code: by status class", Answer(400, err(2999)), REJECT, "rejected"),
    ("401 unauthorized 1000", Answer(401, err(1000)), HALT, "auth"),
    ("401 secret key required 1001", Answer(401, err(1001)), HALT, "auth"),
    ("403 forbidden 1002", Answer(403, err(1002)), HALT, "auth"),
    ("401 without a body", Answer(401, None), HALT, "auth"),
    ("403 without a body", Answer(403, None), HALT, "auth"),
    ("422 gameball disabled 6000", Answer(422, err(6000)), HALT, "account"),
    ("403 coupon configurations 6003", Answer(403, err(6003)), HALT, "account"),
    ("403 feature unavailable 8000", Answer(403, err(8000)), HALT, "subscription"),
    ("404 without a Gameball body", Answer(404, None), HALT, "not_found"),
    ("404 with a non-Gameball body", Answer(404, {"value": "Not Found"}), HALT, "not_found"),
    ("301 redirect", Answer(301, None), HALT, "unexpected_status"),
    ("501 not implemented", Answer(501, None), HALT, "not_implemented"),
    ("408 request timeout", Answer(408, None), RETRY, "request_timeout"),
    ("422 concurrent request 2001", Answer(422, err(2001)), RETRY, "concurrent_customer"),
    ("429 too many requests", Answer(429, None, retry_after=1.0), RETRY, "rate_limited"),
    ("500 internal server error 5000", Answer(500, err(5000)), RETRY, "server_error"),
    ("502 bad gateway (proxy html)", Answer(502, None), RETRY, "server_error"),
    ("503 service unavailable 5003", Answer(503, err(5003)), RETRY, "server_error"),
    ("504 gateway timeout", Answer(504, None), RETRY, "server_error"),
    (
        "no answer before sending (refused)",
        Answer(None, error="NewConnectionError: refused", maybe_sent=False),
        RETRY,
        "connection",
    ),
    (
        "no answer before sending (connect timeout)",
        Answer(None, error="ConnectTimeoutError", maybe_sent=False),
        RETRY,
        "timeout",
    ),
    (
        "no answer after sending (read timeout)",
        Answer(None, error="read timed out", maybe_sent=True),
        RETRY,
        "timeout",
    ),
    (
        "no answer after sending (connection reset)",
        Answer(None, error="ProtocolError: Connection aborted.", maybe_sent=True),
        RETRY,
        "connection",
    ),
]


@pytest.mark.parametrize(
    ("answer", "action", "reason"),
    [pytest.param(a, act, r, id=what) for what, a, act, r in TABLE],
)
def test_classify_row(answer: Answer, action: Action, reason: str) -> None:
    verdict = classify(answer)
    assert (verdict.action, verdict.reason) == (action, reason)


# Every code of the reference's table (connector/gameball_codes.py), with what it means
# for a batch of events: the expectation is written out here, code by code, so that a
# change of the table or of classify shows up as a failing row.
_HALT_AUTH = {1000, 1001, 1002}
_HALT_ACCOUNT = {6000, 6001, 6002, 6003}
_HALT_SUBSCRIPTION = {8000}
_RETRY = {2001: "concurrent_customer", 5000: "server_error", 5003: "server_error"}
_REJECT = (
    {2000}
    | set(range(3000, 3018))
    | {4000, 4004, 4500}
    | set(range(7000, 7007))
    | set(range(9000, 9009))
)


def _expected(code: int) -> tuple[Action, str]:
    if code in _HALT_AUTH:
        return HALT, "auth"
    if code in _HALT_ACCOUNT:
        return HALT, "account"
    if code in _HALT_SUBSCRIPTION:
        return HALT, "subscription"
    if code in _RETRY:
        return RETRY, _RETRY[code]
    assert code in _REJECT, f"code {code} has no expectation in this test"
    return REJECT, "rejected"


@pytest.mark.parametrize(
    "row", [pytest.param(row, id=f"{row.code}-{row.status}") for row in gameball_codes.TABLE]
)
def test_every_reference_code_with_its_status(row: gameball_codes.ErrorCode) -> None:
    verdict = classify(Answer(row.status, err(row.code)))
    assert (verdict.action, verdict.reason) == _expected(row.code), row.name


def test_the_expectations_name_exactly_the_reference_codes() -> None:
    expected = _HALT_AUTH | _HALT_ACCOUNT | _HALT_SUBSCRIPTION | set(_RETRY) | _REJECT
    assert expected == set(gameball_codes.BY_CODE)
    assert len(gameball_codes.TABLE) == len(gameball_codes.BY_CODE) == 49


def test_reference_statuses_as_transcribed() -> None:
    """Spot checks against the reference page, so a slip in the transcription shows."""
    by_code = gameball_codes.BY_CODE
    assert by_code[1002] == (1002, 403, "Forbidden")
    assert by_code[2000] == (2000, 412, "Precondition Failed")
    assert by_code[3016] == (3016, 400, "Invalid Payload")
    assert by_code[3014].status == 423
    assert by_code[7001] == (7001, 422, "Customer Already Exists")
    assert by_code[8000] == (8000, 403, "Feature Unavailable")


def test_every_4xx_and_5xx_status_has_a_decision() -> None:
    """No status falls through to an accidental default: 4xx blame data or us, 5xx retry."""
    for status in range(400, 600):
        verdict = classify(Answer(status, None))
        if status in (401, 403, 404, 501):
            assert verdict.action is HALT, status
        elif status in (408, 429) or status >= 500:
            assert verdict.action is RETRY, status
        else:
            assert verdict.action is REJECT, status


def test_describe_is_log_safe() -> None:
    answer = Answer(400, {**err(7001), "documentationUrl": "u"}, request_id="r-1")
    assert answer.describe() == "HTTP 400 code=7001 type=t message=m requestId=r-1"
    assert Answer(None, error="read timed out").describe() == "no answer (read timed out)"


# --- Retry-After -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("5", 5.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("inf", None),
        ("nan", None),
        ("999999", MAX_RETRY_AFTER),
    ],
)
def test_retry_after_seconds(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


def test_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    header = email.utils.formatdate(now + 42, usegmt=True)  # "Tue, 14 Nov 2023 22:14:02 GMT"
    assert parse_retry_after(header, now=now) == pytest.approx(42.0)


def test_retry_after_date_in_the_past_means_now() -> None:
    now = 1_700_000_000.0
    header = email.utils.formatdate(now - 600, usegmt=True)
    assert parse_retry_after(header, now=now) == 0.0


def test_retry_after_imf_fixdate_literal() -> None:
    # RFC 9110's own example.
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
