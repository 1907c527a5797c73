"""`validate --check-credentials`: what each answer to the one harmless request means."""

from __future__ import annotations

import pytest

from connector.credentials import describe
from connector.gameball import Answer


def err(code: int) -> dict[str, object]:
    return {"code": code, "type": "t", "message": "m", "requestId": "r"}


@pytest.mark.parametrize(
    ("answer", "ok", "fragment"),
    [
        (Answer(200, {"batchId": "0", "status": "completed"}), True, "accepted (HTTP 200)"),
        (Answer(404, err(4004)), True, "accepted (HTTP 404)"),  # no job 0: the keys passed
        (Answer(400, err(3000)), True, "accepted (HTTP 400)"),  # the empty Send Events body
        (Answer(401, err(1000)), False, "HTTP 401 code 1000: Unauthorized"),
        (Answer(401, err(1001)), False, "HTTP 401 code 1001: Secret Key Required"),
        (Answer(403, err(1002)), False, "HTTP 403 code 1002: Forbidden"),
        (Answer(422, err(6000)), False, "code 6000: Gameball Disabled"),
        (Answer(422, err(6001)), False, "code 6001: Cashback Disabled"),
        (Answer(403, err(8000)), False, "code 8000: Feature Unavailable"),
        (Answer(403, None), False, "HTTP 403: the credentials were refused"),
        (Answer(404, None), False, "check gameball.base_url"),
        (Answer(301, None), False, "unexpected answer (unexpected_status)"),
        (Answer(503, err(5003)), False, "did not decide"),
        (Answer(None, error="NewConnectionError: refused"), False, "no answer from Gameball"),
    ],
)
def test_each_answer_has_a_verdict_a_person_can_act_on(answer: Answer, ok: bool,
                                                       fragment: str) -> None:
    result = describe(answer)
    assert result.ok is ok
    assert fragment in result.message
