"""The HTTP side of /metrics, /healthz and /readyz: one asyncio loop on a daemon thread.

Built for a network that misbehaves (docs/metrics.md, "The metrics server"):
- an idle connection costs a file descriptor and a small coroutine, not a thread;
- each connection must send a complete request head within `timeout`, and is closed
  when idle that long between requests;
- past `max_connections`, the longest-idle connection (idle for at least `EVICT_AFTER_S`)
  is closed to make room, so a probe always gets in; past `HARD_FACTOR` times that, the
  longest-idle one whatever its age, so the connector keeps file descriptors for Kafka
  and Gameball;
- clients that go away end their coroutine quietly: no traceback, no stderr.
Used by `telemetry.TelemetryServer`; `route(path)` answers (status, body, content type).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from connector.logs import RateLimitedLog

log = logging.getLogger(__name__)

Route = Callable[[str], tuple[int, bytes, str]]

MAX_HEAD = 16 * 1024  # bytes of request line and headers; a longer head closes the connection
EVICT_AFTER_S = 1.0  # a connection this idle may be closed to make room for a new one
HARD_FACTOR = 4  # past max_connections x this, the longest-idle connection goes at once
BACKLOG = 1024  # the kernel queues this many connections not yet accepted


class HttpServer:
    """Binds in the constructor (so the caller sees a bad address at once and learns the
    port), serves from `start()` until `stop()`."""

    def __init__(
        self, host: str, port: int, route: Route, timeout: float, max_connections: int
    ) -> None:
        self._route = route
        self._timeout = timeout
        self._max = max_connections
        self._sock = socket.create_server((host, port), backlog=BACKLOG)
        self._sock.setblocking(False)
        self.port = int(self._sock.getsockname()[1])
        self._loop = asyncio.new_event_loop()
        self._idle: dict[asyncio.StreamWriter, float] = {}  # insertion order: oldest first
        self.connections = 0  # open now (read by tests through the public attribute)
        self._errors = RateLimitedLog(log, 60.0)
        self._thread = threading.Thread(target=self._run, name="telemetry", daemon=True)

    def start(self) -> HttpServer:
        self._thread.start()
        return self

    def stop(self, timeout: float = 1.0) -> None:
        """Stop serving (the CLI, at exit); does not wait longer than `timeout`."""
        with contextlib.suppress(RuntimeError):  # the loop is closed already
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)

    def _run(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        loop.set_exception_handler(self._loop_error)
        server = loop.run_until_complete(
            asyncio.start_server(self._serve, sock=self._sock, limit=MAX_HEAD, backlog=BACKLOG)
        )
        try:
            loop.run_forever()
        finally:
            server.close()
            for task in asyncio.all_tasks(loop):
                task.cancel()
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    def _loop_error(self, _loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """asyncio's own errors (an accept out of file descriptors, ...): one line, no
        traceback, at most once a minute per kind."""
        exc = context.get("exception")
        kind = type(exc).__name__ if exc is not None else "error"
        self._errors.warn(kind, "metrics server: " + str(context.get("message", kind)),
                          error=str(exc) if exc is not None else None)

    def _make_room(self, writer: asyncio.StreamWriter) -> bool:
        """Over the limit: close the longest-idle connection so that this one is served.
        Up to `HARD_FACTOR` x the limit only one idle for `EVICT_AFTER_S` (a client that
        has just connected has probably sent its request already); past it, any. False
        (refuse this one) only when every connection is busy answering."""
        if self.connections <= self._max:
            return True
        hard = self.connections > self._max * HARD_FACTOR
        now = self._loop.time()
        for other, since in self._idle.items():
            if other is writer:
                continue
            if hard or now - since >= EVICT_AFTER_S:
                del self._idle[other]
                other.transport.abort()
                return True
            break  # the oldest is too young: so is every other
        return not hard

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            if not self._make_room(writer):
                return
            while True:
                self._idle[writer] = self._loop.time()
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self._timeout)
                finally:
                    self._idle.pop(writer, None)
                keep_alive = self._answer(head, writer)
                await asyncio.wait_for(writer.drain(), self._timeout)
                if not keep_alive:
                    return
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            return  # slow, silent, gone or oversized: the connection ends, nothing else
        finally:
            self.connections -= 1
            writer.transport.abort()

    def _answer(self, head: bytes, writer: asyncio.StreamWriter) -> bool:
        """Write the answer to one request head; True to keep the connection."""
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._write(writer, 400, b"bad request\n", "text/plain", False, False)
            return False
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip().lower()
        if method not in ("GET", "HEAD") or headers.get("content-length", "0") != "0" \
                or "transfer-encoding" in headers:
            # Nothing here takes a body; not reading one means the connection must end.
            self._write(writer, 405, b"method not allowed\n", "text/plain", False, False)
            return False
        connection = headers.get("connection", "")
        keep = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        status, body, ctype = self._route(target.split("?", 1)[0])
        self._write(writer, status, body, ctype, keep, method == "HEAD")
        return keep

    @staticmethod
    def _write(
        writer: asyncio.StreamWriter, status: int, body: bytes, ctype: str, keep: bool,
        head_only: bool,
    ) -> None:
        reason = HTTPStatus(status).phrase
        writer.write(
            (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
             f"Content-Length: {len(body)}\r\n"
             f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n").encode("latin-1")
            + (b"" if head_only else body)
        )


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (called once by the CLI): idle
    clients of the metrics port must not take the sockets Kafka and Gameball need.
    Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and (hard == resource.RLIM_INFINITY or soft < hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return int(soft)
