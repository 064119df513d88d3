"""The group page with a 7-day chart vs without (issue 13: server time ratio <= 1.5), side by
side in one run, on a real history: 7 days of samples of the stream, its group and its
consumers, written in the sampler's layout (tests/history_fill.py).

The page brings its range's chart data (embedded: trends/views.py embedded, charts.js draws it
without a second request); another range is fetched. Cases, interleaved, the median of
--rounds each:
- the page without charts: the same page with templates/streams_admin/_charts.html empty
  (a template loader in front), i.e. before the charts existed;
- the page with its 7-day charts (?range=7d), cold: the JSON kept by trends/views.py forgotten
  before each run (the first viewer in a 10-minute step: the chunks decoded by the step before
  are kept, trends/history.py _unpacked, but not today's, into which the sampler folded a
  period since: they are given new bytes, untimed);
- the same, first in the process: no decoded chunk kept (a process just started);
- the same, kept: another viewer within the step gets the JSON computed for the first;
- the page with its 24-hour charts (minute points), cold and first; with its 1-hour charts
  (the default range), cold;
- a range switch: the 7-day JSON fetched alone, cold and kept.
Requests go through Django's test client (the whole middleware stack) against a private
redis-server and a throwaway SQLite file. Ratios are printed, not asserted: timings are noisy.

    .venv/bin/python bench/trends_page.py [--rounds 21] [--consumers 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.dashboard_client import django_client  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

STREAM, GROUP = "orders", "billing"
EMPTY_CHARTS = "".join(f"{{% partialdef {name} %}}{{% endpartialdef %}}" for name in (
    "head", "ranges", "stream", "group", "spark-head", "spark", "overview"))


def seed(r: redis.Redis, consumers: int) -> list[bytes]:
    """The stream of a busy group: 2,000 entries, each consumer holding 20 pending."""
    pipe = r.pipeline(transaction=False)
    for n in range(2000):
        pipe.xadd(STREAM, {"event_type": "order.created", "n": str(n)})
    pipe.execute()
    r.xgroup_create(STREAM, GROUP, id="0")
    names = [f"worker-{i}".encode() for i in range(consumers)]
    for name in names:
        r.xreadgroup(GROUP, name, {STREAM: ">"}, count=20)
    return names


def get(client: Any, url: str) -> int:
    response = client.get(url)
    if response.status_code != 200:
        raise SystemExit(f"{url} answered {response.status_code}")
    return len(response.content)


def without_charts() -> Callable[[bool], None]:
    """A switch that makes {% include "streams_admin/_charts.html#..." %} render nothing: the
    page as it was before the charts (no markup, no scripts, no sampler-state queries)."""
    from django.template import loader_tags

    render = loader_tags.IncludeNode.render
    off = [False]

    def include(self: Any, context: Any) -> Any:
        if off[0] and "_charts.html" in str(self.template.var):
            return ""
        return render(self, context)

    loader_tags.IncludeNode.render = include  # type: ignore[method-assign]
    return lambda value: off.__setitem__(0, value)


Case = tuple[Callable[[], None] | None, Callable[[], int]]  # (untimed preparation, timed run)


def cases(client: Any) -> dict[str, Case]:
    from streams_admin.trends import history, views

    page = f"/streams/{STREAM}/groups/{GROUP}/"
    data = page + "history/"
    switch = without_charts()

    def without() -> int:
        switch(True)
        try:
            return get(client, page)
        finally:
            switch(False)

    def cold(range_: str, first: bool = False, fetched: bool = False) -> Case:
        """The page (or its JSON alone: fetched) with the chart data computed anew. Before
        each run, untimed: cold, the previous step's viewer (its decoded chunks kept) and then
        the sampler folding a period into each series' newest chunk (new bytes: decoded
        anew); first, nothing decoded kept."""
        url = f"{data if fetched else page}?range={range_}"

        def prepare() -> None:
            views.forget()
            if first:
                history._unpacked.cache_clear()
                return
            get(client, url)
            views.forget()
            folded(history.RANGES[range_])

        return prepare, lambda: get(client, url)

    return {"page without charts": (None, without), "page + 7-day charts, cold": cold("7d"),
            "page + 7-day charts, first": cold("7d", first=True),
            "page + 7-day charts, kept": (None, lambda: get(client, f"{page}?range=7d")),
            "page + 24-hour charts, cold": cold("24h"),
            "page + 24-hour charts, first": cold("24h", first=True),
            "page + 1-hour charts, cold": cold("1h"),
            "  switch: 7-day JSON, cold": cold("7d", fetched=True),
            "  switch: 7-day JSON, kept": (None, lambda: get(client, f"{data}?range=7d"))}


FOLDS = [0]


def folded(seconds: int) -> None:
    """Each series' newest chunk of the resolution a range reads gets new bytes of the same
    points (JSON allows leading spaces), as when the sampler folds a period into it."""
    from django.db.models import Max

    from streams_admin.trends import history
    from streams_admin.trends.models import Chunk

    FOLDS[0] += 1
    chunks = Chunk.objects.filter(resolution=history._resolution(seconds))
    newest = chunks.values("series_id").annotate(start=Max("start"))
    for row in newest:
        chunk = chunks.get(series_id=row["series_id"], start=row["start"])
        chunk.data = zlib.compress(b" " * FOLDS[0] + zlib.decompress(bytes(chunk.data)).lstrip())
        chunk.save(update_fields=["data"])


def measure(runs: dict[str, Case], rounds: int, warmup: int = 3) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in runs}
    for n in range(warmup + rounds):
        for name, (prepare, run) in runs.items():
            if prepare is not None:
                prepare()
            began = time.perf_counter()
            run()
            if n >= warmup:
                times[name].append(time.perf_counter() - began)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--consumers", type=int, default=10,
                        help="consumers of the group, each with 7 days of history")
    args = parser.parse_args()
    server = RedisServer().start()
    try:
        names = seed(redis.Redis.from_url(server.url), args.consumers)
        client, _ = django_client(server.url)
        from streams_admin import acl
        from tests.history_fill import fill

        acl.forbidden = lambda actions, key: {}  # as bench/pages.py: not part of the figure
        began = time.perf_counter()
        written = fill("default", STREAM.encode(), GROUP.encode(), names, days=7)
        print(f"redis-server on port {server.port}, {os.cpu_count()} CPUs; history: "
              f"{written:,} samples of 1 stream, 1 group, {len(names)} consumers over 7 days "
              f"written in {time.perf_counter() - began:.1f} s")
        runs = cases(client)
        sizes = {name: run() for name, (_, run) in runs.items()}
        times = measure(runs, args.rounds)
    finally:
        server.stop()
    base = statistics.median(times["page without charts"])
    print(f"\ngroup page, 7-day chart vs without, interleaved x{args.rounds} (median):")
    print(f"  {'case':32} {'median ms':>10} {'p90 ms':>8} {'ratio':>6} {'bytes':>9}")
    for name, runs_ in times.items():
        ordered = sorted(runs_)
        median = statistics.median(ordered)
        p90 = ordered[int(0.9 * (len(ordered) - 1))]
        print(f"  {name:32} {median * 1000:10.1f} {p90 * 1000:8.1f} {median / base:5.2f}x"
              f" {sizes[name]:9,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
