"""READ side of the history: one series over a range, as aligned arrays for a chart.

The range picks the resolution (up to HISTORY_RAW_KEEP: as sampled; beyond: minute points)
and the points are merged into buckets so that a series never has more than
HISTORY_MAX_POINTS. Each bucket without a sample is None: an outage is a gap, never a zero.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
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
    return histories(target, [(stream, group, consumer)], range, now)[0]


Name = tuple[bytes, bytes | None, bytes | None]  # stream, group or None, consumer or None


MAX_SERIES = 900  # series one histories() call reads: under SQLite's bound variables


def histories(target: str, series: Sequence[Name], range: str = "1h",  # noqa: A002
              now: float | None = None, columns: tuple[str, ...] | None = None,
              max_points: int | None = None) -> list[History]:
    """history() of many series at once, in three queries whatever their number (a chart
    page: a group and its consumers; the overview: its streams and their groups).
    columns: the stored columns to keep (storage.COLUMNS' names), to spare the others' work;
    max_points: fewer than HISTORY_MAX_POINTS (a sparkline)."""
    if len(series) > MAX_SERIES:
        raise ValueError(f"{len(series)} series asked at once; at most {MAX_SERIES}")
    seconds = RANGES[range]
    end = int(time.time() if now is None else now)
    base = _base(seconds)
    step = step_of(range, max_points)
    start = end - seconds
    start -= start % step
    digests = [storage.digest(_identity(target, name)) for name in series]
    found = _points(digests, base, start, end)
    out = []
    for name, digest in zip(series, digests, strict=True):
        times, cols, newest = found.get(digest, ([], {}, None))
        if columns is not None:
            cols = {n: v for n, v in cols.items() if n.removesuffix("_max") in columns}
        out.append(_aligned(_kind(name), range, step, start, end,
                            *points.downsample(times, cols, step), newest))
    return out


def step_of(range: str, max_points: int | None = None) -> int:  # noqa: A002
    """Seconds between the points of a range: the base resolution, or a multiple of it that
    keeps the points within max_points (HISTORY_MAX_POINTS by default)."""
    seconds = RANGES[range]
    base = _base(seconds)
    most = max_points or conf.get("HISTORY_MAX_POINTS")
    return int(base * max(1, math.ceil(seconds / most / base)))


def _kind(name: Name) -> str:
    return Series.CONSUMER if name[2] is not None else Series.GROUP if name[1] is not None \
        else Series.STREAM


def _identity(target: str, name: Name) -> storage.Identity:
    stream, group, consumer = name
    return (target, _kind(name), stream, group or b"", consumer or b"")


def _base(seconds: int) -> int:
    raw = int(conf.get("SAMPLE_INTERVAL"))
    return raw if seconds <= conf.get("HISTORY_RAW_KEEP") else storage.MINUTE


def _points(digests: list[bytes], base: int, start: int, end: int
            ) -> dict[bytes, tuple[list[int], points.Columns, int | None]]:
    """Each series' chunks of the base resolution over [start, end], with the samples not
    packed yet, and the time of its newest sample not packed (None: none): by digest, for
    those that have a history."""
    ids = dict(Series.objects.filter(digest__in=digests).values_list("id", "digest"))
    if not ids:
        return {}
    resolution = storage.MINUTE if base == storage.MINUTE else storage.RAW
    span = storage.HOUR if resolution == storage.MINUTE else storage.PERIOD
    chunks = Chunk.objects.filter(series_id__in=ids, resolution=resolution,
                                  start__gt=start - span, start__lte=end).order_by("start")
    found: dict[int, list[tuple[list[int], points.Columns]]] = {i: [] for i in ids}
    for series_id, data in chunks.values_list("series_id", "data"):
        found[series_id].append(points.unpack(data))
    rows = Sample.objects.filter(series_id__in=ids, t__gte=start, t__lte=end).values_list(
        "series_id", "t", *storage.COLUMNS)
    recent: dict[int, dict[int, dict]] = {}
    for series_id, t, *v in rows:  # a kind's columns only (the others are NULL), as packed
        recent.setdefault(series_id, {})[t] = {
            name: value for name, value in zip(storage.COLUMNS, v, strict=True)
            if value is not None}
    for series_id, samples in recent.items():
        fresh = points.from_rows(samples)
        # minute chunks carry NAME_max columns: the fresh samples must too
        found[series_id].append(points.downsample(*fresh, base)
                                if resolution == storage.MINUTE else fresh)
    return {bytes(ids[i]): (*points.merge(*sets), max(recent[i]) if i in recent else None)
            for i, sets in found.items()}


def _aligned(kind: str, range: str, step: int, start: int, end: int,  # noqa: A002
             times: list[int], columns: points.Columns, newest: int | None = None) -> History:
    grid = tuple(range_(start, end + 1, step))
    at = {t: i for i, t in enumerate(times)}
    values: dict[str, tuple[Value, ...]] = {}
    for name, column in columns.items():
        if all(v is None for v in column):
            continue
        aligned = [column[at[t]] if t in at else None for t in grid]
        values[_name(name)] = tuple(_seconds(aligned) if _is_ms(name) else aligned)
        if name in RATES:
            values[RATES[name]] = _rates(grid, aligned, newest)
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


def _rates(grid: tuple[int, ...], counter: list[int | None],
           newest: int | None = None) -> tuple[Value, ...]:
    """Per second between neighbouring buckets; None across a gap or a reset (a stream
    deleted and created again starts its counters over)."""
    out: list[Value] = [None]
    for i in range_(1, len(grid)):
        a, b = counter[i - 1], counter[i]
        ok = a is not None and b is not None and b >= a
        out.append((b - a) / (grid[i] - grid[i - 1]) if ok else None)  # type: ignore[operator]
    if newest is not None and len(grid) > 1:
        _filling(grid, counter, out, newest)
    return tuple(out)


def _filling(grid: tuple[int, ...], counter: list[int | None], out: list[Value],
             newest: int) -> None:
    """The newest bucket may still be filling: its value was read at `newest`, not at the end
    of its span as its neighbour's was, so its rate divides by the time really between the two
    readings (else a 1-minute bucket 10 s old shows a sixth of the rate: a false drop)."""
    step, interval = grid[1] - grid[0], int(conf.get("SAMPLE_INTERVAL"))
    i = (newest - grid[0]) // step
    if not 1 <= i < len(grid) or out[i] is None or newest >= grid[i] + step - interval:
        return
    elapsed = newest - (grid[i - 1] + step - interval)
    out[i] = (counter[i] - counter[i - 1]) / elapsed if elapsed > 0 else None  # type: ignore[operator]


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


def consumer_count(target: str, stream: bytes, group: bytes) -> int:
    """How many consumers of the group have a history (consumers_of lists the first few)."""
    return Series.objects.filter(target=target, kind=Series.CONSUMER, stream=stream,
                                 group=group).count()
