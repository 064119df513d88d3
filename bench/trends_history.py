"""The history's costs (README "History"): a sampling cycle over N streams x 1 group x 1
consumer (round trips, CPU as a fraction of one core at the default interval, the packing every
10 minutes included), and the SQLite file of N groups (each with its stream and one consumer)
after 7 days: 6 h of raw points, 7 days of minute points, 10 minutes of unpacked samples.

    .venv/bin/python bench/trends_history.py --streams 1000 --groups 1000

bench/trends.py runs it after its scrape figures (a process of its own: the SQLite file is
chosen before Django starts).
The stored values are random (lag, ages, rates): the worst case for packing, real series
are smoother and smaller (--smooth: random walks).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
DB = Path(tempfile.mkdtemp(prefix="trends-history-")) / "db.sqlite3"
os.environ["DATABASE_URL"] = f"sqlite:///{DB}"
os.environ.setdefault("SECRET_KEY", "bench")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import override_settings  # noqa: E402

from streams_admin.trends import points, sampler, storage  # noqa: E402
from streams_admin.trends.models import Chunk, Sample, Series  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

INTERVAL = 10
SMOOTH = False  # --smooth: random walks instead of independent random values
TRIPS = [0]


def count_round_trips() -> None:
    send = redis.connection.Connection.send_packed_command

    def counted(self, command, check_health=True):  # type: ignore[no-untyped-def]
        TRIPS[0] += 1
        return send(self, command, check_health)

    redis.connection.Connection.send_packed_command = counted  # type: ignore[method-assign]


def fill(r: redis.Redis, streams: int) -> None:
    pipe = r.pipeline(transaction=False)
    for n in range(streams):
        key = f"bench:{n:05d}"
        for i in range(5):
            pipe.xadd(key, {"i": i})
        pipe.xgroup_create(key, "workers", id="0")
        pipe.xreadgroup("workers", "w1", {key: ">"}, count=2)
    pipe.execute()


def cycles(streams: int) -> None:
    server = RedisServer().start()
    r = redis.Redis.from_url(server.url)
    fill(r, streams)
    count_round_trips()
    with override_settings(REDIS_URL=server.url):
        s = sampler.Sampler(INTERVAL)
        start = int(time.time()) // 600 * 600 + 600  # one whole period, then its packing
        s.cycle(start - INTERVAL)  # warm: scripts loaded, series created
        TRIPS[0] = 0
        cpu, wall = time.process_time(), time.perf_counter()
        for slot in range(start, start + 600, INTERVAL):
            s.cycle(slot)
        sample_cpu, sample_wall = time.process_time() - cpu, time.perf_counter() - wall
        trips = TRIPS[0] / 60
        cpu = time.process_time()
        while storage.compact(start + 600 + 1):
            pass
        pack_cpu = time.process_time() - cpu
    server.stop()
    per_cycle = (sample_cpu + pack_cpu) / 60
    print(f"sampling cycle, {streams} streams x 1 group x 1 consumer (SQLite):")
    print(f"  round trips to Redis per cycle: {trips:.1f}")
    print(f"  CPU per cycle: {sample_cpu / 60 * 1000:.0f} ms sampling + "
          f"{pack_cpu / 60 * 1000:.0f} ms packing (amortised), wall {sample_wall / 60 * 1000:.0f}"
          f" ms; {per_cycle / INTERVAL:.1%} of one core at {INTERVAL} s")


def random_points(start: int, count: int, step: int, kind: str) -> tuple[list[int],
                                                                       points.Columns]:
    times = [start + i * step for i in range(count)]
    total = random.randrange(10**9)
    counter = []
    for _ in times:
        total += step * 10 + (random.randrange(-3, 4) if SMOOTH else random.randrange(step * 10))
        counter.append(total)

    def gauge(high: int) -> list[int | None]:
        if SMOOTH:  # a random walk: what a lag or a queue does from one point to the next
            value, walk = random.randrange(high), []
            for _ in times:
                value = max(0, value + random.randrange(-5, 6))
                walk.append(value)
            return walk  # type: ignore[return-value]
        return [random.randrange(high) for _ in times]

    if kind == Series.STREAM:
        return times, {"length": gauge(10_000), "added": counter}  # type: ignore[dict-item]
    if kind == Series.GROUP:
        return times, {"read": counter, "lag": gauge(1000), "time_lag_ms": gauge(60_000),  # type: ignore[dict-item]
                       "pending": gauge(50), "oldest_ms": gauge(60_000), "consumers": [3] * count,
                       "trimmed": [0] * count}
    return times, {"pending": gauge(50), "idle_ms": gauge(60_000), "inactive_ms": gauge(60_000)}


def ten_minute_points(start: int, kind: str) -> tuple[list[int], points.Columns]:
    """A day of 10-minute points: last values, and worst ones (NAME_max) of their own."""
    times, columns = random_points(start, 144, storage.TEN, kind)
    other = random_points(start, 144, storage.TEN, kind)[1]
    for name in points.WORST:
        if name in columns:
            columns[f"{name}_max"] = [max(a, b) for a, b in  # type: ignore[type-var]
                                      zip(columns[name], other[name], strict=True)]
    return times, columns


def storage_size(groups: int) -> None:
    now = int(time.time()) // 3600 * 3600
    series = []
    for n in range(groups):
        key = f"bench:{n:05d}".encode()
        for kind, group, consumer in ((Series.STREAM, b"", b""), (Series.GROUP, b"workers", b""),
                                      (Series.CONSUMER, b"workers", b"w1")):
            series.append((kind, key, group, consumer))
    ids = storage.series_ids([("default", *s) for s in series], {})
    kinds = [s[0] for s in series]
    from streams_admin import conf

    for hour in range(conf.get("HISTORY_MINUTE_KEEP") // 3600 + 1):  # a transaction an hour
        start = now - (hour + 1) * 3600
        rows = [Chunk(series_id=i, resolution=storage.MINUTE, start=start,
                      data=points.pack(*points.downsample(*random_points(start, 60, 60, k), 60)))
                for i, k in zip(ids, kinds, strict=True)]
        with transaction.atomic():
            Chunk.objects.bulk_create(rows, batch_size=1000)
    for day in range(8):  # 10-minute points, a row a day: 7 days and the day begun
        start = now - now % storage.DAY - day * storage.DAY
        rows = [Chunk(series_id=i, resolution=storage.TEN, start=start,
                      data=points.pack(*ten_minute_points(start, k)))
                for i, k in zip(ids, kinds, strict=True)]
        with transaction.atomic():
            Chunk.objects.bulk_create(rows, batch_size=1000)
    for period in range(36):  # 6 h of raw points
        start = now - (period + 1) * 600
        rows = [Chunk(series_id=i, resolution=storage.RAW, start=start,
                      data=points.pack(*random_points(start, 60, INTERVAL, k)))
                for i, k in zip(ids, kinds, strict=True)]
        with transaction.atomic():
            Chunk.objects.bulk_create(rows, batch_size=1000)
    for slot in range(60):  # the period being sampled, not packed yet
        with transaction.atomic():
            Sample.objects.bulk_create(
                [Sample(series_id=i, t=now + slot * INTERVAL, **{name: values[0] for name, values
                 in random_points(now, 1, INTERVAL, k)[1].items()})
                 for i, k in zip(ids, kinds, strict=True)], batch_size=1000)
    connection.close()
    size = DB.stat().st_size
    per_day = size / groups / 7
    values = "random walks" if SMOOTH else "independent random values (the worst case)"
    print(f"storage, {groups} groups (+ stream + 1 consumer each) x 7 days, {values}:")
    print(f"  SQLite file: {size / 1e6:.0f} MB (budget 500 MB for 1,000 groups);"
          f" {per_day / 1000:.1f} kB per group per day; "
          f"{Chunk.objects.count()} chunk rows")
    reads(now + 590)


def reads(now: int) -> None:
    """What the charts will ask: one group's series over each range, in ms."""
    from streams_admin.trends import history

    took = {}
    for name in history.RANGES:
        began = time.perf_counter()
        for _ in range(5):
            found = history.history("default", b"bench:00000", b"workers", range=name, now=now)
        took[name] = (time.perf_counter() - began) / 5 * 1000, len(found.times)
    print("  reading one group's history: " + ", ".join(
        f"{name} {ms:.0f} ms ({n} points)" for name, (ms, n) in took.items()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--smooth", action="store_true")
    parser.add_argument("--skip-cycles", action="store_true")
    args = parser.parse_args()
    global SMOOTH
    SMOOTH = args.smooth
    call_command("migrate", verbosity=0)
    if not args.skip_cycles:
        cycles(args.streams)
    Sample.objects.all().delete()
    Chunk.objects.all().delete()
    Series.objects.all().delete()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM")
    storage_size(args.groups)


if __name__ == "__main__":
    try:
        main()
    finally:
        shutil.rmtree(DB.parent, ignore_errors=True)  # hundreds of MB
