"""Gameball's error object, as the sandbox answers it.

Gameball documents the shape (`code`, `type`, `message`, `documentationUrl`,
`requestId`) and the code ranges by thousand, but not every code. The sandbox's own
codes inside those ranges are listed in docs/sandbox.md; only 2001 is Gameball's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DOCUMENTATION_URL = "https://docs.gameball.co/api-reference/overview/status-error-codes"

# Gameball's categories, keyed by code // 1000.
ERROR_TYPES = {
    1: "Authentication Error",
    2: "Request Error",
    3: "Payload Error",
    4: "General Error",
    5: "Server Error",
    6: "Configurations Error",
    7: "Customer Error",
    8: "Subscription Error",
}

# 1xxx authentication
MISSING_API_KEY = 1001
INVALID_API_KEY = 1002
MISSING_SECRET_KEY = 1003
INVALID_SECRET_KEY = 1004
# 2xxx request
CONCURRENT_REQUEST = 2001  # Gameball's own: "Concurrent Request In Progress"
NOT_FOUND = 2004
METHOD_NOT_ALLOWED = 2005
LENGTH_REQUIRED = 2011
BAD_HTTP_REQUEST = 2012
TOO_MANY_REQUESTS = 2029
JOB_NOT_FOUND = 2044
# 3xxx payload
INVALID_JSON = 3001
UNSUPPORTED_CONTENT_TYPE = 3002
INVALID_BODY = 3003
EMPTY_BATCH = 3004
TOO_MANY_ITEMS = 3005
INVALID_CUSTOMER_ID = 3006
INVALID_EVENTS = 3007
BODY_TOO_LARGE = 3013
# 4xxx general, 5xxx server (injected faults)
GENERAL_ERROR = 4000
SERVER_ERROR = 5000
# 7xxx customer
CUSTOMER_REJECTED = 7001
CUSTOMER_EVENT_FAILED = 7002


@dataclass(frozen=True, slots=True)
class ApiError:
    """One error answer: HTTP status, Gameball code and message, extra headers.

    Built by the pure validators and the server; `body()` adds the per-request id.
    """

    status: int
    code: int
    message: str
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def type(self) -> str:
        return ERROR_TYPES.get(self.code // 1000, "General Error")

    def body(self, request_id: str) -> dict[str, Any]:
        """The documented error object for this answer."""
        return {
            "code": self.code,
            "type": self.type,
            "message": self.message,
            "documentationUrl": DOCUMENTATION_URL,
            "requestId": request_id,
        }


def injected_error(status: int) -> ApiError:
    """The error answer for an injected fault with HTTP `status` (error_rate).

    Called by the server when the dice say "fail"; the code follows the status so
    a client's status x code classification sees a consistent pair.
    """
    if status in (401, 403):
        return ApiError(status, INVALID_API_KEY, "Injected authentication failure (sandbox fault)")
    if status == 429:
        return ApiError(status, TOO_MANY_REQUESTS, "Injected rate limit (sandbox fault)",
                        (("Retry-After", "1"),))
    if status >= 500:
        code = SERVER_ERROR + (status - 500 if status < 600 else 0)
        return ApiError(status, code, f"Injected server error {status} (sandbox fault)")
    return ApiError(status, GENERAL_ERROR + (status - 400),
                    f"Injected error {status} (sandbox fault)")
