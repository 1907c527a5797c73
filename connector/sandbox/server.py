"""The sandbox's HTTP side: a strict, local, Gameball-compatible API. NOT Gameball.

Stdlib `ThreadingHTTPServer` speaking HTTP/1.1 keep-alive (one thread per
connection, as urllib3 pools expect), orjson for bodies. Request handling order for
the send endpoints is documented in docs/sandbox.md ("What happens to a request").
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import re
import socket
import socketserver
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from operator import itemgetter
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import orjson

from connector.sandbox import errors
from connector.sandbox.errors import ApiError
from connector.sandbox.faults import Faults
from connector.sandbox.jobs import Job, newest_status, older_status
from connector.sandbox.limiter import retry_after_header
from connector.sandbox.state import SandboxState
from connector.sandbox.validation import validate_batch_body, validate_events_body

_log = logging.getLogger(__name__)
_CUSTOMER_ID = itemgetter("customerId")

NOTICE = "Gameball sandbox: a local test double for the Gameball API. This is NOT Gameball."
MAX_BODY_BYTES = 32 * 1024 * 1024  # far above any valid batch; protects the test host

BATCH_PATH = "/api/v4.0/integrations/batch/events"
EVENTS_PATH = "/api/v4.0/integrations/events"
STATUS_NEWEST = "/api/v4.0/integrations/batches/{id}/status"
STATUS_OLDER = "/api/v4/integrations/batch/{id}"

DEFAULT_API_KEY = "sandbox-api-key"
DEFAULT_SECRET_KEY = "sandbox-secret-key"


@dataclass(frozen=True)
class _Route:
    pattern: re.Pattern[str]
    template: str
    methods: dict[str, str]  # HTTP method -> handler method name
    api: bool  # Gameball API (auth, faults, stats) or the sandbox's own inspection API


def _route(template: str, methods: dict[str, str], api: bool) -> _Route:
    regex = re.escape(template).replace(re.escape("{id}"), "(?P<id>[^/]+)")
    return _Route(re.compile(regex), template, methods, api)


_ROUTES = (
    _route(BATCH_PATH, {"POST": "_post_batch"}, True),
    _route(EVENTS_PATH, {"POST": "_post_events"}, True),
    _route(STATUS_NEWEST, {"GET": "_get_status_newest"}, True),
    _route(STATUS_OLDER, {"GET": "_get_status_older", "DELETE": "_delete_job"}, True),
    _route("/_sandbox/items", {"GET": "_sandbox_items"}, False),
    _route("/_sandbox/stats", {"GET": "_sandbox_stats"}, False),
    _route("/_sandbox/faults", {"GET": "_sandbox_get_faults", "PUT": "_sandbox_put_faults",
                                "POST": "_sandbox_put_faults"}, False),
    _route("/_sandbox/reset", {"POST": "_sandbox_reset"}, False),
    _route("/", {"GET": "_banner"}, False),
)


@dataclass(frozen=True, slots=True)
class _Reply:
    """What a Gameball API handler answers; written only after the bookkeeping is done."""

    status: int
    payload: bytes
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False
    items: int = 0  # items accepted (stats)
    answered: bool = True  # False: close the connection without a status line (drop)


class _Answer(Exception):
    """Raised inside a handler to answer with an error right away."""

    def __init__(self, error: ApiError, close: bool = False) -> None:
        super().__init__(error.message)
        self.error = error
        self.close = close


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # idle keep-alive threads must not block stop()
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], state: SandboxState, api_key: str,
                 secret_key: str) -> None:
        self.state = state
        self.api_key = api_key.encode()
        self.secret_key = secret_key.encode()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn), which can hang
        # on hosts without DNS; the sandbox only needs the bound address.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        """Shut every open connection so no kept-alive socket outlives stop()."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client going away mid-answer is normal for a test peer; anything else is a bug.
        _log.debug("sandbox connection from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "gameball-sandbox"
    disable_nagle_algorithm = True
    wbufsize = 1 << 16  # headers and body leave in one send

    request_id = ""
    _latency_done = False
    _arrival = 0.0

    @property
    def srv(self) -> _HTTPServer:
        return cast(_HTTPServer, self.server)

    def setup(self) -> None:
        super().setup()
        self.srv.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.srv.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s " + format, self.address_string(), *args)

    # ---- plumbing ------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """Malformed HTTP (bad request line, huge headers, unknown method): error object."""
        self.request_id = self.request_id or uuid.uuid4().hex
        if getattr(self, "request_version", "") == "HTTP/0.9":  # unparsable: still send a head
            self.request_version = "HTTP/1.0"
        error = ApiError(code, errors.BAD_HTTP_REQUEST if code < 500 or code == 501
                         else errors.SERVER_ERROR, message or "bad HTTP request")
        self._write(code, orjson.dumps(error.body(self.request_id)), close=True)

    def _write(self, status: int, payload: bytes, headers: tuple[tuple[str, str], ...] = (),
               close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-request-id", self.request_id)
        self.send_header("x-sandbox", "local test double, not Gameball")
        for name, value in headers:
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(payload)

    def _json(self, status: int, value: Any) -> None:
        self._write(status, orjson.dumps(value))

    def _error(self, error: ApiError, close: bool = False) -> None:
        self._write(error.status, orjson.dumps(error.body(self.request_id)), error.headers, close)

    def _read_body(self) -> bytes:
        """The request body by Content-Length or chunked coding; b"" for none."""
        length = self.headers.get("Content-Length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                raise _Answer(ApiError(400, errors.BAD_HTTP_REQUEST,
                                       "invalid Content-Length"), close=True) from None
            if size < 0 or size > MAX_BODY_BYTES:
                raise _Answer(ApiError(413, errors.BODY_TOO_LARGE,
                                       f"request body over {MAX_BODY_BYTES} bytes"), close=True)
            body = self.rfile.read(size)
            if len(body) != size:
                raise _Answer(ApiError(400, errors.BAD_HTTP_REQUEST, "request body cut short"),
                              close=True)
            return body
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        if self.command in ("POST", "PUT", "PATCH"):
            raise _Answer(ApiError(411, errors.LENGTH_REQUIRED,
                                   "Content-Length (or chunked coding) required"), close=True)
        return b""

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise _Answer(ApiError(400, errors.BAD_HTTP_REQUEST, "bad chunk size"),
                              close=True) from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            total += size
            if total > MAX_BODY_BYTES:
                raise _Answer(ApiError(413, errors.BODY_TOO_LARGE,
                                       f"request body over {MAX_BODY_BYTES} bytes"), close=True)
            parts.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _dispatch(self, method: str) -> None:
        self.request_id = uuid.uuid4().hex
        self._latency_done = False
        split = urlsplit(self.path)
        self._query = parse_qs(split.query)
        try:
            body = self._read_body()
        except _Answer as answer:
            self._error(answer.error, close=answer.close)
            return
        try:
            self._route(method, split.path, body)
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the client went away mid-answer; not a bug
        except Exception:
            # A sandbox bug must be loud: log it and answer 500 with an error object.
            _log.exception("sandbox failed on %s %s", method, split.path)
            self._error(ApiError(500, errors.SERVER_ERROR, "sandbox internal error"), close=True)

    def _route(self, method: str, path: str, body: bytes) -> None:
        for route in _ROUTES:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            name = route.methods.get(method)
            if name is None:
                allowed = ", ".join(route.methods)
                self._error(ApiError(405, errors.METHOD_NOT_ALLOWED,
                                     f"{method} is not allowed on {route.template}",
                                     (("Allow", allowed),)))
                return
            handler: Callable[[bytes, str], Any] = getattr(self, name)
            if route.api:
                self._api(route, method, handler, body, match.groupdict().get("id", ""))
            else:
                try:
                    handler(body, "")
                except _Answer as answer:
                    self._error(answer.error, close=answer.close)
            return
        self._error(ApiError(404, errors.NOT_FOUND, f"no such endpoint: {method} {path}"))

    def _api(self, route: _Route, method: str, handler: Callable[[bytes, str], _Reply],
             body: bytes, job_id: str) -> None:
        """Gameball API request: stall, handler, latency, bookkeeping, then the answer.

        Counting and leaving happen before the answer is written, so a client that
        reads the stats right after its answer sees its request, and a client's next
        request never overlaps the one just answered in `max_concurrent`.
        """
        state = self.srv.state
        sends = route.template in (BATCH_PATH, EVENTS_PATH)
        if sends:
            state.enter(len(body))
        try:
            state.hold_while_stalled()
            self._arrival = time.time()  # send requests: replaced by the limiter's instant
            try:
                reply = handler(body, job_id)
            except _Answer as answer:
                reply = _Reply(answer.error.status,
                               orjson.dumps(answer.error.body(self.request_id)),
                               answer.error.headers, answer.close)
            self._latency()
        finally:
            if sends:
                state.leave()
        state.record(method, route.template, reply.status, self._arrival, reply.items,
                     reply.answered, self.request_id)
        if reply.answered:
            self._write(reply.status, reply.payload, reply.headers, reply.close)
        else:
            self.close_connection = True  # stored, but the caller never learns it

    def _latency(self) -> None:
        if not self._latency_done:
            self._latency_done = True
            self.srv.state.sleep(self.srv.state.faults.latency_ms / 1000.0)

    def _ok(self, value: Any) -> _Reply:
        return _Reply(200, orjson.dumps(value))

    # ---- Gameball API ----------------------------------------------------------------

    def _check_auth(self, secret: bool) -> None:
        api_key = self.headers.get("apikey")
        if not api_key:
            raise _Answer(ApiError(401, errors.MISSING_API_KEY, "missing apikey header"))
        if not hmac.compare_digest(api_key.encode(), self.srv.api_key):
            raise _Answer(ApiError(401, errors.INVALID_API_KEY, "invalid API key"))
        if not secret:
            return
        secret_key = self.headers.get("secretkey")
        if not secret_key:
            raise _Answer(ApiError(401, errors.MISSING_SECRET_KEY, "missing secretkey header"))
        if not hmac.compare_digest(secret_key.encode(), self.srv.secret_key):
            raise _Answer(ApiError(401, errors.INVALID_SECRET_KEY, "invalid secret key"))

    def _parse_json(self, body: bytes) -> Any:
        content_type = self.headers.get("Content-Type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            raise _Answer(ApiError(400, errors.UNSUPPORTED_CONTENT_TYPE,
                                   "Content-Type must be application/json"))
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise _Answer(ApiError(400, errors.INVALID_JSON,
                                   f"request body is not valid JSON: {exc}")) from None

    def _post_batch(self, body: bytes, _: str) -> _Reply:
        self._check_auth(secret=True)
        obj = self._admit_and_parse(body)
        problem = validate_batch_body(obj)
        if problem is not None:
            raise _Answer(problem)
        return self._send(obj["body"], "batch", body)

    def _post_events(self, body: bytes, _: str) -> _Reply:
        self._check_auth(secret=False)
        if self.headers.get("secretkey") is not None:
            # Not an error at Gameball, but the secret travels where it is not needed.
            self.srv.state.count("secretkey_on_events")
        obj = self._admit_and_parse(body)
        problem = validate_events_body(obj)
        if problem is not None:
            raise _Answer(problem)
        return self._send([obj], "events", body)

    def _admit_and_parse(self, body: bytes) -> Any:
        state = self.srv.state
        wait, self._arrival = state.admit()
        if wait is not None:
            faults = state.faults
            seconds = faults.retry_after_seconds or retry_after_header(wait)
            raise _Answer(ApiError(429, errors.TOO_MANY_REQUESTS,
                                   f"Too Many Requests: rate limit exceeded, retry after "
                                   f"{seconds} s", (("Retry-After", str(seconds)),)))
        return self._parse_json(body)

    def _send(self, items: list[dict[str, Any]], endpoint: str,
              raw: bytes) -> _Reply:
        """Faults, store and answer for an already valid send request."""
        state = self.srv.state
        faults = state.faults
        customers = list(map(_CUSTOMER_ID, items))
        rejecting = set(faults.reject_customers)
        if rejecting and not rejecting.isdisjoint(customers):
            rejected = next(c for c in customers if c in rejecting)
            state.count("rejected")
            raise _Answer(ApiError(
                400, errors.CUSTOMER_REJECTED,
                f"customer {rejected} is invalid (sandbox fault reject_customers); "
                "nothing in this request was stored"))
        conflict = state.claim(customers, faults.check_concurrent_customers)
        if conflict is not None:
            raise _Answer(ApiError(
                422, errors.CONCURRENT_REQUEST,
                f"Concurrent Request In Progress: customer {conflict} is in another request "
                "being processed"))
        try:
            self._latency()  # customers stay claimed meanwhile, so overlaps are visible
            if state.roll(faults.error_rate):
                state.count("injected_errors")
                raise _Answer(errors.injected_error(faults.error_status))
            job_id = state.accept(items, endpoint, self.request_id, faults, raw)
            dropped = state.roll(faults.drop_rate)
        finally:
            state.release(customers)
        if endpoint == "batch":
            payload = orjson.dumps({"jobId": job_id})
        else:
            payload = orjson.dumps({"success": True, "message": "Events processed"})
        return _Reply(200, payload, items=len(items), answered=not dropped)

    def _find_job(self, raw_id: str, lookup: Callable[[int], Job | None]) -> Job:
        """The job `raw_id` names, found with `lookup`; 404 (2044) for anything else."""
        # isascii: "²".isdigit() is true, but int() refuses it.
        job = lookup(int(raw_id)) if raw_id.isascii() and raw_id.isdigit() else None
        if job is None:
            raise _Answer(ApiError(404, errors.JOB_NOT_FOUND, f"no batch job {raw_id}"))
        return job

    def _get_status_newest(self, _: bytes, raw_id: str) -> _Reply:
        self._check_auth(secret=False)
        job = self._find_job(raw_id, self.srv.state.job)
        return self._ok(newest_status(job, self.srv.state.now()))

    def _get_status_older(self, _: bytes, raw_id: str) -> _Reply:
        self._check_auth(secret=True)
        job = self._find_job(raw_id, self.srv.state.job)
        return self._ok(older_status(job, self.srv.state.now()))

    def _delete_job(self, _: bytes, raw_id: str) -> _Reply:
        self._check_auth(secret=True)
        job = self._find_job(raw_id, self.srv.state.stop_job)
        return self._ok(older_status(job, self.srv.state.now()))

    # ---- the sandbox's own inspection API --------------------------------------------

    def _query_int(self, name: str, default: int | None) -> int | None:
        values = self._query.get(name)
        if not values:
            return default
        try:
            value = int(values[0])
        except ValueError:
            raise _Answer(ApiError(400, errors.INVALID_BODY,
                                   f"query parameter {name} must be a whole number")) from None
        if value < 0:
            raise _Answer(ApiError(400, errors.INVALID_BODY, f"{name} must not be negative"))
        return value

    def _sandbox_items(self, _: bytes, __: str) -> None:
        offset = self._query_int("offset", 0) or 0
        limit = self._query_int("limit", None)
        self._write(200, self.srv.state.items_json(offset, limit))

    def _sandbox_stats(self, _: bytes, __: str) -> None:
        arrivals = self._query.get("arrivals", ["1"])[0].lower() not in ("0", "false", "no")
        self._json(200, self.srv.state.stats(arrivals=arrivals))

    def _sandbox_get_faults(self, _: bytes, __: str) -> None:
        self._json(200, self.srv.state.faults.to_dict())

    def _sandbox_put_faults(self, body: bytes, _: str) -> None:
        try:
            data = orjson.loads(body or b"{}")
        except orjson.JSONDecodeError as exc:
            problem = ApiError(400, errors.INVALID_JSON, f"faults are not JSON: {exc}")
            raise _Answer(problem) from None
        if not isinstance(data, dict):
            raise _Answer(ApiError(400, errors.INVALID_BODY, "faults must be a JSON object"))
        try:
            faults = Faults.from_mapping(data)
        except (TypeError, ValueError) as exc:
            raise _Answer(ApiError(400, errors.INVALID_BODY, str(exc))) from None
        self.srv.state.set_faults(faults)
        self._json(200, faults.to_dict())

    def _sandbox_reset(self, _: bytes, __: str) -> None:
        self.srv.state.reset()
        self._json(200, {"reset": True})

    def _banner(self, _: bytes, __: str) -> None:
        self._json(200, {
            "service": "gameball-sandbox",
            "notice": NOTICE,
            "endpoints": [f"{'/'.join(r.methods)} {r.template}" for r in _ROUTES if r.api],
            "inspection": ["GET /_sandbox/items", "GET /_sandbox/stats",
                           "GET|PUT /_sandbox/faults", "POST /_sandbox/reset"],
        })


