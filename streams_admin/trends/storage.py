"""WRITE side of the history: a snapshot's samples, packing periods into chunks, retention.

Only the sampler calls these (inside its lease: sampler.py). Every function does bounded work
per call, so a cycle stays short however much history has piled up.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from django.db import transaction

from streams_admin import conf
from streams_admin.trends import points
from streams_admin.trends.models import Chunk, Sample, Series

if TYPE_CHECKING:
    from streams_admin.trends.measure import Snapshot

# Chunk.resolution: 0 = as sampled (every SAMPLE_INTERVAL), 60 s, or 600 s (TEN: what
# ranges longer than a day read: 7 days of a series are 8 rows of 144 points, not 168 of 60)
RAW, MINUTE, TEN = 0, 60, 600
PERIOD = 600  # seconds of raw points per chunk (one TEN point); 60 minute points per hour
HOUR = 3600
DAY = 86400  # seconds of 10-minute points per TEN chunk (144 points)
SPANS = {RAW: PERIOD, MINUTE: HOUR, TEN: DAY}  # resolution -> seconds a chunk of it holds
COMPACT_BATCH = 500  # series packed per call
PURGE_BATCH = 2000  # rows deleted per call
Identity = tuple[str, str, bytes, bytes, bytes]  # target, kind, stream, group, consumer


def digest(identity: Identity) -> bytes:
    """Unambiguous (each part length-prefixed) whatever bytes the names hold."""
    target, kind, *names = identity
    parts = [target.encode(), kind.encode(), *names]
    return hashlib.sha256(b"".join(len(p).to_bytes(8, "big") + p for p in parts)).digest()


def samples(target: str, snap: Snapshot) -> Iterator[tuple[Identity, dict[str, Any]]]:
    """Each series of the snapshot with the columns it fills (ages and times in ms)."""
    for s in snap.streams:
        yield (target, Series.STREAM, s.key, b"", b""), {"length": s.length,
                                                          "added": s.entries_added}
        for g in s.groups:
            yield (target, Series.GROUP, s.key, g.name, b""), {
                "read": g.entries_read, "lag": g.lag, "time_lag_ms": _ms(g.time_lag_s),
                "pending": g.pending, "oldest_ms": _ms(g.oldest_pending_s),
                "consumers": max(g.consumer_count, len(g.consumers)),
                "trimmed": g.trimmed_unread}
            for c in g.consumers:
                yield (target, Series.CONSUMER, s.key, g.name, c.name), {
                    "pending": c.pending, "idle_ms": c.idle_ms, "inactive_ms": c.inactive_ms}


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)


def series_ids(identities: list[Identity], cache: dict[bytes, int]) -> list[int]:
    """The Series row of each identity, created when new (cache: digest -> id, the caller's)."""
    digests = [digest(identity) for identity in identities]
    missing = {d: i for d, i in zip(digests, identities, strict=True) if d not in cache}
    if missing:
        _load(missing, cache)
    return [cache[d] for d in digests]


def _load(missing: dict[bytes, Identity], cache: dict[bytes, int]) -> None:
    found = _found(list(missing))
    new = [Series(digest=d, target=i[0], kind=i[1], stream=i[2], group=i[3], consumer=i[4])
           for d, i in missing.items() if d not in found]
    if new:
        Series.objects.bulk_create(new, ignore_conflicts=True, batch_size=500)
        found = _found(list(missing))
    cache.update(found)


def _found(digests: list[bytes]) -> dict[bytes, int]:
    found: dict[bytes, int] = {}
    for i in range(0, len(digests), 900):  # under any SQLite's limit of bound variables
        rows = Series.objects.filter(digest__in=digests[i:i + 900]).values_list("digest", "id")
        found.update((bytes(d), pk) for d, pk in rows)  # PostgreSQL hands back memoryviews
    return found


def write(target: str, t: int, snap: Snapshot, cache: dict[bytes, int]) -> int:
    """The snapshot's samples at slot t (call inside the lease's transaction)."""
    rows = list(samples(target, snap))
    ids = series_ids([identity for identity, _ in rows], cache)
    Sample.objects.bulk_create(
        [Sample(series_id=i, t=t, **values) for i, (_, values) in zip(ids, rows, strict=True)],
        batch_size=500, ignore_conflicts=True)
    return len(rows)


COLUMNS = ("length", "added", "read", "lag", "time_lag_ms", "pending", "oldest_ms", "consumers",
           "trimmed", "idle_ms", "inactive_ms")


def compact(now: float) -> int:
    """Packs the samples of completed periods (at most COMPACT_BATCH series) into raw chunks
    and folds them into their hour's minute chunk and their day's 10-minute chunk (a period
    is one 10-minute point); returns how many series it packed."""
    cutoff = int(now) - int(now) % PERIOD
    batch = list(Sample.objects.filter(t__lt=cutoff).order_by()
                 .values_list("series_id", flat=True).distinct()[:COMPACT_BATCH])
    if not batch:
        return 0
    with transaction.atomic():
        # A write first: on SQLite a transaction that reads before it writes fails at once
        # ("database is locked") when another writer is busy, instead of waiting its turn.
        Series.objects.filter(id__in=batch).update(last_seen=int(now))
        periods = _periods(batch, cutoff)
        _save(periods, _existing(batch, periods))
        Sample.objects.filter(series_id__in=batch, t__lt=cutoff).delete()
    return len(batch)


def _periods(batch: list[int], cutoff: int) -> dict[tuple[int, int], dict[int, dict]]:
    """(series id, period start) -> {t: that sample's non-NULL columns}."""
    found: dict[tuple[int, int], dict[int, dict]] = {}
    rows = Sample.objects.filter(series_id__in=batch, t__lt=cutoff).values_list(
        "series_id", "t", *COLUMNS)
    for series_id, t, *values in rows.iterator(chunk_size=2000):
        row = {name: v for name, v in zip(COLUMNS, values, strict=True) if v is not None}
        found.setdefault((series_id, t - t % PERIOD), {})[t] = row
    return found


def _existing(batch: list[int], periods: dict) -> dict[tuple[int, int, int], Chunk]:
    starts = {start - start % span for _, start in periods for span in SPANS.values()}
    chunks = Chunk.objects.filter(series_id__in=batch, start__in=starts)
    return {(c.series_id, c.resolution, c.start): c for c in chunks}


def _save(periods: dict[tuple[int, int], dict[int, dict]],
          existing: dict[tuple[int, int, int], Chunk]) -> None:
    for (series_id, start), rows in sorted(periods.items()):
        raw = points.from_rows(rows)
        whole = _fold(existing, (series_id, RAW, start), raw)
        _fold(existing, (series_id, MINUTE, start - start % HOUR),
              points.downsample(*raw, MINUTE))
        # from the whole period (a sample packed late joins those packed before it): its
        # 10-minute point's worst values are the period's, not the late samples' alone
        _fold(existing, (series_id, TEN, start - start % DAY), points.downsample(*whole, TEN))
    Chunk.objects.bulk_create([c for c in existing.values() if c.pk is None], batch_size=500)
    Chunk.objects.bulk_update([c for c in existing.values() if c.pk is not None], ["data"],
                              batch_size=500)


def _fold(existing: dict[tuple[int, int, int], Chunk], key: tuple[int, int, int],
          new: tuple[list[int], points.Columns]) -> tuple[list[int], points.Columns]:
    """new's points into the chunk at key (made when there is none); returns all its points."""
    chunk = existing.get(key)
    if chunk is None:
        existing[key] = Chunk(series_id=key[0], resolution=key[1], start=key[2],
                              data=points.pack(*new))
        return new
    merged = points.merge(points.unpack(chunk.data), new)
    chunk.data = points.pack(*merged)
    return merged


def purge(now: float) -> int:
    """Deletes (at most PURGE_BATCH rows of each kind) what is past its retention."""
    ends = {resolution: now - conf.get(KEEP[resolution]) - SPANS[resolution]
            for resolution in SPANS}
    deleted = sum(_delete(Chunk.objects.filter(resolution=resolution, start__lt=end))
                  for resolution, end in ends.items())
    # A stream, group or consumer gone for longer than any history is kept.
    gone = Series.objects.filter(last_seen__gt=0, last_seen__lt=min(ends.values()))
    return deleted + _delete(gone)


KEEP = {RAW: "HISTORY_RAW_KEEP", MINUTE: "HISTORY_MINUTE_KEEP", TEN: "HISTORY_TEN_MINUTE_KEEP"}


def _delete(query: Any) -> int:
    ids = list(query.order_by().values_list("id", flat=True)[:PURGE_BATCH])
    return query.model.objects.filter(id__in=ids).delete()[0] if ids else 0


def backfill(chunk_model: Any, series: list[int]) -> int:
    """10-minute chunks of these series from their minute chunks (history written before the
    10-minute tier existed: migration 0006 calls this a batch of series at a time, with its
    historical model). Where a 10-minute chunk exists (the sampler ran first), its points win.
    Returns how many chunks it wrote."""
    days: dict[tuple[int, int], list[tuple[list[int], points.Columns]]] = {}
    minutes = chunk_model.objects.filter(series_id__in=series, resolution=MINUTE).order_by(
        "series_id", "start").values_list("series_id", "start", "data")
    for series_id, start, data in minutes.iterator(chunk_size=500):
        days.setdefault((series_id, start - start % DAY), []).append(
            points.downsample(*points.unpack(data), TEN))
    existing = {(c.series_id, c.start): c for c in chunk_model.objects.filter(
        series_id__in=series, resolution=TEN, start__in={day for _, day in days})}
    new, changed = [], []
    for (series_id, day), sets in days.items():
        chunk = existing.get((series_id, day))
        if chunk is None:
            new.append(chunk_model(series_id=series_id, resolution=TEN, start=day,
                                   data=points.pack(*points.merge(*sets))))
        else:
            chunk.data = points.pack(*points.merge(*sets, points.unpack(chunk.data)))
            changed.append(chunk)
    chunk_model.objects.bulk_create(new, batch_size=500)
    chunk_model.objects.bulk_update(changed, ["data"], batch_size=500)
    return len(new) + len(changed)
