"""Points of a series in memory: packing them into a chunk row, and downsampling them.

A series' points are `times` (epoch seconds, ascending) and columns of integers or None, one
value per time. A chunk stores each column as deltas from the previous value (None kept as
None): counters and slow gauges become runs of small numbers that zlib packs into a few bytes.
"""

from __future__ import annotations

import itertools
import json
import zlib
from collections.abc import Iterable

import orjson

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


def _sums(deltas: list[int | None]) -> list[int | None]:
    if None not in deltas:  # the common case, at C speed
        return list(itertools.accumulate(deltas))
    out: list[int | None] = []
    total = 0
    for delta in deltas:
        total = total if delta is None else total + delta
        out.append(None if delta is None else total)
    return out


def pack(times: list[int], columns: Columns) -> bytes:
    payload = {"t": _deltas(times), **{name: _deltas(v) for name, v in columns.items()}}
    return zlib.compress(json.dumps(payload, separators=(",", ":")).encode("ascii"), 9)


def unpack(data: bytes | memoryview, columns: Iterable[str] | None = None
           ) -> tuple[list[int], Columns]:
    """columns: those to decode (and their NAME_max), the others left out; None: all."""
    payload = orjson.loads(zlib.decompress(data))  # 10x json.loads
    times = [t for t in _sums(payload.pop("t")) if t is not None]
    keep = None if columns is None else set(columns)
    return times, {name: _sums(deltas) for name, deltas in payload.items()
                   if keep is None or name.removesuffix("_max") in keep}


def merge(*sets: tuple[list[int], Columns]) -> tuple[list[int], Columns]:
    """All sets of points in time order; a later set's value wins where two have a time."""
    sets = tuple(s for s in sets if s[0])
    if all(a[0][-1] < b[0][0] for a, b in zip(sets, sets[1:], strict=False)):
        return _concat(sets)  # chunks in order, none overlapping: 10x faster than by rows
    rows: dict[int, dict[str, int | None]] = {}
    for times, columns in sets:
        for i, t in enumerate(times):
            rows.setdefault(t, {}).update({name: values[i] for name, values in columns.items()})
    return from_rows(rows)


def _concat(sets: tuple[tuple[list[int], Columns], ...]) -> tuple[list[int], Columns]:
    names = sorted({name for _, columns in sets for name in columns})
    chain = itertools.chain.from_iterable
    return list(chain(found for found, _ in sets)), {
        name: list(chain(columns.get(name) or [None] * len(found) for found, columns in sets))
        for name in names}


def from_rows(rows: dict[int, dict[str, int | None]]) -> tuple[list[int], Columns]:
    times = sorted(rows)
    names = sorted({name for row in rows.values() for name in row})
    return times, {name: [rows[t].get(name) for t in times] for name in names}


def downsample(times: list[int], columns: Columns, step: int) -> tuple[list[int], Columns]:
    """One point per `step` seconds (at the bucket's start): each column's last value, and
    for the WORST gauges also their maximum as `NAME_max` (of `NAME_max` when the points were
    downsampled already). Counters keep their last value: a rate from two of them is exact.
    times ascending: a bucket is a slice."""
    starts: list[int] = []
    edges: list[int] = []
    out: Columns
    for i, t in enumerate(times):
        if not starts or t - t % step != starts[-1]:
            starts.append(t - t % step)
            edges.append(i)
    if len(starts) == len(times):  # a point a bucket (raw points at their own step): as is
        out = {name: values for name, values in columns.items() if not name.endswith("_max")}
        out.update({f"{name}_max": columns.get(f"{name}_max", out[name])
                    for name in WORST if name in out})
        return starts, out
    spans = list(zip(edges, [*edges[1:], len(times)], strict=True))
    out = {}
    for name, values in columns.items():
        if name.endswith("_max"):
            continue
        # the bucket's last point, None included: "none pending" at the end of a bucket is
        # what it was then (the worst, NAME_max, keeps what came before)
        out[name] = [values[b - 1] for _, b in spans]
        if name in WORST:
            source = columns.get(f"{name}_max", values)
            out[f"{name}_max"] = [_max(source[a:b]) for a, b in spans]
    return starts, out


def _max(values: list[int | None]) -> int | None:
    """max() at C speed; only a bucket with a gap in it (a None) takes the slow way."""
    try:
        return max(values)  # type: ignore[type-var]
    except TypeError:
        return max((v for v in values if v is not None), default=None)