class SandboxServer:
    """A local Gameball-compatible API in background threads. NOT Gameball.

    Used by `gameball-connector sandbox`, the demo and every integration test:
    `with SandboxServer() as sandbox: ... sandbox.url ... sandbox.items()`.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 api_key: str = DEFAULT_API_KEY, secret_key: str = DEFAULT_SECRET_KEY,
                 store_path: str | None = None, faults: Faults | None = None) -> None:
        self._host = host
        self._requested_port = port
        self._api_key = api_key
        self._secret_key = secret_key
        self._store_path = store_path
        self._initial_faults = faults or Faults()
        self._state: SandboxState | None = None
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SandboxServer:
        """Bind and serve in a daemon thread; returns self. OSError if the port is taken."""
        if self._httpd is not None:
            return self
        self._state = SandboxState(self._initial_faults, self._store_path)
        try:
            self._httpd = _HTTPServer((self._host, self._requested_port), self._state,
                                      self._api_key, self._secret_key)
        except OSError:
            self._state.close()
            self._state = None
            raise
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name=f"sandbox-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cut open connections, release held requests, close the store."""
        httpd, state = self._httpd, self._state
        if httpd is None or state is None:
            return
        httpd.shutdown()
        state.close()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the sandbox is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def state(self) -> SandboxState:
        if self._state is None:
            raise RuntimeError("the sandbox is not started")
        return self._state

    # In-process inspection, the same data as the /_sandbox endpoints.
    def items(self) -> list[dict[str, Any]]:
        """Accepted items, oldest first."""
        return self.state.items()

    def stats(self, arrivals: bool = True) -> dict[str, Any]:
        return self.state.stats(arrivals=arrivals)

    def set_faults(self, faults: Faults) -> None:
        self.state.set_faults(faults)

    @property
    def faults(self) -> Faults:
        return self.state.faults

    def reset(self) -> None:
        self.state.reset()

    def wait_for_items(self, count: int, timeout: float) -> bool:
        """Block until `count` items were accepted; False on timeout."""
        return self.state.wait_for_items(count, timeout)
