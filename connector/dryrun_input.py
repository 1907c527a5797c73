"""`map --input-format raw|base64`: record values as bytes (Schema Registry wire format).

Called by `connector.dryrun`. `raw` reads a kcat dump made with
`kcat -C -t TOPIC -e -f '%S:%s'` (each value as `<length>:<bytes>`, -1 for a tombstone;
newlines between records are ignored), so binary values need no escaping. `base64`
reads one base64-encoded value per line (hand-made samples, `kcat ... | base64 -w0`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator

from connector.records import SourceRecord

INPUT_FORMATS = ("lines", "raw", "base64")


class DumpError(ValueError):
    """The dump is not `<length>:<bytes>` records (or a line is not base64)."""


def raw_values(data: bytes) -> Iterator[bytes | None]:
    """Values of a `%S:%s` dump, in order; DumpError at the first malformed one."""
    i, n = 0, len(data)
    while i < n:
        while i < n and data[i : i + 1] in (b"\n", b"\r"):
            i += 1
        if i >= n:
            return
        colon = data.find(b":", i, i + 21)
        try:
            size = int(data[i:colon]) if colon > i else None
        except ValueError:
            size = None
        if size is None:
            raise DumpError(f"byte {i}: expected <length>:<value> (kcat -f '%S:%s')")
        start = colon + 1
        if size < 0:
            yield None
            i = start
            continue
        if start + size > n:
            raise DumpError(f"byte {i}: the value is cut short ({n - start} of {size} bytes)")
        yield data[start : start + size]
        i = start + size


def base64_values(lines: Iterator[bytes]) -> Iterator[bytes]:
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        try:
            yield base64.b64decode(text, validate=True)
        except binascii.Error:
            raise DumpError(f"line {number}: not base64") from None


def records(fmt: str, data: bytes, topic: str) -> Iterator[SourceRecord]:
    """SourceRecords (partition 0, offsets from 0) of a `raw` or `base64` input."""
    values = raw_values(data) if fmt == "raw" else base64_values(iter(data.splitlines()))
    for offset, value in enumerate(values):
        yield SourceRecord(topic, value, offset_=offset)
