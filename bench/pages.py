"""Read pages: Redis commands, round trips and time per request against the size of the data.

DESIGN.md: "A page's cost depends on the page size, not on the stream's length or the number
of pending entries." Each pair below differs only in data size; its two pages are requested
alternately (A, B, A, B, ...) through Django's test client, against a private redis-server.
Commands come from `INFO commandstats` deltas, round trips from counting redis-py's socket
writes (one per command or pipeline) during the request.

    .venv/bin/python bench/pages.py [--rounds 15]

Exit status 1 when a pair's command counts differ, a page's count changes between runs, or
the overview makes per-stream round trips. Time ratios are printed, not asserted: timings
are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.connection import AbstractConnection

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.dashboard_client import django_client  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

BATCH = 10_000
PAGE = 50
GROUP = "workers"
CONSUMERS = ("worker-1", "worker-2", "worker-3", "worker-4")
BIG_STREAM, SMALL_STREAM = "bench:entries:1m", "bench:entries:1k"
BIG_PEL, SMALL_PEL = "bench:pending:100k", "bench:pending:100"
FAT_PEL, FAT = "bench:pending:100:fat", 100_000  # 100 pending entries of ~100 kB each
DB_MAIN, DB_OVERVIEW, DB_OVERVIEW_SMALL = 0, 1, 2
failures: list[str] = []


def on_db(url: str, db: int) -> str:
    return f"{url.rsplit('/', 1)[0]}/{db}"


# --- data --------------------------------------------------------------------------------


def envelope(i: int, pad: int = 0) -> dict[str, str]:
    """An event shaped like the spec's envelope: small, unless padded by `pad` characters."""
    payload = {"blob": "x" * pad} if pad else {}
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "task.created",
        "timestamp": f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}.000000+00:00",
        "data": json.dumps({"task_id": f"task-{i}", "priority": "high", "payload": payload}),
    }


def fill(r: redis.Redis, key: str, count: int, pad: int = 0) -> None:
    for start in range(0, count, BATCH):
        pipe = r.pipeline(transaction=False)
        for i in range(start, min(count, start + BATCH)):
            pipe.xadd(key, envelope(i, pad))
        pipe.execute()


def deliver(r: redis.Redis, key: str, count: int) -> None:
    """Leave `count` entries pending in GROUP, spread over the consumers, never acked."""
    r.xgroup_create(key, GROUP, id="0")
    for n, start in enumerate(range(0, count, BATCH)):
        size = min(BATCH, count - start)
        r.xreadgroup(GROUP, CONSUMERS[n % len(CONSUMERS)], {key: ">"}, count=size)


