"""Gameball's published error codes as data: (code, HTTP status, name).

Transcribed row by row from the reference's "Status and Error Codes" page
(../shared/reference/gameball-docs/overview--status-error-codes.mdx). Read by the
classification tests (connector/gameball.py `classify`) and by the sandbox, which
answers only codes from this table, each with the status the table gives it.
Pure data: no imports beyond the standard library's typing.
"""

from __future__ import annotations

from typing import NamedTuple

SOURCE = "overview--status-error-codes.mdx"


class ErrorCode(NamedTuple):
    code: int
    status: int  # the HTTP status the reference pairs with the code
    name: str


# Categories by code // 1000, as the reference names them ("Possible Error Categories").
CATEGORIES = {
    1: "Authentication Error",
    2: "Request Error",
    3: "Payload Error",
    4: "General Error",
    5: "Server Error",
    6: "Configurations Error",
    7: "Customer Error",
    8: "Subscription Error",
    9: "Transactions Error",
}

TABLE: tuple[ErrorCode, ...] = (
    ErrorCode(1000, 401, "Unauthorized"),
    ErrorCode(1001, 401, "Secret Key Required"),
    ErrorCode(1002, 403, "Forbidden"),
    ErrorCode(2000, 412, "Precondition Failed"),
    ErrorCode(2001, 422, "Concurrent Request In Progress"),
    ErrorCode(3000, 400, "Missing Arguments"),
    ErrorCode(3001, 422, "Null Arguments"),
    ErrorCode(3002, 415, "Not Supported Extension"),
    ErrorCode(3003, 422, "Invalid Value"),
    ErrorCode(3004, 400, "Not Achieved"),
    ErrorCode(3005, 422, "Body Hashed Invalid"),
    ErrorCode(3006, 422, "Name Length Invalid"),
    ErrorCode(3007, 422, "Name Already Exists"),
    ErrorCode(3008, 422, "Email Already Exists"),
    ErrorCode(3009, 422, "Inactive"),
    ErrorCode(3010, 422, "Invalid Leveling Method"),
    ErrorCode(3011, 422, "Limit Exceed"),
    ErrorCode(3012, 422, "Recaptcha Invalid"),
    ErrorCode(3013, 415, "Not Supported"),
    ErrorCode(3014, 423, "Read Only"),
    ErrorCode(3015, 423, "Edit Required"),
    ErrorCode(3016, 400, "Invalid Payload"),
    ErrorCode(3017, 404, "Event Not Found"),
    ErrorCode(4000, 400, "Failed"),
    ErrorCode(4004, 404, "Not Found"),
    ErrorCode(4500, 400, "Something Wrong"),
    ErrorCode(5000, 500, "Internal Server Error"),
    ErrorCode(5003, 503, "Service Unavailable"),
    ErrorCode(6000, 422, "Gameball Disabled"),
    ErrorCode(6001, 422, "Cashback Disabled"),
    ErrorCode(6002, 422, "Default Language Not Set"),
    ErrorCode(6003, 403, "Cannot Access Coupon Configurations"),
    ErrorCode(7000, 404, "Customer Not Found"),
    ErrorCode(7001, 422, "Customer Already Exists"),
    ErrorCode(7002, 422, "Customer Already Referred"),
    ErrorCode(7003, 404, "Referral Code Not Found"),
    ErrorCode(7004, 422, "Guest Identifier Already Exists"),
    ErrorCode(7005, 422, "Customer Already Referred"),
    ErrorCode(7006, 422, "Invalid Referral"),
    ErrorCode(8000, 403, "Feature Unavailable"),
    ErrorCode(9000, 422, "Transaction Type Non-Reversible"),
    ErrorCode(9001, 422, "Transaction Already Cancelled"),
    ErrorCode(9002, 404, "Transaction Not Found"),
    ErrorCode(9003, 422, "Transaction Time Already Exists"),
    ErrorCode(9004, 422, "Transaction ID Already Exists"),
    ErrorCode(9005, 404, "Reversed Transaction Not Found"),
    ErrorCode(9006, 404, "Transaction Hold Reference Not Found"),
    ErrorCode(9007, 422, "Transaction Time Not Valid"),
    ErrorCode(9008, 422, "Insufficient Balance Points"),
)

BY_CODE: dict[int, ErrorCode] = {row.code: row for row in TABLE}


def category(code: int) -> str:
    """The reference's category name for a code (also for codes the table lacks)."""
    return CATEGORIES.get(code // 1000, "General Error")
