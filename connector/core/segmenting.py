"""Where one consumed run is cut into segments (pure functions; `DeliveryCore.ingest`).

A segment holds at most `size` events, in offset order; a record's events are never
split (a record with more events than `size` is a segment of its own); a bad record
counts as one event and starts a segment. Segment `end`s meet the next segment's
`first`, and the last one ends at last read + 1, so a commit at a segment boundary
passes only finished records.
"""

from __future__ import annotations

from collections.abc import Sequence

from connector.core.rows import Row

# (first offset, end offset, rows, offsets of bad records)
Span = tuple[int, int, Sequence[Row], list[int]]


def last_read(rows: Sequence[Row], skipped: Sequence[int], failed: Sequence[int]) -> int:
    """The run's highest offset, or -1 for an empty run."""
    last = rows[-1][0] if rows else -1
    if failed:
        last = max(last, max(failed))
    if skipped:
        last = max(last, max(skipped))
    return last


def spans(rows: Sequence[Row], failed: Sequence[int], last: int, size: int) -> list[Span]:
    """The segments of one run (rows in read order, `failed` offsets in any order)."""
    if failed:
        return _mixed(rows, sorted(failed), last, size)
    out: list[Span] = []
    start, n = 0, len(rows)
    while start < n:
        stop = min(start + size, n)
        while stop < n and rows[stop][0] == rows[stop - 1][0]:
            stop += 1  # a record's events stay in one segment
        end = rows[stop][0] if stop < n else last + 1
        out.append((rows[start][0], end, rows[start:stop], []))
        start = stop
    return out


def _mixed(rows: Sequence[Row], failed: list[int], last: int, size: int) -> list[Span]:
    """Rows and bad records merged in offset order (rare: a run with bad records)."""
    out: list[Span] = []
    seg_rows: list[Row] = []
    seg_failed: list[int] = []
    first = -1
    i = fi = 0
    n = len(rows)
    while i < n or fi < len(failed):
        unit: Sequence[Row]
        if fi < len(failed) and (i >= n or failed[fi] < rows[i][0]):
            offset, unit, bad = failed[fi], (), [failed[fi]]
            fi += 1
        else:
            offset, j = rows[i][0], i + 1
            while j < n and rows[j][0] == offset:
                j += 1
            unit, bad, i = rows[i:j], [], j
        held = len(seg_rows) + len(seg_failed)
        # A bad record starts a segment: held at it (on_error: stop), its partition
        # still commits every record before it.
        if held and (bad or held + len(unit) + len(bad) > size):
            out.append((first, offset, seg_rows, seg_failed))
            seg_rows, seg_failed = [], []
        if not seg_rows and not seg_failed:
            first = offset
        seg_rows.extend(unit)
        seg_failed.extend(bad)
    out.append((first, last + 1, seg_rows, seg_failed))
    return out
