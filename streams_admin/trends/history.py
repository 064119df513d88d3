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


Pair = tuple[bytes, bytes]  # (stream, group)
BATCH = 900  # series per query: under any SQLite's limit of bound variables


def recent_lags(target: str, pairs: list[Pair], since: int, until: int
                ) -> dict[Pair, tuple[list[int], list[int | None], list[int | None]]]:
    """The lag (and trimmed, None when the lag was counted) of many groups as sampled within
    [since, until]: (times, lags, trimmed) each, empty without history. Three queries per
    BATCH groups whatever their number, where history() takes three per group: the
    overview's trend health reads a page of groups at once (trends/health.py)."""
    by_digest = {storage.digest((target, Series.GROUP, s, g, b"")): (s, g) for s, g in pairs}
    pair_of: dict[int, Pair] = {}
    for batch in _batches(list(by_digest)):
        named = Series.objects.filter(digest__in=batch).values_list("digest", "id")
        pair_of.update((pk, by_digest[bytes(d)]) for d, pk in named)
    found: dict[Pair, list[tuple[list[int], points.Columns]]] = {pair: [] for pair in pairs}
    for batch in _batches(list(pair_of)):
        chunks = Chunk.objects.filter(series_id__in=batch, resolution=storage.RAW,
                                      start__gt=since - storage.PERIOD, start__lte=until)
        for series_id, data in chunks.order_by("start").values_list("series_id", "data"):
            found[pair_of[series_id]].append(points.unpack(data))
        fresh: dict[int, dict[int, dict[str, int | None]]] = {}
        rows = Sample.objects.filter(series_id__in=batch, t__gte=since, t__lte=until)
        for series_id, t, lag, trimmed in rows.values_list("series_id", "t", "lag", "trimmed"):
            fresh.setdefault(series_id, {})[t] = {"lag": lag, "trimmed": trimmed}
        for series_id, samples in fresh.items():  # after the chunks: the newer value wins
            found[pair_of[series_id]].append(points.from_rows(samples))
    return {pair: _lags(*points.merge(*sets), since, until) for pair, sets in found.items()}


def _batches(items: list) -> list[list]:
    return [items[i:i + BATCH] for i in range_(0, len(items), BATCH)]


def _lags(times: list[int], columns: points.Columns, since: int, until: int
          ) -> tuple[list[int], list[int | None], list[int | None]]:
    keep = [i for i, t in enumerate(times) if since <= t <= until]
    lag, trimmed = columns.get("lag", [None] * len(times)), columns.get("trimmed")
    return ([times[i] for i in keep], [lag[i] for i in keep],
            [None if trimmed is None else trimmed[i] for i in keep])
