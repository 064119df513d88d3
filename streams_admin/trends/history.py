"""READ side of the history: one series over a range, as aligned arrays for a chart.

The range picks the resolution (up to HISTORY_RAW_KEEP: as sampled; up to a day: minute
points; beyond: 10-minute points, 8 rows a series for 7 days) and the points are merged into
buckets so that a series never has more than HISTORY_MAX_POINTS. Each bucket without a sample
is None: an outage is a gap, never a zero.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
import operator
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection

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


# Decoded chunks kept by this process (_unpacked): a group page's (10 consumers) 7 days are
# ~100 chunks, its 24 hours ~300: 2.3 MB for both (measured), ~6 MB for 1,024 such chunks.
DECODED = 1024
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
    resolution, base = _resolution(seconds), _base(seconds)
    step = step_of(range, max_points)
    start = end - seconds
    start -= start % step
    digests = [storage.digest(_identity(target, name)) for name in series]
    found = _points(digests, resolution, base, start, end, columns)
    # Packed minute and 10-minute points carry their worst values already: at their own step
    # they are the buckets (raw points get theirs, NAME_max, from downsample)
    as_read = step == base and resolution != storage.RAW
    grid = tuple(range_(start, end + 1, step))
    out = []
    for name, digest in zip(series, digests, strict=True):
        times, cols, newest = found.get(digest, ([], {}, None))
        bucketed = (times, cols) if as_read else points.downsample(times, cols, step)
        out.append(_aligned(_kind(name), range, step, grid, *bucketed, newest))
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


def _resolution(seconds: int) -> int:
    """The chunks a range reads: as sampled within HISTORY_RAW_KEEP, minute points up to a
    day (or HISTORY_MINUTE_KEEP when shorter), 10-minute points beyond (a 7-day chart: 1,008
    points, ~1 a pixel)."""
    if seconds <= conf.get("HISTORY_RAW_KEEP"):
        return storage.RAW
    if seconds <= min(storage.DAY, conf.get("HISTORY_MINUTE_KEEP")):
        return storage.MINUTE
    return storage.TEN


def _base(seconds: int) -> int:
    """Seconds between the points a range reads."""
    resolution = _resolution(seconds)
    return int(conf.get("SAMPLE_INTERVAL")) if resolution == storage.RAW else resolution


def _points(digests: list[bytes], resolution: int, base: int, start: int, end: int,
            columns: tuple[str, ...] | None = None
            ) -> dict[bytes, tuple[list[int], points.Columns, int | None]]:
    """Each series' chunks of the base resolution over [start, end], with the samples not
    packed yet, and the time of its newest sample not packed (None: none): by digest, for
    those that have a history. columns: those to keep (and their NAME_max), None: all."""
    # Two queries, each joined to its series by digest (a unique index): a series with
    # neither chunks nor samples in the range has no history there, as one never sampled
    if not digests:
        return {}
    ids: dict[int, bytes | memoryview] = {}  # PostgreSQL hands back memoryviews
    found: dict[int, list[tuple[list[int], points.Columns]]] = {}
    for series_id, digest, data in _query(
            f"SELECT c.series_id, x.digest, c.data FROM {CHUNK} c {_by_digest('c', digests)}"
            " AND c.resolution = %s AND c.start > %s AND c.start <= %s ORDER BY c.start",
            [*digests, resolution, start - storage.SPANS[resolution], end]):
        ids[series_id] = digest
        found.setdefault(series_id, []).append(_unpacked(bytes(data), columns))
    wanted = [c for c in storage.COLUMNS if columns is None or c in columns]
    if resolution == storage.RAW:  # the samples as they are
        names = wanted
        rows = _query(f"SELECT s.series_id, x.digest, s.t{_columns('s', wanted)} FROM {SAMPLE} s"
                      f" {_by_digest('s', digests)} AND s.t >= %s AND s.t <= %s"
                      " ORDER BY s.series_id, s.t", [*digests, start, end])
    else:  # packed minute and 10-minute points carry NAME_max columns: these too
        rows, names = _buckets(digests, start, end, wanted, base)
    newest: dict[int, int | None] = {}  # the time of the newest sample, not its bucket's
    for series_id, same in itertools.groupby(rows, key=operator.itemgetter(0)):
        _, named, times, *values = zip(*same, strict=True)  # columns, at C speed
        ids[series_id] = named[0]
        # a kind's columns only (the others are NULL)
        cols = {name: list(v) for name, v in zip(names, values, strict=True)
                if any(x is not None for x in v)}
        newest[series_id] = max(cols.pop(SAMPLED, times))
        found.setdefault(series_id, []).append((list(times), cols))
    return {bytes(ids[i]): (*points.merge(*sets), newest.get(i)) for i, sets in found.items()}


# Plain SQL (SQLite and PostgreSQL alike): the ORM took 0.5 ms to build a 0.1 ms query, a
# chart's reads are three of them, and a chart's first viewer in a step waits for them.
CHUNK, SAMPLE, SERIES = Chunk._meta.db_table, Sample._meta.db_table, Series._meta.db_table
SAMPLED = "sampled"  # _buckets: the time of the sample a bucket's values are from


def _query(sql: str, params: list[Any]) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _by_digest(table: str, digests: list[bytes]) -> str:
    """The rows of `table` of these series (x: their Series rows), a parameter per digest."""
    return (f"JOIN {SERIES} x ON x.id = {table}.series_id"
            f" WHERE x.digest IN ({', '.join(['%s'] * len(digests))})")


def _columns(table: str, names: list[str], prefix: str = ", ") -> str:
    return "".join(f'{prefix}{table}."{name}"' for name in names)


def _buckets(digests: list[bytes], start: int, end: int, wanted: list[str], base: int
             ) -> tuple[list[tuple], list[str]]:
    """The samples not packed yet, downsampled by the database as points.downsample would:
    each bucket's newest sample, with its WORST gauges' maximum as NAME_max. A 7-day chart
    reads a row or two per series, not the ~60 samples of the period filling now. Rows of
    (series_id, digest, bucket start, *names), names: wanted, the NAME_max, SAMPLED."""
    worst = [name for name in points.WORST if name in wanted]
    maxima = "".join(f', MAX(i."{name}") AS {name}_max' for name in worst)
    rows = _query(
        f"SELECT s.series_id, x.digest, s.t / {base:d} * {base:d}{_columns('s', wanted)}"
        f"{_columns('m', [f'{name}_max' for name in worst])}, s.t FROM {SAMPLE} s"
        f" JOIN (SELECT i.series_id, MAX(i.t) AS t{maxima} FROM {SAMPLE} i"
        f" {_by_digest('i', digests)} AND i.t >= %s AND i.t <= %s"
        f" GROUP BY i.series_id, i.t / {base:d}) m ON m.series_id = s.series_id AND m.t = s.t"
        f" JOIN {SERIES} x ON x.id = s.series_id ORDER BY s.series_id, s.t",
        [*digests, start, end])
    return rows, [*wanted, *(f"{name}_max" for name in worst), SAMPLED]


@functools.lru_cache(maxsize=DECODED)
def _unpacked(data: bytes, columns: tuple[str, ...] | None) -> tuple[list[int], points.Columns]:
    """points.unpack, kept for the chunk's bytes (never to be changed by the caller): a chunk
    of a past hour or day never changes, so the first viewer of a range in a new step (its
    JSON is kept a step: views.py) decodes the chunks written since, not 7 days of them. The
    bytes are the key: a chunk rewritten is new bytes, decoded anew; none is ever stale."""
    return points.unpack(data, columns)


def _aligned(kind: str, range: str, step: int, grid: tuple[int, ...],  # noqa: A002
             times: list[int], columns: points.Columns, newest: int | None = None) -> History:
    place = _placing(grid, times)
    values: dict[str, tuple[Value, ...]] = {}
    for name, column in columns.items():
        if all(v is None for v in column):
            continue
        aligned = place(column)
        values[_name(name)] = tuple(_seconds(aligned) if _is_ms(name) else aligned)
        if name in RATES:
            values[RATES[name]] = _rates(grid, aligned, newest)
    return History(kind, range, step, grid, values)


range_ = range  # the builtin, shadowed by the parameter above


def _placing(grid: tuple[int, ...], times: list[int]
             ) -> Callable[[list[int | None]], list[int | None]]:
    """A function putting a column of values at `times` on the grid (None where no time is):
    slices when the times within the grid are a run of its times (nearly always: a gap is
    rare), else a lookup per grid time."""
    lo, hi = bisect.bisect_left(times, grid[0]), bisect.bisect_right(times, grid[-1])
    if lo == hi:
        return lambda column: [None] * len(grid)
    step = grid[1] - grid[0] if len(grid) > 1 else 1
    first, count = (times[lo] - grid[0]) // step, hi - lo
    if grid[first:first + count] == tuple(times[lo:hi]):
        before, after = [None] * first, [None] * (len(grid) - first - count)
        return lambda column: before + column[lo:hi] + after
    at = {t: i for i, t in enumerate(times)}
    return lambda column: [column[at[t]] if t in at else None for t in grid]


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
    """Per second between neighbouring buckets, to a thousandth (1,000 points of 17 digits
    are bytes for nothing); None across a gap or a reset (a stream deleted and created again
    starts its counters over)."""
    out: list[Value] = [None]
    for i in range_(1, len(grid)):
        a, b = counter[i - 1], counter[i]
        ok = a is not None and b is not None and b >= a
        out.append(round((b - a) / (grid[i] - grid[i - 1]), 3) if ok else None)  # type: ignore[operator]
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
    out[i] = round((counter[i] - counter[i - 1]) / elapsed, 3) if elapsed > 0 else None  # type: ignore[operator]


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
