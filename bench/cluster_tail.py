"""Live tail on a cluster, side by side with a standalone server: connections, idle reads and
delivery latency for N tailed streams (the hub in this process, private servers).

On a cluster each primary's shard polls (one non-blocking XREAD per slot group, in one
pipeline, every tail_shard.POLL_INTERVAL when nothing came) instead of one XREAD BLOCK: this
measures what that costs. Per setup: the tail's connections (CLIENT LIST, every node), XREAD
commands per second Redis runs while nothing is written (INFO commandstats, every node), the
CPU this process (the hub) and the nodes (INFO cpu) spend meanwhile, and the median time from
XADD to the entry in a viewer's queue: for a stream idle until then, and for one written
0.1 s before (busy). The cluster runs twice, side by side under the same load: as shipped
(past tail_cluster.IDLE_BATCH quiet slot groups, those take turns, each read at least every
IDLE_EVERY-th poll), and with every group read on every poll (`no idle skip`: as before).

    .venv/bin/python bench/cluster_tail.py --streams 10 100 1000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
os.environ.setdefault("SECRET_KEY", "bench-only")

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
from django.test import override_settings  # noqa: E402

from streams_admin import consumers, tail, tail_cluster, tail_shard  # noqa: E402
from streams_admin.tail import Viewer  # noqa: E402
from tests.cluster_server import RedisCluster  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

IDLE = 3.0  # seconds of nothing written, to count the reads


def nodes_stats(urls: list[str]) -> tuple[int, int, float]:
    """(the tail's connections, XREAD calls so far, CPU seconds so far) over these nodes."""
    conns = calls = 0
    cpu = 0.0
    for url in urls:
        plain = redis.Redis.from_url(url)
        conns += sum(1 for c in plain.client_list()
                     if c["name"] in (tail.CONTROL_NAME, tail_shard.READ_NAME))
        calls += plain.info("commandstats").get("cmdstat_xread", {}).get("calls", 0)
        used = plain.info("cpu")
        cpu += float(used["used_cpu_user"]) + float(used["used_cpu_sys"])
        plain.close()
    return conns, calls, cpu


async def run(urls: list[str], writer: redis.Redis, n: int) -> dict[str, float]:
    keys = [f"bench:{n}:{i}".encode() for i in range(n)]
    for key in keys:
        writer.xadd(key, {"n": "0"})
    hub = consumers.hub()
    viewers = {key: Viewer(1 << 20) for key in keys}
    for key, viewer in viewers.items():
        await hub.join(key, viewer, None, 0)
    await asyncio.sleep(0.5)
    _, before, redis_cpu = nodes_stats(urls)
    own_cpu = time.process_time()
    await asyncio.sleep(IDLE)
    own_cpu = time.process_time() - own_cpu
    conns, after, redis_cpu_after = nodes_stats(urls)
    idle, busy = [], []
    for key in keys[:: max(1, n // 30)]:  # 30 samples
        idle.append(await delivered(writer, key, viewers[key]))  # idle since the start
        busy.append(await delivered(writer, key, viewers[key]))  # written 0.1 s ago
    for key, viewer in viewers.items():
        await hub.leave(key, viewer)
    return {"connections": conns, "xread_per_s": (after - before) / IDLE,
            "own_cpu": own_cpu / IDLE * 100,
            "redis_cpu": (redis_cpu_after - redis_cpu) / IDLE * 100,
            "latency_ms": statistics.median(idle) * 1000,
            "busy_ms": statistics.median(busy) * 1000}


async def delivered(writer: redis.Redis, key: bytes, viewer: Viewer) -> float:
    """Seconds from an XADD to key to its frame in the viewer's queue."""
    viewer.frames.clear()
    await asyncio.sleep(0.1)  # past the shard's FRAME_INTERVAL pause after a delivery
    started = time.perf_counter()
    writer.xadd(key, {"n": "1"})
    while not viewer.frames:
        await asyncio.sleep(0.001)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, nargs="+", default=[60, 600])
    args = parser.parse_args()
    server, cluster = RedisServer().start(), RedisCluster().start()
    try:
        plain = redis.Redis.from_url(server.url)
        rc = cluster.client()
        nodes = [node.url for node in cluster.nodes]
        setups = {"standalone": (server.url, [server.url], plain, tail_cluster.IDLE_EVERY),
                  "cluster": (cluster.url, nodes, rc, tail_cluster.IDLE_EVERY),
                  "cluster, no idle skip": (cluster.url, nodes, rc, 1)}
        print("| streams | setup | tail connections | XREAD/s idle | tail CPU % idle | Redis CPU % "
              "idle | XADD→queue ms, idle stream (median) | same, busy stream |")
        print("|---:|---|---:|---:|---:|---:|---:|---:|")
        for n in args.streams:
            results = {}
            for name, (url, urls, writer, every) in setups.items():
                tail_cluster.IDLE_EVERY = every
                with override_settings(REDIS_URL=url):
                    results[name] = asyncio.run(run(urls, writer, n))
                r = results[name]
                print(f"| {n} | {name} | {r['connections']} | {r['xread_per_s']:.0f} "
                      f"| {r['own_cpu']:.0f} | {r['redis_cpu']:.0f} "
                      f"| {r['latency_ms']:.1f} | {r['busy_ms']:.1f} |")
        plain.close()
        rc.close()
    finally:
        server.stop()
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
