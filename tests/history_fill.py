"""Days of history for one stream, its group and the group's consumers, written fast in the
sampler's own layout (storage.py: minute chunks by the hour, raw chunks for HISTORY_RAW_KEEP,
the current period as Sample rows) with a shape a person can read on a chart: a daily wave of
traffic, a lag that builds and drains every few hours, and an outage left as a gap.

For the browser tests and bench/trends_page.py (the dashboard under test has its own SQLite
file, so they run this in a process of its own):

    DATABASE_URL=sqlite:///... python -m tests.history_fill STREAM GROUP CONSUMER... [--days 7]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time

Columns = dict[str, list[int | None]]


class Shape:
    """Every metric of the series as a function of time (epoch s), smooth plus a little noise."""

    def __init__(self, consumers: int, seed: int = 13) -> None:
        self.random = random.Random(seed)
        self.consumers = consumers

    def in_rate(self, t: int) -> float:
        return 40 + 25 * math.sin(2 * math.pi * t / 86400)

    def added(self, t: int) -> int:  # the integral of in_rate: a counter that only grows
        day = 86400
        return int(40 * t - 25 * day / (2 * math.pi) * math.cos(2 * math.pi * t / day))

    def lag(self, t: int) -> int:
        wave = math.sin(2 * math.pi * t / (5 * 3600))
        return max(0, int(900 * wave ** 3)) + self.random.randrange(4)

    def group(self, t: int) -> dict[str, int | None]:
        lag = self.lag(t)
        pending = 6 + int(4 * math.sin(t / 1700)) + self.random.randrange(3)
        return {"read": self.added(t) - lag, "lag": lag,
                "time_lag_ms": int(lag / self.in_rate(t) * 1000), "pending": pending,
                "oldest_ms": 800 + int(600 * abs(math.sin(t / 2500))) + lag * 40,
                "consumers": self.consumers, "trimmed": 0}

    def consumer(self, n: int, t: int) -> dict[str, int | None]:
        return {"pending": max(0, 2 + n % 3 + int(2 * math.sin(t / 2000 + n))
                               + self.random.randrange(2)),
                "idle_ms": 200 + self.random.randrange(800), "inactive_ms": 150}

    def stream(self, t: int) -> dict[str, int | None]:
        return {"length": 80_000 + int(15_000 * math.sin(t / 9000)), "added": self.added(t)}


def _series(target: str, stream: bytes, group: bytes, consumers: list[bytes]) -> list[int]:
    from streams_admin.trends import storage
    from streams_admin.trends.models import Series

    identities = [(target, Series.STREAM, stream, b"", b""),
                  (target, Series.GROUP, stream, group, b"")]
    identities += [(target, Series.CONSUMER, stream, group, c) for c in consumers]
    return storage.series_ids(identities, {})


def _columns(shape: Shape, kind: int, times: list[int]) -> Columns:
    rows = [shape.stream(t) if kind == 0 else shape.group(t) if kind == 1
            else shape.consumer(kind, t) for t in times]
    return {name: [row[name] for row in rows] for name in rows[0]}


def fill(target: str, stream: bytes, group: bytes, consumers: list[bytes], *, days: float = 7,
         now: int | None = None, interval: int = 10, raw_keep: int = 6 * 3600,
         outage: tuple[int, int] | None = None) -> int:
    """Writes the history ending at now; outage: (start, end) epoch s with no samples (a gap).
    Returns how many points it wrote."""
    from streams_admin.trends import points, storage  # not at the top: after django.setup()
    from streams_admin.trends.models import Chunk, Sample

    now = int(time.time() if now is None else now)
    shape = Shape(len(consumers))
    ids = _series(target, stream, group, consumers)
    current = now - now % storage.PERIOD
    written = 0

    def times(start: int, end: int, step: int) -> list[int]:
        return [t for t in range(start, end, step)
                if not (outage and outage[0] <= t < outage[1]) and t <= now]

    chunks = []
    days_of: dict[tuple[int, int], list[tuple[list[int], Columns]]] = {}  # 10-minute points
    first_hour = current - current % storage.HOUR - int(days * 86400)
    for hour in range(first_hour, current, storage.HOUR):
        found = times(hour, min(hour + storage.HOUR, current), interval)  # packed: done periods
        for kind, series in enumerate(ids):
            if found:
                raw = (found, _columns(shape, kind, found))
                chunks.append(Chunk(series_id=series, resolution=storage.MINUTE, start=hour,
                                    data=points.pack(*points.downsample(*raw, storage.MINUTE))))
                days_of.setdefault((series, hour - hour % storage.DAY), []).append(
                    points.downsample(*raw, storage.TEN))
                written += len(found)
                for period in range(hour, hour + storage.HOUR, storage.PERIOD):
                    mine = [t for t in found if period <= t < period + storage.PERIOD]
                    if mine and period >= current - raw_keep:
                        chunks.append(Chunk(series_id=series, resolution=storage.RAW,
                                            start=period, data=points.pack(
                                                mine, _columns(shape, kind, mine))))
    chunks += [Chunk(series_id=series, resolution=storage.TEN, start=day,
                     data=points.pack(*points.merge(*sets)))
               for (series, day), sets in days_of.items()]
    Chunk.objects.bulk_create(chunks, batch_size=500)
    samples = [Sample(series_id=series, t=t, **{k: v[0] for k, v in _columns(
        shape, kind, [t]).items()}) for t in times(current, now + 1, interval)
        for kind, series in enumerate(ids)]
    Sample.objects.bulk_create(samples, batch_size=500)
    return written + len(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("stream")
    parser.add_argument("group")
    parser.add_argument("consumers", nargs="*")
    parser.add_argument("--target", default="default")
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--outage", type=int, nargs=2, metavar=("SECONDS_AGO", "LENGTH"),
                        help="no samples from SECONDS_AGO for LENGTH seconds")
    args = parser.parse_args()
    now = int(time.time())
    outage = (now - args.outage[0], now - args.outage[0] + args.outage[1]) if args.outage \
        else None
    count = fill(args.target, args.stream.encode(), args.group.encode(),
                 [c.encode() for c in args.consumers], days=args.days, outage=outage)
    print(f"{count} points written")


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import django

    django.setup()
    main()
