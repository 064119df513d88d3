"""READ side of the history: one series over a range, as aligned arrays for a chart.

The range picks the resolution (up to HISTORY_RAW_KEEP: as sampled; beyond: minute points)
and the points are merged into buckets so that a series never has more than
HISTORY_MAX_POINTS. Each bucket without a sample is None: an outage is a gap, never a zero.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from streams_admin import conf
from streams_admin.trends import points, storage
from streams_admin.trends.models import Chunk, Sample, Series

RANGES = {"15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400}
Value = int | float | None
# Stored column -> the name a chart reads (ages and times in seconds, not ms)
SECONDS = {"time_lag_ms": "time_lag_s", "oldest_ms": "oldest_pending_s", "idle_ms": "idle_s",
           "inactive_ms": "inactive_s"}
RATES = {"added": "in_rate", "read": "out_rate"}  # counters -> per second


@dataclass(frozen=True)
class History:
    kind: str  # "s" stream, "g" group, "c" consumer
    range: str
    step: int  # seconds between points
    times: tuple[int, ...]  # epoch seconds, each bucket's start
    # A tuple per metric, aligned with times: length, added, in_rate; read, out_rate, lag,
    # time_lag_s, pending, oldest_pending_s, consumers, trimmed; idle_s, inactive_s; and
    # worst_lag, worst_time_lag_s, worst_oldest_pending_s: the
    # maximum within each bucket. None where nothing was sampled.
    values: dict[str, tuple[Value, ...]] = field(default_factory=dict)


def history(target: str, stream: bytes, group: bytes | None = None,
            consumer: bytes | None = None, range: str = "1h",  # noqa: A002 (the brief's name)
            now: float | None = None) -> History:
    seconds = RANGES[range]
    kind = Series.CONSUMER if consumer is not None else Series.GROUP if group is not None \
        else Series.STREAM
    identity = (target, kind, stream, group or b"", consumer or b"")
    end = int(time.time() if now is None else now)
    base = _base(seconds)
    step = base * max(1, math.ceil(seconds / conf.get("HISTORY_MAX_POINTS") / base))
    start = end - seconds
    start -= start % step
    times, columns = _points(storage.digest(identity), base, start, end)
    return _aligned(kind, range, step, start, end, *points.downsample(times, columns, step))


def _base(seconds: int) -> int:
    raw = int(conf.get("SAMPLE_INTERVAL"))
    return raw if seconds <= conf.get("HISTORY_RAW_KEEP") else storage.MINUTE


def _points(digest: bytes, base: int, start: int, end: int) -> tuple[list[int], points.Columns]:
    """Chunks of the base resolution over [start, end], with the samples not packed yet."""
    series = Series.objects.filter(digest=digest).values_list("id", flat=True).first()
    if series is None:
        return [], {}
    resolution = storage.MINUTE if base == storage.MINUTE else storage.RAW
    span = storage.HOUR if resolution == storage.MINUTE else storage.PERIOD
    chunks = Chunk.objects.filter(series_id=series, resolution=resolution,
                                  start__gt=start - span, start__lte=end).order_by("start")
    found = [points.unpack(data) for data in chunks.values_list("data", flat=True)]
    rows = Sample.objects.filter(series_id=series, t__gte=start, t__lte=end).values_list(
        "t", *storage.COLUMNS)
    recent = {t: dict(zip(storage.COLUMNS, v, strict=True)) for t, *v in rows}
    if recent:
        fresh = points.from_rows(recent)
        # minute chunks carry NAME_max columns: the fresh samples must too
        found.append(points.downsample(*fresh, base) if resolution == storage.MINUTE else fresh)
    return points.merge(*found)


def _aligned(kind: str, range: str, step: int, start: int, end: int,  # noqa: A002
             times: list[int], columns: points.Columns) -> History:
    grid = tuple(range_(start, end + 1, step))
    at = {t: i for i, t in enumerate(times)}
    values: dict[str, tuple[Value, ...]] = {}
    for name, column in columns.items():
        if all(v is None for v in column):
            continue
        aligned = [column[at[t]] if t in at else None for t in grid]
        values[_name(name)] = tuple(_seconds(aligned) if _is_ms(name) else aligned)
        if name in RATES:
            values[RATES[name]] = _rates(grid, aligned)
    return History(kind, range, step, grid, values)


range_ = range  # the builtin, shadowed by the parameter above


def _name(column: str) -> str:
    base = column.removesuffix("_max")
    name = SECONDS.get(base, base)
    return f"worst_{name}" if column.endswith("_max") else name


def _is_ms(column: str) -> bool:
    return column.removesuffix("_max") in SECONDS


def _seconds(values: list[int | None]) -> list[Value]:
    return [None if v is None else v / 1000 for v in values]


def _rates(grid: tuple[int, ...], counter: list[int | None]) -> tuple[Value, ...]:
    """Per second between neighbouring buckets; None across a gap or a reset (a stream
    deleted and created again starts its counters over)."""
    out: list[Value] = [None]
    for i in range_(1, len(grid)):
        a, b = counter[i - 1], counter[i]
        ok = a is not None and b is not None and b >= a
        out.append((b - a) / (grid[i] - grid[i - 1]) if ok else None)  # type: ignore[operator]
    return tuple(out)


def consumers_of(target: str, stream: bytes, group: bytes, limit: int = 100) -> list[bytes]:
    """Consumers of a group that have a history (the first `limit`, oldest series first)."""
    rows = Series.objects.filter(target=target, kind=Series.CONSUMER, stream=stream,
                                 group=group).order_by("id")
    return [bytes(c) for c in rows.values_list("consumer", flat=True)[:limit]]