def many_streams(r: redis.Redis, count: int) -> None:
    """`count` one-entry streams; every tenth has a group holding its entry (for the health
    summary's pipeline)."""
    for start in range(0, count, BATCH // 4):
        pipe = r.pipeline(transaction=False)
        for i in range(start, min(count, start + BATCH // 4)):
            key = f"bench:ov:{i:06d}"
            pipe.xadd(key, envelope(i))
            if i % 10 == 0:
                pipe.xgroup_create(key, GROUP, id="0")
                pipe.xreadgroup(GROUP, CONSUMERS[0], {key: ">"}, count=1)
        pipe.execute()


def seed(url: str) -> dict[str, float]:
    took: dict[str, float] = {}

    def step(name: str, db: int, work: Callable[[redis.Redis], None]) -> None:
        r = redis.Redis.from_url(on_db(url, db))
        t0 = time.perf_counter()
        work(r)
        took[name] = time.perf_counter() - t0
        r.close()

    step("1,000,000 entries", DB_MAIN, lambda r: fill(r, BIG_STREAM, 1_000_000))
    step("1,000 entries", DB_MAIN, lambda r: fill(r, SMALL_STREAM, 1_000))
    step(
        "100,000 pending",
        DB_MAIN,
        lambda r: (fill(r, BIG_PEL, 100_000), deliver(r, BIG_PEL, 100_000)),
    )
    step("100 pending", DB_MAIN, lambda r: (fill(r, SMALL_PEL, 100), deliver(r, SMALL_PEL, 100)))
    step(
        "100 pending of 100 kB",
        DB_MAIN,
        lambda r: (fill(r, FAT_PEL, 100, pad=FAT), deliver(r, FAT_PEL, 100)),
    )
    step("10,000 streams", DB_OVERVIEW, lambda r: many_streams(r, 10_000))
    step("1,000 streams", DB_OVERVIEW_SMALL, lambda r: many_streams(r, 1_000))
    return took


# --- measuring ---------------------------------------------------------------------------


class RoundTrips:
    """Counts redis-py socket writes: one per single command, one per pipeline."""

    count = 0
    on = False
    _send = AbstractConnection.send_packed_command

    @classmethod
    def install(cls) -> None:
        def counting(conn: AbstractConnection, command: object, check_health: bool = True):
            if cls.on:
                cls.count += 1
            return cls._send(conn, command, check_health)

        AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]

    @classmethod
    @contextmanager
    def counting(cls) -> Iterator[Callable[[], int]]:
        cls.count, cls.on = 0, True
        try:
            yield lambda: cls.count
        finally:
            cls.on = False


@dataclass(frozen=True)
class Sample:
    seconds: float
    commands: Counter[str]  # calls per command during the request
    round_trips: int
    redis_us: int  # time Redis spent executing the request's commands (INFO excluded)
    rows: int  # distinct entry IDs / stream links the page showed (a sanity check)


class Probe:
    """Server-side counts from INFO commandstats, on its own connection: calls per command,
    and the microseconds Redis spent executing them (INFO itself left out)."""

    def __init__(self, url: str) -> None:
        self.r = redis.Redis.from_url(url)
        before, _ = self.snapshot()
        self.baseline = self.snapshot()[0] - before  # the probe's own INFO call

    def snapshot(self) -> tuple[Counter[str], int]:
        info = self.r.info("commandstats")
        calls = Counter({k.removeprefix("cmdstat_"): v["calls"] for k, v in info.items()})
        calls["(failed)"] = sum(
            v.get("failed_calls", 0) + v.get("rejected_calls", 0) for v in info.values()
        )
        usec = sum(v["usec"] for k, v in info.items() if k != "cmdstat_info")
        return calls, usec

    def delta(self, before: tuple[Counter[str], int]) -> tuple[Counter[str], int]:
        calls, usec = self.snapshot()
        got = calls - before[0]
        got.subtract(self.baseline)
        return +got, usec - before[1]


def measure(probe: Probe, do: Callable[[], int]) -> Sample:
    before = probe.snapshot()
    with RoundTrips.counting() as trips:
        t0 = time.perf_counter()
        rows = do()
        seconds = time.perf_counter() - t0
        round_trips = trips()
    commands, redis_us = probe.delta(before)
    return Sample(seconds, commands, round_trips, redis_us, rows)


def page(client, path: str, pattern: str) -> Callable[[], int]:
    regex = re.compile(pattern)

    def get() -> int:
        response = client.get(path)
        if response.status_code != 200:
            raise SystemExit(f"{path} answered {response.status_code}")
        return len(set(regex.findall(response.content.decode())))

    return get


def interleaved(
    probe: Probe, cases: dict[str, Callable[[], int]], rounds: int, warmup: int = 2
) -> dict[str, list[Sample]]:
    samples: dict[str, list[Sample]] = {name: [] for name in cases}
    for n in range(warmup + rounds):
        for name, do in cases.items():
            sample = measure(probe, do)
            if n >= warmup:
                samples[name].append(sample)
    return samples


# --- reporting ---------------------------------------------------------------------------


def median_ms(samples: list[Sample]) -> float:
    return statistics.median(s.seconds for s in samples) * 1000


def stable(name: str, samples: list[Sample]) -> Sample:
    """The page's commands and round trips must be the same on every run."""
    first = samples[0]
    for s in samples[1:]:
        if s.commands != first.commands or s.round_trips != first.round_trips:
            failures.append(
                f"{name}: commands changed between runs: {first.commands} / {s.commands}"
            )
            break
    if first.commands.get("(failed)"):
        failures.append(f"{name}: {first.commands['(failed)']} failed or rejected calls")
    return first


def breakdown(commands: Counter[str]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(commands.items()))


def table(title: str, samples: dict[str, list[Sample]]) -> dict[str, Sample]:
    print(f"\n== {title} ==")
    print(
        f"{'':40} {'median ms':>9} {'min ms':>8} {'redis ms':>8} {'commands':>8} "
        f"{'trips':>5} {'rows':>5}"
    )
    firsts = {}
    for name, runs in samples.items():
        s = firsts[name] = stable(name, runs)
        low = min(r.seconds for r in runs) * 1000
        redis_ms = statistics.median(r.redis_us for r in runs) / 1000
        print(
            f"{name:40} {median_ms(runs):9.2f} {low:8.2f} {redis_ms:8.2f} "
            f"{s.commands.total():8,} {s.round_trips:5} {s.rows:5}"
        )
    for name, s in firsts.items():
        print(f"  {name}: {breakdown(s.commands)}")
    return firsts


def pair(title: str, samples: dict[str, list[Sample]], rows: int) -> None:
    firsts = table(title, samples)
    (a, sa), (b, sb) = firsts.items()
    equal = sa.commands == sb.commands and sa.round_trips == sb.round_trips
    ratio = median_ms(samples[a]) / median_ms(samples[b])
    print(
        f"  time ratio {a} / {b}: {ratio:.2f} (target <= 1.5)   "
        f"same commands and round trips: {'yes' if equal else 'NO'}"
    )
    if not equal:
        failures.append(f"{title}: {breakdown(sa.commands)} vs {breakdown(sb.commands)}")
    for name, s in firsts.items():
        if s.rows < rows:
            failures.append(f"{name}: showed {s.rows} rows, expected {rows}")


# --- the three comparisons ---------------------------------------------------------------


def entries(client, probe: Probe, rounds: int) -> None:
    ids = r"/entries/(\d+-\d+)/"
    cases = {
        f"entries page, {n}": page(client, f"/streams/{key}/?size={PAGE}", ids)
        for n, key in (("1,000,000 entries", BIG_STREAM), ("1,000 entries", SMALL_STREAM))
    }
    pair(
        f"Entries page (size={PAGE}), interleaved x{rounds}",
        interleaved(probe, cases, rounds),
        PAGE,
    )


def search(client, probe: Probe, rounds: int) -> None:
    """A search that matches nothing reads its whole budget (SEARCH_BUDGET, 10,000 entries),
    however long the stream: the same commands and time at 100,000 and 1,000,000 entries."""
    ids = r"/entries/(\d+-\d+)/"
    cases = {
        f"search (no match), {n}": page(client, f"/streams/{key}/?q=no-such-text", ids)
        for n, key in (("1,000,000 entries", BIG_STREAM), ("100,000 entries", BIG_PEL))
    }
    pair(f"Search looking at 10,000 entries, interleaved x{rounds}",
         interleaved(probe, cases, rounds), 0)


def pending(client, probe: Probe, rounds: int) -> None:
    ids = r"/entries/(\d+-\d+)/"
    path = "/streams/{}/groups/" + GROUP + "/?size=" + str(PAGE)
    cases = {
        f"pending page, {n}": page(client, path.format(key), ids)
        for n, key in (("100,000 pending", BIG_PEL), ("100 pending", SMALL_PEL))
    }
    pair(
        f"Pending page (size={PAGE}), interleaved x{rounds}",
        interleaved(probe, cases, rounds),
        PAGE,
    )
    # Not in the list: the IDLE filter. Redis scans the whole PEL for it (XPENDING
    # with IDLE is O(pending) when few match), so this pair shows what Redis itself costs.
    cases = {
        f"pending ?idle=1h, {n}": page(client, path.format(key) + "&idle=1h", ids)
        for n, key in (("100,000 pending", BIG_PEL), ("100 pending", SMALL_PEL))
    }
    pair(
        f"Pending page filtered by idle >= 1h (matches none), interleaved x{rounds}",
        interleaved(probe, cases, rounds),
        0,
    )
    # Not in the list either: entry size. The page shows only IDs and counters, but
    # checks that each pending entry still exists with XRANGE id id, which returns its body.
    cases = {
        f"pending page, 100 pending, {n}": page(client, path.format(key), ids)
        for n, key in (("100 kB entries", FAT_PEL), ("small entries", SMALL_PEL))
    }
    pair(
        f"Pending page (size={PAGE}), 100 kB vs small entries, interleaved x{rounds}",
        interleaved(probe, cases, rounds),
        PAGE,
    )


def overview(client, probe: Probe, url: str, rounds: int) -> None:
    from django.conf import settings

    from streams_admin import overview as overview_model
    from streams_admin import streams

    links = r'href="/streams/(bench:ov:\d+)/"'
    # Every request computes: served from the page's cache (OVERVIEW_FRESHNESS), a round
    # would count no command at all.
    settings.STREAMS_ADMIN = {**getattr(settings, "STREAMS_ADMIN", {}), "OVERVIEW_FRESHNESS": 0}
    bare = redis.Redis.from_url(on_db(url, DB_OVERVIEW), socket_timeout=2.0)

    def bare_scan() -> int:
        return len(list(bare.scan_iter(match="*", count=1000, _type="stream")))

    def read_model() -> int:
        return len(overview_model.overview(streams.server()).streams)

    def pointed(db: int, do: Callable[[], int]) -> Callable[[], int]:
        def run() -> int:
            settings.REDIS_URL = on_db(url, db)  # the app reads it at every call
            return do()

        return run

    cases = {
        "bare SCAN TYPE stream, 10,000 streams": bare_scan,
        "read model overview(), 10,000 streams": pointed(DB_OVERVIEW, read_model),
        "overview page, 10,000 streams": pointed(DB_OVERVIEW, page(client, "/", links)),
        "overview page, 1,000 streams": pointed(DB_OVERVIEW_SMALL, page(client, "/", links)),
    }
    samples = interleaved(probe, cases, rounds)
    firsts = table(f"Overview (page of 50), interleaved x{rounds}", samples)
    names = list(firsts)
    scan, big, small = firsts[names[0]], firsts[names[2]], firsts[names[3]]
    for name in names[1:]:
        s = firsts[name]
        extra = s.round_trips - s.commands["scan"]
        print(
            f"  {name}: {s.commands['scan']} SCAN + {extra} other round trips "
            f"(INFO, summaries script, the page's XINFO, health pipeline)"
        )
        if extra > 4:
            failures.append(f"{name}: {extra} round trips besides SCAN (per-stream?)")
    if big.round_trips - big.commands["scan"] != small.round_trips - small.commands["scan"]:
        failures.append("overview: non-SCAN round trips differ between 10,000 and 1,000 streams")
    if big.commands["scan"] != scan.commands["scan"]:
        failures.append("overview: SCAN calls differ from the bare SCAN of the same keys")
    page_ms, scan_ms = median_ms(samples[names[2]]), median_ms(samples[names[0]])
    small_ms = median_ms(samples[names[3]])
    print(
        f"  overview page / bare SCAN: {page_ms / scan_ms:.1f}x   "
        f"10,000 / 1,000 streams: {page_ms / small_ms:.1f}x time, "
        f"{big.commands.total() / small.commands.total():.1f}x commands"
    )
    bare.close()


# --- main --------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    rounds = parser.parse_args().rounds
    server = RedisServer().start()
    try:
        started = time.perf_counter()
        took = seed(server.url)
        info = redis.Redis.from_url(server.url).info()
        print(
            f"redis-server {info['redis_version']} on port {server.port}, "
            f"{os.cpu_count()} CPUs, used_memory {info['used_memory_human']}"
        )
        print("seeded: " + ", ".join(f"{k} {v:.1f}s" for k, v in took.items()))
        RoundTrips.install()
        (client, _), probe = django_client(server.url), Probe(server.url)
        from streams_admin import acl

        # The ACL check (one ACL DRYRUN pipeline per key, answers kept 10 s) would make a
        # page's first request differ from the next: left out, as INFO is.
        acl.forbidden = lambda actions, key: {}
        entries(client, probe, rounds)
        search(client, probe, rounds)
        pending(client, probe, rounds)
        overview(client, probe, server.url, rounds)
        print(f"\ntotal {time.perf_counter() - started:.0f}s")
    finally:
        server.stop()
    for failure in failures:
        print("FAIL:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
