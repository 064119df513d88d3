"""Real worker processes: SIGKILL mid-handler loses nothing; SIGTERM stops gracefully."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.bus.conftest import wait_for
from tests.redis_server import free_port, group_lag

ROOT = Path(__file__).resolve().parents[2]
STREAM = "agent:stream:job.run"


@pytest.fixture
def workers(redis_url: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def spawn(workers: list, redis_url: str, *args: str, manage: bool = True) -> subprocess.Popen:
    env = {**os.environ, "REDIS_URL": redis_url, "BUS_MIN_IDLE_MS": "500",
           "BUS_MAX_IN_FLIGHT": "4", "DJANGO_SETTINGS_MODULE": "tests.settings"}
    command = (["manage.py", "bus_worker"] if manage else ["-m", "streams_admin.bus.worker"])
    process = subprocess.Popen([sys.executable, *command, *args, "tests.bus.handlers"],
                               cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    workers.append(process)
    return process


def publish(r: redis.Redis, count: int, seconds: float) -> set[str]:
    from tests.bus import spec_clients

    spec_clients.redis_client = r
    for _ in range(count):
        spec_clients.publish_event("job.run", {"seconds": seconds})
    return {f[b"event_id"].decode() for _, f in r.xrange(STREAM)}


def members(r: redis.Redis, key: str) -> set[str]:
    return {m.decode() for m in r.smembers(key)}


async def test_sigkilled_workers_events_are_completed_by_another(workers, redis_url, r) -> None:
    published = publish(r, 40, 0.1)
    first = spawn(workers, redis_url, "--group", "g", "--name", "first")
    await wait_for(lambda: len(members(r, "test:started")) >= 8, what="first worker busy")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    held = r.xpending_range(STREAM, "g", "-", "+", 100, consumername="first")
    assert held, "the killed worker should have died holding entries"
    spawn(workers, redis_url, "--group", "g", "--name", "second", manage=False)
    await wait_for(lambda: members(r, "test:done") == published
                   and r.xpending(STREAM, "g")["pending"] == 0, timeout=60,
                   what="every event done by the second worker")
    assert len(published) == 40


async def test_sigterm_finishes_running_handlers_and_serves_metrics(workers, redis_url,
                                                                    r) -> None:
    publish(r, 6, 1.0)
    port = free_port()
    worker = spawn(workers, redis_url, "--group", "g", "--name", "w",
                   "--metrics-port", str(port))
    await wait_for(lambda: len(members(r, "test:started")) == 4, what="four handlers running")
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    assert b"events_in_flight 4.0" in metrics and b"event_processing_seconds" in metrics
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    assert members(r, "test:done") == members(r, "test:started")
    assert r.xpending(STREAM, "g")["pending"] == 0  # acks were flushed before exit
    assert group_lag(r, STREAM, "g") == 2  # the rest was never taken
