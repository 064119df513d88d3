"""The operator loop with a real bus worker process: what the dashboard claims to the worker
is processed within seconds, and re-driven dead letters are processed again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from django.urls import reverse

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[1]
STREAM, GROUP = b"agent:stream:job.run", b"agent-group"


def wait_until(condition, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def done(r: redis.Redis) -> set[str]:
    return {m.decode() for m in r.smembers("test:done")}


def test_claimed_and_redriven_entries_are_processed_by_the_worker(admin_client, r,
                                                                   redis_server) -> None:
    events = [str(uuid.uuid4()) for _ in range(4)]
    for event_id in events:
        r.xadd(STREAM, {"event_id": event_id, "event_type": "job.run",
                        "timestamp": "2026-11-28T10:00:00+00:00", "data": json.dumps({})})
    r.xgroup_create(STREAM, GROUP, id="0")
    r.xreadgroup(GROUP, "dead-1", {STREAM: ">"})  # then it died, holding all four
    env = {**os.environ, "REDIS_URL": redis_server.url, "BUS_MIN_IDLE_MS": "600000",
           "DJANGO_SETTINGS_MODULE": "tests.settings"}
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "bus_worker", "--group", "agent-group", "--name",
         "live-1", "tests.bus.handlers"], cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    try:
        # Redis 7.0 lists a consumer only once a read served it; wait for its blocked read.
        wait_until(lambda: any(c["cmd"] == "xreadgroup" for c in r.client_list()),
                   "the worker to read from the group")
        time.sleep(1.0)
        assert done(r) == set()  # the entries are the dead consumer's: nobody works on them
        first = r.xrange(STREAM, count=1)[0][0].decode()
        group = (STREAM, GROUP)
        admin_client.post(reverse("streams_admin:dead-letter", args=group), {"ids": [first]})
        admin_client.post(reverse("streams_admin:claim-idle", args=group),
                          {"from": "dead-1", "to": "live-1", "min_idle": "0"})
        wait_until(lambda: done(r) == set(events[1:]), "the claimed entries to be processed")
        wait_until(lambda: r.xpending(STREAM, GROUP)["pending"] == 0, "the worker's acks")

        dlq = b"agent:stream:deadletter:job.run"
        admin_client.post(reverse("streams_admin:redrive", args=[dlq]), {"all": "1"})
        wait_until(lambda: done(r) == set(events), "the re-driven entry to be processed")
        assert r.xlen(dlq) == 0
    finally:
        worker.terminate()
        worker.wait(15)
