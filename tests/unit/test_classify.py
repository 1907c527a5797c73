"""The retry table: HTTP status x Gameball error code -> action and reason, row by row.

docs/delivery.md has the same table with the reason for every row.
"""

from __future__ import annotations

import email.utils

import pytest

from connector.gameball import MAX_RETRY_AFTER, Action, Answer, classify, parse_retry_after

ACCEPTED, RETRY, REJECT, HALT = Action.ACCEPTED, Action.RETRY, Action.REJECT, Action.HALT


def err(code: int) -> dict[str, object]:
    return {"code": code, "type": "t", "message": "m", "requestId": "r-1"}


TABLE = [
    # (what, answer, action, reason)
    ("200 with a jobId", Answer(200, {"jobId": 7}), ACCEPTED, "ok"),
    ("200 from Send Events", Answer(200, {"success": True}), ACCEPTED, "ok"),
    ("400 payload error 3xxx", Answer(400, err(3003)), REJECT, "rejected"),
    ("400 customer error 7xxx", Answer(400, err(7001)), REJECT, "rejected"),
    ("400 general error 4xxx", Answer(400, err(4000)), REJECT, "rejected"),
    ("400 without an error object", Answer(400, None), REJECT, "rejected"),
    ("413 body too large 3013", Answer(413, err(3013)), REJECT, "rejected"),
    ("422 other than 2001", Answer(422, err(3007)), REJECT, "rejected"),
    ("422 without a code", Answer(422, {"message": "bad"}), REJECT, "rejected"),
    ("401 invalid api key", Answer(401, err(1002)), HALT, "auth"),
    ("401 without a body", Answer(401, None), HALT, "auth"),
    ("403 forbidden", Answer(403, err(1004)), HALT, "auth"),
    ("400 with an auth code 1xxx", Answer(400, err(1003)), HALT, "auth"),
    ("400 configuration code 6xxx", Answer(400, err(6001)), HALT, "account"),
    ("402 subscription code 8xxx", Answer(402, err(8001)), HALT, "subscription"),
    ("400 subscription code 8xxx", Answer(400, err(8002)), HALT, "subscription"),
    ("404 wrong base_url or path", Answer(404, err(2004)), HALT, "not_found"),
    ("400 request framing 2xxx", Answer(400, err(2012)), HALT, "request"),
    ("405 method not allowed 2005", Answer(405, err(2005)), HALT, "request"),
    ("301 redirect", Answer(301, None), HALT, "unexpected_status"),
    ("501 not implemented", Answer(501, None), HALT, "not_implemented"),
    ("408 request timeout", Answer(408, None), RETRY, "request_timeout"),
    ("422 concurrent request 2001", Answer(422, err(2001)), RETRY, "concurrent_customer"),
    ("429 too many requests", Answer(429, err(2029), retry_after=1.0), RETRY, "rate_limited"),
    ("429 without a body", Answer(429, None), RETRY, "rate_limited"),
    ("500 server error", Answer(500, err(5000)), RETRY, "server_error"),
    ("502 bad gateway (proxy html)", Answer(502, None), RETRY, "server_error"),
    ("503 unavailable", Answer(503, err(5003)), RETRY, "server_error"),
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
