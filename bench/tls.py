"""A page over TLS vs the same page without TLS: the ratio of their times (target <= 1.3).

One redis-server listens on a plain port and a TLS port (a CA and certificates made with
openssl here); the same pages of the same data are requested alternately over each URL
through Django's test client, connections warm (the dashboard keeps its clients), and the
median time per page compared. Also printed: what a new TLS connection costs (the handshake),
paid once per client, not per page.

    .venv/bin/python bench/tls.py [--rounds 40]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.dashboard_client import django_client  # noqa: E402
from tests.redis_server import free_port  # noqa: E402
from tests.tls_server import TlsRedisServer, make_certs  # noqa: E402

PAGES = {"overview": "/", "stream": "/streams/bench:orders/",
         "group": "/streams/bench:orders/groups/workers/",
         "dead letters": "/dead-letters/"}


def seed(r: redis.Redis) -> None:
    r.flushall()
    pipe = r.pipeline(transaction=False)
    for i in range(10_000):
        pipe.xadd("bench:orders", {"event_type": "order.placed", "data": f'{{"n": {i}}}'})
    for n in range(200):
        pipe.xadd(f"bench:stream:{n}", {"n": str(n)})
    pipe.execute()
    r.xgroup_create("bench:orders", "workers", id="0")
    for consumer in ("w1", "w2", "w3"):
        r.xreadgroup("workers", consumer, {"bench:orders": ">"}, count=500)


def timed(client, page: str) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    response = client.get(page)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"{page}: {response.status_code}")
    return elapsed


def handshake(url: str, options: dict[str, str], times: int = 20) -> float:
    """Median seconds to connect and PING on a new client."""
    spent = []
    for _ in range(times):
        started = time.perf_counter()
        client = redis.Redis.from_url(url, **options)
        client.ping()
        spent.append(time.perf_counter() - started)
        client.close()
    return statistics.median(spent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    os.environ["STREAMS_ADMIN_OVERVIEW_FRESHNESS"] = "0"  # each overview request is computed
    server = TlsRedisServer(make_certs(Path(tempfile.mkdtemp())), plain_port=free_port()).start()
    plain = f"redis://127.0.0.1:{server.plain_port}/0"
    try:
        seed(server.client())
        client, _ = django_client(plain)
        from django.conf import settings

        targets = {"plain": (plain, {}), "tls": (server.url, server.options)}
        print(f"{'page':<14}{'plain ms':>10}{'TLS ms':>10}{'ratio':>8}")
        ratios = []
        for name, page in PAGES.items():
            times: dict[str, list[float]] = {"plain": [], "tls": []}
            for round_ in range(args.rounds + 3):  # 3 warm-up rounds, not counted
                for kind, (url, options) in targets.items():
                    settings.REDIS_URL, settings.REDIS_OPTIONS = url, options
                    spent = timed(client, page)
                    if round_ >= 3:
                        times[kind].append(spent)
            p, t = statistics.median(times["plain"]), statistics.median(times["tls"])
            ratios.append(t / p)
            print(f"{name:<14}{p * 1000:>10.2f}{t * 1000:>10.2f}{t / p:>8.2f}")
        print(f"worst ratio {max(ratios):.2f} (target <= 1.3)")
        held = server.client().client_list()
        print(f"connections held on the server after {len(PAGES) * 2 * (args.rounds + 3)} "
              f"requests: {len(held) - 1} (reused, not one per request)")
        print(f"new connection + PING: plain {handshake(plain, {}) * 1000:.2f} ms, "
              f"TLS {handshake(server.url, server.options) * 1000:.2f} ms")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
