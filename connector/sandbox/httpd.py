"""The sandbox's HTTP plumbing: keep-alive server, body reading, routing, answers.

Stdlib `ThreadingHTTPServer` speaking HTTP/1.1 keep-alive (one thread per
connection, as urllib3 pools expect), orjson for bodies. `BaseHandler` knows nothing
of Gameball: the endpoints are in api.py (`Handler`, its `routes`). Request handling
order is documented in docs/sandbox.md ("What happens to a request").
"""

from __future__ import annotations

import contextlib
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
from typing import Any, ClassVar, cast
from urllib.parse import parse_qs, urlsplit

import orjson

from connector.sandbox import errors
from connector.sandbox.errors import ApiError
from connector.sandbox.state import SandboxState

_log = logging.getLogger(__name__)

MAX_BODY_BYTES = 32 * 1024 * 1024  # far above any valid batch; protects the test host


@dataclass(frozen=True)
class Route:
    pattern: re.Pattern[str]
    template: str
    methods: dict[str, str]  # HTTP method -> handler method name
    api: bool  # Gameball API (auth, faults, stats) or the sandbox's own inspection API
    sends: bool = False  # a send endpoint (counted in max_concurrent, body size)


def route(template: str, methods: dict[str, str], api: bool, sends: bool = False) -> Route:
    regex = re.escape(template).replace(re.escape("{id}"), "(?P<id>[^/]+)")
    return Route(re.compile(regex), template, methods, api, sends)

@dataclass(frozen=True, slots=True)
class Reply:
    """What a Gameball API handler answers; written only after the bookkeeping is done."""

    status: int
    payload: bytes
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False
    items: int = 0  # items accepted (stats)
    answered: bool = True  # False: close the connection without a status line (drop)


class Answer(Exception):
    """Raised inside a handler to answer with an error right away."""

    def __init__(self, error: ApiError, close: bool = False) -> None:
        super().__init__(error.message)
        self.error = error
        self.close = close



class SandboxHTTPServer(ThreadingHTTPServer):
    """One sandbox's listening socket, its state and the keys it accepts."""

    daemon_threads = True
    block_on_close = False  # idle keep-alive threads must not block stop()
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], handler: type[BaseHandler],
                 state: SandboxState, api_key: str, secret_key: str,
                 high_security: bool = False) -> None:
        self.state = state
        self.high_security = high_security
        self.api_key = api_key.encode()
        self.secret_key = secret_key.encode()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

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


class BaseHandler(BaseHTTPRequestHandler):
    """HTTP plumbing for one connection; subclasses add the endpoints named in `routes`."""

    protocol_version = "HTTP/1.1"
    server_version = "gameball-sandbox"
    disable_nagle_algorithm = True
    wbufsize = 1 << 16  # headers and body leave in one send

    routes: ClassVar[tuple[Route, ...]] = ()
    request_id = ""
    _latency_done = False
    _arrival = 0.0

    @property
    def srv(self) -> SandboxHTTPServer:
        return cast(SandboxHTTPServer, self.server)

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
        error = errors.http_error(code, message or "bad HTTP request")
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
                raise Answer(errors.http_error(400, "invalid Content-Length"),
                             close=True) from None
            if size < 0 or size > MAX_BODY_BYTES:
                raise Answer(errors.api_error(errors.LIMIT_EXCEED,
                                              f"request body over {MAX_BODY_BYTES} bytes"),
                             close=True)
            body = self.rfile.read(size)
            if len(body) != size:
                raise Answer(errors.http_error(400, "request body cut short"), close=True)
            return body
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        if self.command in ("POST", "PUT", "PATCH"):
            raise Answer(errors.http_error(411, "Content-Length (or chunked coding) required"),
                         close=True)
        return b""

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise Answer(errors.http_error(400, "bad chunk size"), close=True) from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            total += size
            if total > MAX_BODY_BYTES:
                raise Answer(errors.api_error(errors.LIMIT_EXCEED,
                                              f"request body over {MAX_BODY_BYTES} bytes"),
                             close=True)
            parts.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _dispatch(self, method: str) -> None:
        self.request_id = uuid.uuid4().hex
        self._latency_done = False
        split = urlsplit(self.path)
        self._query = parse_qs(split.query)
        try:
            body = self._read_body()
        except Answer as answer:
            self._error(answer.error, close=answer.close)
            return
        try:
            self._route(method, split.path, body)
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the client went away mid-answer; not a bug
        except Exception:
            # A sandbox bug must be loud: log it and answer 500 with an error object.
            _log.exception("sandbox failed on %s %s", method, split.path)
            self._error(errors.api_error(errors.SERVER_ERROR, "sandbox internal error"),
                        close=True)

    def _route(self, method: str, path: str, body: bytes) -> None:
        for route in self.routes:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            name = route.methods.get(method)
            if name is None:
                allowed = ", ".join(route.methods)
                self._error(errors.http_error(405, f"{method} is not allowed on {route.template}",
                                              (("Allow", allowed),)))
                return
            handler: Callable[[bytes, str], Any] = getattr(self, name)
            if route.api:
                self._api(route, method, handler, body, match.groupdict().get("id", ""))
            else:
                try:
                    handler(body, "")
                except Answer as answer:
                    self._error(answer.error, close=answer.close)
            return
        self._error(errors.http_error(404, f"no such endpoint: {method} {path}"))

    def _api(self, route: Route, method: str, handler: Callable[[bytes, str], Reply],
             body: bytes, job_id: str) -> None:
        """Gameball API request: stall, handler, latency, bookkeeping, then the answer.

        Counting and leaving happen before the answer is written, so a client that
        reads the stats right after its answer sees its request, and a client's next
        request never overlaps the one just answered in `max_concurrent`.
        """
        state = self.srv.state
        sends = route.sends
        if sends:
            state.enter(len(body))
        try:
            state.hold_while_stalled()
            self._arrival = time.time()  # send requests: replaced by the limiter's instant
            try:
                reply = handler(body, job_id)
            except Answer as answer:
                reply = Reply(answer.error.status,
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

    def _ok(self, value: Any) -> Reply:
        return Reply(200, orjson.dumps(value))

    # ---- Gameball API ----------------------------------------------------------------
