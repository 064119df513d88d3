"""Live counts: N stats sockets on one process (each watching 10 of 50 streams, one stream
written 10 times a second) against a private redis-server. Prints the Redis connections held,
Redis commands and round trips per second, the process's CPU per second, and the messages and
bytes a socket receives per second.

    .venv/bin/python bench/stats.py --sockets 500 --seconds 10

Runs on a checkout from before stats.py too (StatsConsumer was in consumers.py then), so the
two can be compared side by side: PYTHONPATH=<old checkout> .venv/bin/python bench/stats.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, os.environ.get("PYTHONPATH") or str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
from channels.testing import WebsocketCommunicator  # noqa: E402
from django.conf import settings  # noqa: E402

from tests.redis_server import RedisServer  # noqa: E402

try:
    from streams_admin.stats import StatsConsumer
except ImportError:  # before stats.py
    from streams_admin.consumers import StatsConsumer  # type: ignore[attr-defined,no-redef]

STAFF = SimpleNamespace(is_active=True, is_staff=True)


async def listen(socket: WebsocketCommunicator, counts: list[int]) -> None:
    while True:
        text = (await socket.receive_output(timeout=3600)).get("text", "")
        counts[0] += 1
        counts[1] += len(text)


async def run(sockets: int, seconds: float) -> dict[str, float]:
    r = redis.Redis.from_url(settings.REDIS_URL)
    for n in range(50):
        r.xadd(f"s{n}", {"n": "0"})
    opened = []
    for i in range(sockets):
        query = "&".join(f"key=s{(i + j) % 50}" for j in range(10))
        socket = WebsocketCommunicator(StatsConsumer.as_asgi(), f"/ws/stats/?{query}")
        socket.scope["user"] = STAFF
        assert (await socket.connect(timeout=30))[0]
        opened.append(socket)
    for socket in opened:
        await socket.receive_output(timeout=30)  # the first, whole message
    counts = [0, 0]
    listeners = [asyncio.create_task(listen(socket, counts)) for socket in opened]
    r.config_resetstat()
    cpu, started = time.process_time(), time.monotonic()
    while time.monotonic() - started < seconds:
        r.xadd("s0", {"n": "1"})
        await asyncio.sleep(0.1)
    elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
    stats = r.info("commandstats")
    commands = sum(v["calls"] for k, v in stats.items() if k not in {"cmdstat_xadd",
                                                                      "cmdstat_config"})
    held = len(r.client_list()) - 1
    for task in listeners:
        task.cancel()
    for socket in opened:
        await socket.disconnect()
    r.close()
    return {"connections": held, "commands/s": commands / elapsed, "cpu s/s": cpu / elapsed,
            "messages/socket/s": counts[0] / sockets / elapsed,
            "bytes/socket/s": counts[1] / sockets / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sockets", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    server = RedisServer().start()
    settings.REDIS_URL = server.url
    try:
        result = asyncio.run(run(args.sockets, args.seconds))
    finally:
        server.stop()
    print(f"{StatsConsumer.__module__}.StatsConsumer, {args.sockets} sockets:")
    for name, value in result.items():
        print(f"  {name:>18}: {value:,.2f}")


if __name__ == "__main__":
    main()
