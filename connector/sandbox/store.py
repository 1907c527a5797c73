"""The sandbox's accepted requests, and the optional JSON-lines store that keeps them.

`Accepted` holds one request's items lazily; `JsonlStore` is the file: existing lines
are loaded at start (so a restarted sandbox still shows them), every accepted request
is appended and flushed before its answer, and spans are read back with pread. The
caller (state.py) holds its lock around every call.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import IO, Any

import orjson


class Accepted:
    """One accepted request's items, held one of three ways: the raw body (memory mode,
    expanded on first inspection), JSON lines (loaded from an old store), or a span of
    the JSONL store (store mode: the file is the memory, read back with pread)."""

    __slots__ = ("count", "endpoint", "job_id", "lines", "raw", "received", "request_id",
                 "span")

    def __init__(self, endpoint: str, job_id: int | None, request_id: str, received: str,
                 count: int, raw: bytes | None = None, lines: list[bytes] | None = None,
                 span: tuple[int, int] | None = None):
        self.endpoint = endpoint
        self.job_id = job_id
        self.request_id = request_id
        self.received = received
        self.count = count
        self.raw = raw
        self.lines = lines
        self.span = span  # (offset, length) in the store, trailing newline excluded

    def item_lines(self, read: Callable[[int, int], bytes] | None = None) -> list[bytes]:
        """One JSON document per item (what `/_sandbox/items` and the store show);
        `read(offset, length)` reads the store for a span."""
        if self.span is not None:
            assert read is not None
            return read(*self.span).split(b"\n")
        if self.lines is None:
            assert self.raw is not None
            obj = orjson.loads(self.raw)
            items = obj["body"] if self.endpoint == "batch" else [obj]
            self.lines = record_lines(items, self.endpoint, self.job_id, self.request_id,
                                      self.received)
            self.raw = None  # the lines replace the body; keep one copy only
        return self.lines


def record_lines(items: Sequence[dict[str, Any]], endpoint: str, job_id: int | None,
                 request_id: str, received: str) -> list[bytes]:
    """The stored record of each accepted item, as JSON bytes (no newline)."""
    return [
        orjson.dumps({"customerId": item["customerId"], "events": item["events"],
                      "jobId": job_id, "endpoint": endpoint, "receivedAt": received,
                      "requestId": request_id, "index": index})
        for index, item in enumerate(items)
    ]


class JsonlStore:
    """One JSON-lines file: `load()` once, then `append`, `read`, `truncate`, `close`."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._file: IO[bytes] | None = None
        self._reader: int | None = None  # read-only fd for pread (no shared seek)
        self._size = 0
        self.skipped_lines = 0  # lines cut short by a kill mid-write: never answered 200
        self.max_job_id = 0

    def load(self) -> list[bytes]:
        """Open the file (creating it) and return its complete lines."""
        ends_cleanly = True
        lines: list[bytes] = []
        if os.path.exists(self._path):
            with open(self._path, "rb") as existing:
                data = existing.read()
            ends_cleanly = not data or data.endswith(b"\n")
            for line in data.splitlines():
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    self.skipped_lines += 1
                    continue
                lines.append(line)
                job_id = record.get("jobId")
                if isinstance(job_id, int):
                    self.max_job_id = max(self.max_job_id, job_id)
        self._file = open(self._path, "ab")  # noqa: SIM115 - lives as long as the sandbox
        if not ends_cleanly:
            self._file.write(b"\n")
            self._file.flush()
        self._size = self._file.tell()
        self._reader = os.open(self._path, os.O_RDONLY)
        return lines

    def append(self, chunk: bytes) -> tuple[int, int]:
        """Write one request's lines and flush; returns their span (offset, length)."""
        if self._file is None:
            raise RuntimeError("the store is closed")
        self._file.write(chunk + b"\n")
        self._file.flush()
        span = (self._size, len(chunk))
        self._size += len(chunk) + 1
        return span

    def read(self, offset: int, length: int) -> bytes:
        reader = self._reader
        if reader is None:  # closed: the sandbox has stopped
            return b""
        return os.pread(reader, length, offset)

    def truncate(self) -> None:
        if self._file is not None:
            self._file.seek(0)
            self._file.truncate()
        self._size = 0
        self.skipped_lines = 0

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._reader is not None:
            os.close(self._reader)
            self._reader = None
