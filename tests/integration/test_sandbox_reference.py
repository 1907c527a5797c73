"""The sandbox answers only what Gameball's reference documents.

Every answer the sandbox can give is provoked over real HTTP here, and each error must
carry a code of the reference's table (connector/gameball_codes.py) with the status the
table gives it, or be an HTTP-level answer with no code at all (routing, framing, the
rate-limiting page's 429, an injected gateway status). High Security Mode and the
"Others" bucket on status reads are checked here too.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import orjson
import pytest
import urllib3

from connector.gameball_codes import BY_CODE
from connector.sandbox.faults import Faults
from connector.sandbox.server import SandboxServer
from tests.support import API_KEY, SECRET_KEY, max_in_window

pytestmark = pytest.mark.integration

BATCH = "/api/v4.0/integrations/batch/events"
EVENTS = "/api/v4.0/integrations/events"
BOTH = {"apikey": API_KEY, "secretkey": SECRET_KEY, "Content-Type": "application/json"}
API_ONLY = {"apikey": API_KEY, "Content-Type": "application/json"}
# What the HTTP layer may answer without a Gameball code, and why.
HTTP_LEVEL = {400: "malformed HTTP", 404: "unknown path", 405: "wrong method",
              411: "no Content-Length", 429: "rate-limiting page", 408: "injected",
              502: "injected", 504: "injected"}


def item(customer: str) -> dict[str, object]:
    return {"customerId": customer, "events": {"place_order": {"amount": 5}}}


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer() as server:
        yield server


def pool(sandbox: SandboxServer) -> urllib3.HTTPConnectionPool:
    return urllib3.HTTPConnectionPool("127.0.0.1", sandbox.port, retries=False, timeout=10)


def check(answer: urllib3.BaseHTTPResponse) -> tuple[int, int | None]:
    """Assert the answer is a documented one; return (status, code)."""
    if answer.status == 200:
        return 200, None
    body = orjson.loads(answer.data)
    code = body.get("code")
    if code is None:
        assert answer.status in HTTP_LEVEL, (answer.status, body)
        assert set(body) == {"status", "message", "requestId"}, body
        return answer.status, None
    assert code in BY_CODE, f"code {code} is not in Gameball's table"
    assert BY_CODE[code].status == answer.status, (code, answer.status, BY_CODE[code])
    return answer.status, code


def test_every_error_answer_is_in_the_reference_table(sandbox: SandboxServer) -> None:
    http = pool(sandbox)
    seen: set[tuple[int, int | None]] = set()

    def send(method: str, path: str, body: object = None, headers: dict[str, str] = BOTH,
             raw: bytes | None = None) -> None:
        data = raw if raw is not None else (None if body is None else orjson.dumps(body))
        seen.add(check(http.request(method, path, body=data, headers=headers)))

    job = orjson.loads(http.request("POST", BATCH, body=orjson.dumps({"body": [item("j")]}),
                                    headers=BOTH).data)["jobId"]
    # authentication
    send("POST", BATCH, {"body": [item("a")]}, {"Content-Type": "application/json"})
    send("POST", BATCH, {"body": [item("a")]}, {**BOTH, "apikey": "wrong"})
    send("POST", BATCH, {"body": [item("a")]}, API_ONLY)
    send("POST", BATCH, {"body": [item("a")]}, {**BOTH, "secretkey": "wrong"})
    send("GET", f"/api/v4.0/integrations/batches/{job}/status", headers=API_ONLY)
    # payloads
    for raw in (b'{"body": [', orjson.dumps([item("a")]), orjson.dumps({"body": []}),
                orjson.dumps({"body": [item(f"c{i}") for i in range(1001)]}),
                orjson.dumps({"body": [{"customerId": "", "events": {"a": {}}}]}),
                orjson.dumps({"body": [{"customerId": "c"}]}),
                orjson.dumps({"body": [item("a")], "x": 1})):
        send("POST", BATCH, raw=raw)
    send("POST", BATCH, raw=orjson.dumps({"body": [item("a")]}),
         headers={**BOTH, "Content-Type": "text/plain"})
    send("POST", EVENTS, {"customerId": "c", "events": {}})
    # routing and jobs
    send("GET", "/api/v4.0/nope")
    send("GET", BATCH)
    send("GET", "/api/v4.0/integrations/batches/999/status")
    send("POST", "/api/v4.0/integrations/batches/999/stop")
    send("GET", "/api/v4/integrations/batch/x")
    # faults: rejected customers with the default and another data code, injected errors
    sandbox.set_faults(Faults(reject_customers=["r"]))
    send("POST", BATCH, {"body": [item("r")]})
    sandbox.set_faults(Faults(reject_customers=["r"], reject_code=7000))
    send("POST", BATCH, {"body": [item("r")]})
    for status in (400, 401, 403, 404, 408, 412, 415, 422, 423, 429, 500, 502, 503, 504):
        sandbox.set_faults(Faults(error_rate=1.0, error_status=status))
        send("POST", BATCH, {"body": [item("e")]})
    sandbox.set_faults(Faults(rate_per_second=1, status_rate_per_second=1))
    for _ in range(3):
        send("POST", BATCH, {"body": [item("l")]})
        send("GET", f"/api/v4.0/integrations/batches/{job}/status")
    # malformed HTTP, over a raw socket
    with socket.create_connection(("127.0.0.1", sandbox.port), timeout=5) as raw_socket:
        raw_socket.sendall(b"NONSENSE\r\n\r\n")
        head, _, payload = raw_socket.makefile("rb").read().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and "code" not in orjson.loads(payload)
    with socket.create_connection(("127.0.0.1", sandbox.port), timeout=5) as raw_socket:
        raw_socket.sendall(f"POST {BATCH} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head, _, payload = raw_socket.makefile("rb").read().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 411") and "code" not in orjson.loads(payload)

    codes = {code for _, code in seen if code is not None}
    # The answers the connector's classification depends on were all met.
    assert {1000, 1001, 1002, 2000, 3000, 3003, 3011, 3013, 3016, 4004, 5000, 5003,
            7000} <= codes, sorted(codes)
    assert {(429, None), (404, None), (405, None)} <= seen


def test_invented_pairs_cannot_be_answered() -> None:
    from connector.sandbox.errors import ApiError, api_error

    with pytest.raises(ValueError, match="not in Gameball's error-code table"):
        ApiError(401, 1002, "a 1002 is 403 Forbidden in the reference")
    with pytest.raises(ValueError):
        ApiError(400, 3001, "3001 is Null Arguments, 422")
    assert api_error(2000, "m").status == 412


def test_high_security_mode_needs_both_keys_everywhere() -> None:
    with SandboxServer(high_security=True) as sandbox:
        http = pool(sandbox)
        one = orjson.dumps(item("c"))
        refused = http.request("POST", EVENTS, body=one, headers=API_ONLY)
        error = orjson.loads(refused.data)
        assert (refused.status, error["code"]) == (401, 1001)
        assert "High Security Mode" in error["message"]
        assert http.request("POST", EVENTS, body=one, headers=BOTH).status == 200
        assert [i["customerId"] for i in sandbox.items()] == ["c"]
    with SandboxServer() as normal:  # without the mode, Send Events needs the apikey only
        http = pool(normal)
        assert http.request("POST", EVENTS, body=one, headers=API_ONLY).status == 200


def test_status_reads_have_their_own_bucket(sandbox: SandboxServer) -> None:
    """The Others bucket: status reads meet 429 at their limit while sends go on."""
    http = pool(sandbox)
    sandbox.set_faults(Faults(status_rate_per_second=3, status_rate_per_30_seconds=5))
    job = orjson.loads(http.request("POST", BATCH, body=orjson.dumps({"body": [item("a")]}),
                                    headers=BOTH).data)["jobId"]
    path = f"/api/v4.0/integrations/batches/{job}/status"
    statuses = [http.request("GET", path, headers=BOTH).status for _ in range(8)]
    assert statuses.count(200) <= 5 and 429 in statuses
    limited = http.request("GET", path, headers=BOTH)
    assert limited.status == 429 and int(limited.headers["Retry-After"]) >= 1
    assert http.request("POST", BATCH, body=orjson.dumps({"body": [item("b")]}),
                        headers=BOTH).status == 200  # sends are another bucket
    stats = sandbox.stats()
    assert stats["status_rate_limited"] == statuses.count(429) + 1
    assert stats["rate_limited"] == 0
    admitted = [a["t"] for a in stats["arrivals"]
                if a["status"] == 200 and "status" in a["path"]]
    assert max_in_window(admitted, 1.0) <= 3
