"""Trends: what measuring the present costs, side by side in one run (issue 13).

- A `/metrics` scrape over 1,000 streams x 1 group vs the overview page over the same
  streams: time ratio, Redis commands, round trips per scrape (they must not grow with the
  streams: 1,000 and 100 streams compare), series and bytes.
- The history: a sampling cycle over 1,000 streams (round trips, CPU per interval) and the
  SQLite file of 1,000 groups over 7 days (bench/trends_history.py, run after the above).

Requests go through Django's test client against a private redis-server; commands come from
`INFO commandstats` deltas and round trips from counting redis-py's socket writes (bench/
pages.py's probes). Cached results are off (OVERVIEW_FRESHNESS and METRICS_FRESHNESS 0), so
each request reads Redis.

    .venv/bin/python bench/trends.py [--rounds 15]

Exit status 1 when a scrape's round trips grow with the streams. Time ratios are printed,
not asserted: timings are noisy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.dashboard_client import django_client  # noqa: E402
from bench.pages import Probe, RoundTrips, Sample, interleaved, on_db  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

TOKEN = "bench-token"
DB_1000, DB_100 = 3, 4
failures: list[str] = []


def streams_with_groups(r: redis.Redis, count: int) -> None:
    """`count` streams of 20 entries, each with a group two consumers read 15 of (all still
    pending): every group lags by 5, so time lag and oldest pending have something to say."""
    pipe = r.pipeline(transaction=False)
    for i in range(count):
        key = f"bench:trend:{i:05d}"
        for n in range(20):
            pipe.xadd(key, {"event_type": "order.created", "n": str(n)})
        pipe.xgroup_create(key, "workers", id="0")
        pipe.xreadgroup("workers", "worker-1", {key: ">"}, count=10)
        pipe.xreadgroup("workers", "worker-2", {key: ">"}, count=5)
        if i % 200 == 199:
            pipe.execute()
    pipe.execute()


def set_options(**options: Any) -> None:
    from django.conf import settings

    settings.STREAMS_ADMIN = {**settings.STREAMS_ADMIN, **options}


def scrape(client: Any, url: str, db: int) -> Callable[[], int]:
    """GET /metrics with the token, on db; returns the number of samples served."""
    def get() -> int:
        from django.conf import settings

        settings.REDIS_URL = on_db(url, db)
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        if response.status_code != 200:
            raise SystemExit(f"/metrics answered {response.status_code}")
        text = response.content.decode()
        get.size = len(text)  # type: ignore[attr-defined]
        return sum(1 for line in text.splitlines() if line and not line.startswith("#"))

    return get


def overview_page(client: Any, url: str, db: int) -> Callable[[], int]:
    def get() -> int:
        from django.conf import settings

        settings.REDIS_URL = on_db(url, db)
        response = client.get("/")
        if response.status_code != 200:
            raise SystemExit(f"/ answered {response.status_code}")
        return response.content.decode().count('href="/streams/bench:trend:')

    return get


def metrics_vs_overview(client: Any, url: str, rounds: int) -> dict[str, float]:
    """The issue's figure: a /metrics scrape over 1,000 streams vs the overview page over the
    same, with round trips per scrape; returns the medians for a results table."""
    probe = Probe(on_db(url, DB_1000))
    set_options(METRICS_TOKEN=TOKEN, METRICS_FRESHNESS=0, OVERVIEW_FRESHNESS=0,
                METRICS_CONSUMERS=True, METRICS_MAX_STREAMS=1000)
    full = scrape(client, url, DB_1000)
    cases = {
        "overview page, 1,000 streams": overview_page(client, url, DB_1000),
        "/metrics, 1,000 streams": full,
        "/metrics, 1,000 streams, no per-consumer series": lean(client, url),
        "/metrics, 100 streams": scrape(client, url, DB_100),
    }
    samples = interleaved(probe, cases, rounds)
    table(f"/metrics scrape vs overview page, interleaved x{rounds}", samples)
    names = list(samples)
    page_ms, scrape_ms = median_ms(samples[names[0]]), median_ms(samples[names[1]])
    big, small = samples[names[1]][0], samples[names[3]][0]
    print(f"  /metrics / overview page: {scrape_ms / page_ms:.2f}x time "
          f"({full.size / 1024:,.0f} KiB, {samples[names[1]][0].rows:,} samples per scrape)")
    print(f"  round trips per scrape: {big.round_trips} (1,000 streams), "
          f"{small.round_trips} (100 streams); SCAN calls {big.commands['scan']}, "
          f"script calls {big.commands['evalsha']}")
    if big.round_trips - big.commands["scan"] != small.round_trips - small.commands["scan"]:
        failures.append("/metrics: round trips besides SCAN grow with the streams")
    return {"overview_ms": page_ms, "scrape_ms": scrape_ms, "ratio": scrape_ms / page_ms,
            "round_trips": big.round_trips}


def lean(client: Any, url: str) -> Callable[[], int]:
    full = scrape(client, url, DB_1000)

    def get() -> int:
        set_options(METRICS_CONSUMERS=False)
        try:
            return full()
        finally:
            set_options(METRICS_CONSUMERS=True)

    return get


def median_ms(samples: list[Sample]) -> float:
    return statistics.median(s.seconds for s in samples) * 1000


def table(title: str, samples: dict[str, list[Sample]]) -> None:
    print(f"\n{title}")
    print(f"  {'case':50} {'median ms':>10} {'p90 ms':>8} {'redis ms':>9} {'commands':>9} "
          f"{'trips':>6} {'rows':>6}")
    for name, runs in samples.items():
        times = sorted(s.seconds * 1000 for s in runs)
        first = runs[0]
        print(f"  {name:50} {statistics.median(times):10.1f} "
              f"{times[int(0.9 * (len(times) - 1))]:8.1f} "
              f"{statistics.median(s.redis_us for s in runs) / 1000:9.1f} "
              f"{first.commands.total():9,} {first.round_trips:6} {first.rows:6,}")


def history_figures(groups: int) -> None:
    """The sampling cycle and the storage of the history: bench/trends_history.py, in a process
    of its own (its SQLite file is chosen before Django starts)."""
    print(flush=True)
    subprocess.run([sys.executable, str(ROOT / "bench" / "trends_history.py"),
                    "--groups", str(groups)], check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--history-groups", type=int, default=1000,
                        help="groups of the history's storage figure (0: no history figures)")
    args = parser.parse_args()
    rounds = args.rounds
    server = RedisServer().start()
    try:
        for db, count in ((DB_1000, 1000), (DB_100, 100)):
            streams_with_groups(redis.Redis.from_url(on_db(server.url, db)), count)
        info = redis.Redis.from_url(server.url).info()
        print(f"redis-server {info['redis_version']} on port {server.port}, "
              f"{os.cpu_count()} CPUs")
        RoundTrips.install()
        client, _ = django_client(server.url)
        from streams_admin import acl

        acl.forbidden = lambda actions, key: {}  # as bench/pages.py: not part of the figure
        started = time.perf_counter()
        metrics_vs_overview(client, server.url, rounds)
        print(f"\ntotal {time.perf_counter() - started:.0f}s")
    finally:
        server.stop()
    if args.history_groups:
        history_figures(args.history_groups)
    for failure in failures:
        print("FAIL:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
