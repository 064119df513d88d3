"""Points of a series in memory: packing them into a chunk row, and downsampling them.

A series' points are `times` (epoch seconds, ascending) and columns of integers or None, one
value per time. A chunk stores each column as deltas from the previous value (None kept as
None): counters and slow gauges become runs of small numbers that zlib packs into a few bytes.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable

Columns = dict[str, list[int | None]]

# Gauges whose worst value within a bucket matters as much as its last: a lag spike that
# cleared before the minute ended must still show on a 7-day chart.
WORST = ("lag", "time_lag_ms", "oldest_ms")


def _deltas(values: Iterable[int | None]) -> list[int | None]:
    out: list[int | None] = []
    previous = 0
    for value in values:
        out.append(None if value is None else value - previous)
        previous = previous if value is None else value
    return out


def _sums(deltas: Iterable[int | None]) -> list[int | None]:
    out: list[int | None] = []
    total = 0
    for delta in deltas:
        total = total if delta is None else total + delta
        out.append(None if delta is None else total)
    return out


def pack(times: list[int], columns: Columns) -> bytes:
    payload = {"t": _deltas(times), **{name: _deltas(v) for name, v in columns.items()}}
    return zlib.compress(json.dumps(payload, separators=(",", ":")).encode("ascii"), 9)


def unpack(data: bytes | memoryview) -> tuple[list[int], Columns]:
    payload = json.loads(zlib.decompress(bytes(data)))  # PostgreSQL hands back a memoryview
    times = [t for t in _sums(payload.pop("t")) if t is not None]
    return times, {name: _sums(deltas) for name, deltas in payload.items()}


def merge(*sets: tuple[list[int], Columns]) -> tuple[list[int], Columns]:
    """All sets of points in time order; a later set's value wins where two have a time."""
    rows: dict[int, dict[str, int | None]] = {}
    for times, columns in sets:
        for i, t in enumerate(times):
            rows.setdefault(t, {}).update({name: values[i] for name, values in columns.items()})
    return from_rows(rows)


def from_rows(rows: dict[int, dict[str, int | None]]) -> tuple[list[int], Columns]:
    times = sorted(rows)
    names = sorted({name for row in rows.values() for name in row})
    return times, {name: [rows[t].get(name) for t in times] for name in names}


def downsample(times: list[int], columns: Columns, step: int) -> tuple[list[int], Columns]:
    """One point per `step` seconds (at the bucket's start): each column's last value, and
    for the WORST gauges also their maximum as `NAME_max` (of `NAME_max` when the points were
    downsampled already). Counters keep their last value: a rate from two of them is exact."""
    buckets: dict[int, list[int]] = {}
    for i, t in enumerate(times):
        buckets.setdefault(t - t % step, []).append(i)
    out: Columns = {}
    for name, values in columns.items():
        if name.endswith("_max"):
            continue
        out[name] = [_last(values[i] for i in idx) for idx in buckets.values()]
        if name in WORST:
            source = columns.get(f"{name}_max", values)
            out[f"{name}_max"] = [_max(source[i] for i in idx) for idx in buckets.values()]
    return list(buckets), out


def _last(values: Iterable[int | None]) -> int | None:
    found = None
    for value in values:
        found = value if value is not None else found
    return found


def _max(values: Iterable[int | None]) -> int | None:
    present = [value for value in values if value is not None]
    return max(present) if present else None
