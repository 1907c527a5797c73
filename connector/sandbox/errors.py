"""Gameball's error object, as the sandbox answers it.

Every code the sandbox answers is one of the reference's table
(connector/gameball_codes.py, from overview--status-error-codes.mdx) with the HTTP
status the table gives it: `ApiError` refuses any other pair when it is built. Answers
that are not about a Gameball request at all (unknown path, wrong method, malformed
HTTP, 429 from the rate-limiting page, an injected gateway status such as 502) carry
no code: the reference gives them none. docs/sandbox.md lists which code answers what.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from connector.gameball_codes import BY_CODE, category

DOCUMENTATION_URL = "https://docs.gameball.co/api-reference/overview/status-error-codes"

# 1xxx authentication
UNAUTHORIZED = 1000  # missing or wrong apikey, wrong secretkey
SECRET_KEY_REQUIRED = 1001  # no secretkey where one is needed (batch, status, High Security)
FORBIDDEN = 1002
# 2xxx request
PRECONDITION_FAILED = 2000  # the reject_customers fault's default ("without customerId")
CONCURRENT_REQUEST = 2001  # "Concurrent Request In Progress"
# 3xxx payload
MISSING_ARGUMENTS = 3000  # a required field (or every item) is missing
INVALID_VALUE = 3003  # a field has the wrong type or an empty value
LIMIT_EXCEED = 3011  # over 1,000 items, or a body over the sandbox's size cap
NOT_SUPPORTED = 3013  # 415: "Sending non-JSON where JSON is expected"
INVALID_PAYLOAD = 3016  # "Malformed JSON body", or not the documented shape
# 4xxx general, 5xxx server
FAILED = 4000
NOT_FOUND = 4004  # no such batch job
SERVER_ERROR = 5000
SERVICE_UNAVAILABLE = 5003
# Job items the job_fail_customers fault fails (the errors[] entry is our assumption)
JOB_ITEM_FAILED = PRECONDITION_FAILED

# An injected error (error_status) carries the table's code for its status; statuses
# the table has no code for (408, 429, 502, 504, ...) are answered without one.
_CODE_FOR_STATUS = {400: FAILED, 401: UNAUTHORIZED, 403: FORBIDDEN, 404: NOT_FOUND,
                    412: PRECONDITION_FAILED, 415: NOT_SUPPORTED, 422: INVALID_VALUE,
                    423: 3014, 500: SERVER_ERROR, 503: SERVICE_UNAVAILABLE}


@dataclass(frozen=True, slots=True)
class ApiError:
    """One error answer: HTTP status, Gameball code (None: an HTTP-level answer), message.

    Built by the pure validators and the server; `body()` adds the per-request id.
    ValueError when `code` is not in the reference's table with exactly this status.
    """

    status: int
    code: int | None
    message: str
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.code is None:
            return
        row = BY_CODE.get(self.code)
        if row is None or row.status != self.status:
            raise ValueError(f"{self.status}/{self.code} is not in Gameball's error-code table")

    @property
    def type(self) -> str:
        return "HTTP Error" if self.code is None else category(self.code)

    def body(self, request_id: str) -> dict[str, Any]:
        """The documented error object; without `code` for an HTTP-level answer."""
        if self.code is None:
            return {"status": self.status, "message": self.message, "requestId": request_id}
        return {
            "code": self.code,
            "type": self.type,
            "message": self.message,
            "documentationUrl": DOCUMENTATION_URL,
            "requestId": request_id,
        }


def api_error(code: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> ApiError:
    """The error for Gameball `code`, with the HTTP status the reference gives it."""
    return ApiError(BY_CODE[code].status, code, message, headers)


def http_error(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> ApiError:
    """An answer from the HTTP layer (routing, framing, rate limits): no Gameball code."""
    return ApiError(status, None, message, headers)


def injected_error(status: int) -> ApiError:
    """The error answer for an injected fault with HTTP `status` (error_rate).

    Called by the server when the dice say "fail"; the code is the table's for that
    status, so a client's status x code classification sees a documented pair.
    """
    if status == 429:
        return http_error(status, "Injected rate limit (sandbox fault)", (("Retry-After", "1"),))
    code = _CODE_FOR_STATUS.get(status)
    message = f"Injected error {status} (sandbox fault)"
    return http_error(status, message) if code is None else api_error(code, message)
