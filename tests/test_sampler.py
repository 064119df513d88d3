"""The sampler on real servers: lag rises while a real bus worker is stopped and falls once it
runs again; one lease holder writes, another process stands by and takes over; a Redis outage
leaves a gap (None, never zeros) and the status says so, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from streams_admin.redis import server_from_info
from streams_admin.trends import history, sampler
from streams_admin.trends.models import Sample, SamplerLease
from tests.bus.test_worker import STREAM, publish, spawn
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]


def wait_for(check, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.django_db(transaction=True)
def test_lag_rises_while_the_worker_is_stopped_and_falls_when_it_runs(r, redis_server):
    workers: list[subprocess.Popen[bytes]] = []
    try:
        publish(r, 1, 0.0)
        worker = spawn(workers, redis_server.url)  # creates its group, handles the event
        wait_for(lambda: r.scard("test:done") == 1)
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        group = r.xinfo_groups(STREAM)[0]["name"]
        s = sampler.Sampler(10)
        t0 = int(time.time()) // 10 * 10
        for i in range(4):  # 5 events published per sample while no worker runs
            publish(r, 5, 0.0)
            assert s.cycle(t0 + 10 * i)
        spawn(workers, redis_server.url)
        wait_for(lambda: r.scard("test:done") == 21)
        wait_for(lambda: r.xinfo_groups(STREAM)[0]["pending"] == 0)
        assert s.cycle(t0 + 40)
    finally:
        for process in workers:
            process.kill()
            process.wait(10)
    found = history.history("default", STREAM.encode(), group, range="15m", now=t0 + 40)
    assert found.values["lag"][-5:] == (5, 10, 15, 20, 0)
    assert found.values["time_lag_s"][-1] == 0 and found.values["time_lag_s"][-2] > 0
    if server_from_info(r.info()).has_lag:
        assert found.values["out_rate"][-1] == 2.0  # 20 entries in 10 s
    else:  # Redis 6.2 reports no entries-read: no out-rate, rather than a wrong one
        assert "out_rate" not in found.values


@pytest.mark.django_db(transaction=True)
def test_one_lease_holder_writes_and_another_takes_over_when_it_stops(r):
    r.xadd(b"s\xff", {b"f": b"v"})
    a, b = sampler.Sampler(10), sampler.Sampler(10)
    t0 = int(time.time()) // 10 * 10  # in the period being sampled: not packed yet
    assert a.cycle(t0) and not b.cycle(t0)
    assert Sample.objects.count() == 1
    assert sampler.state().running and sampler.state().holder == a.holder
    SamplerLease.objects.update(expires_at=time.time() - 1)  # a stopped renewing 30 s ago
    assert b.cycle(t0 + 10) and not a.cycle(t0 + 10)
    a.release()  # a no-op: b holds it
    assert sampler.state().holder == b.holder and sampler.state().running
    b.release()
    assert not sampler.state().running
    assert list(Sample.objects.values_list("t", flat=True).order_by("t")) == [t0, t0 + 10]


@pytest.mark.django_db(transaction=True)
def test_a_failing_target_is_reported_and_tried_again_with_backoff(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing answers there
    s = sampler.Sampler(10)
    assert s.cycle(1000)
    (status,) = sampler.state().targets
    assert status.failing and "Error" in status.last_error and status.last_success is None
    assert not s._due(sampler.targets.current())  # backing off: not tried next cycle


READ = """
import json, time
from django.test import override_settings
from streams_admin.trends import history, sampler
with override_settings(STREAMS_ADMIN={"SAMPLE_INTERVAL": 1}):
    found = history.history("default", b"orders", b"billing", range="15m")
    # minute and 10-minute points of samples not packed yet: downsampled by the database
    longer = [history.history("default", b"orders", b"billing", range=r).values.get("worst_lag")
              for r in ("24h", "7d")]
print(json.dumps({"times": found.times, "lag": found.values.get("lag"), "longer": longer,
                  "state": [vars(t) for t in sampler.state().targets],
                  "running": sampler.state().running}))
"""


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_an_outage_is_a_gap_and_two_samplers_write_once(database, request, tmp_path):
    url = (f"sqlite:///{tmp_path / 'db.sqlite3'}" if database == "sqlite"
           else request.getfixturevalue("postgres_url"))
    server = RedisServer().start()
    client = redis.Redis.from_url(server.url)
    env = {**os.environ, "SECRET_KEY": "sampler", "REDIS_URL": server.url, "DATABASE_URL": url,
           "DJANGO_SETTINGS_MODULE": "dashboard.settings", "LOG_LEVEL": "INFO"}
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=120)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    samplers = [subprocess.Popen([*manage, "sampler", "--interval", "1"], cwd=ROOT, env=env,
                                 stdout=log.open("wb"), stderr=subprocess.STDOUT)
                for log in logs]
    try:
        add_backlog(client)
        wait_for(lambda: any(": sampling" in log.read_text() for log in logs), 60)
        time.sleep(5)
        server.stop()
        time.sleep(4)
        server.start()
        add_backlog(client)
        time.sleep(10)  # backoff: at most 6 intervals
    finally:
        for process in samplers:
            process.send_signal(signal.SIGTERM)
            process.wait(20)
        client.close()
        server.stop()
    out = subprocess.run([*manage, "shell", "-c", READ], cwd=ROOT, env=env, check=True,
                         capture_output=True, timeout=120, text=True)
    found = json.loads(out.stdout.splitlines()[-1])
    sampled = [i for i, v in enumerate(found["lag"]) if v is not None]
    lags = found["lag"][sampled[0]:sampled[-1] + 1]
    assert set(lags) == {7, None}, lags  # the backlog, or nothing: never a zero
    for worst in found["longer"]:
        assert set(worst) == {7, None}, worst
    gap = max(len(run) for run in "".join("x" if v is None else "." for v in lags).split("."))
    assert gap >= 3, lags  # 4 s without Redis; other single misses are slow cycles
    (status,) = found["state"]
    assert status["last_error"] and status["last_success"] > status["last_error_at"]
    assert not found["running"]  # both stopped: the lease was released
    texts = [log.read_text() for log in logs]
    assert sum("standing by" in t for t in texts) >= 1, texts
    assert not any("cycle failed" in t or "Traceback" in t for t in texts), texts


def add_backlog(client: redis.Redis) -> None:
    client.xgroup_create(b"orders", b"billing", id="0", mkstream=True)
    for i in range(7):
        client.xadd(b"orders", {b"i": str(i).encode()})


@pytest.mark.django_db(transaction=True)
def test_a_target_down_leaves_the_others_sampled(r, redis_server, settings, tmp_path):
    path = tmp_path / "targets.toml"
    path.write_text(f'[targets.up]\nurl = "{redis_server.url}"\n'
                    '[targets.down]\nurl = "redis://127.0.0.1:1/0"\n')
    settings.STREAMS_ADMIN_TARGETS = str(path)
    r.xadd(b"orders", {b"f": b"v"})
    t0 = int(time.time()) // 10 * 10
    assert sampler.Sampler(10).cycle(t0)
    states = {s.target: s for s in sampler.state().targets}
    assert states["up"].last_success and not states["up"].failing and states["up"].streams == 1
    assert states["down"].failing and states["down"].last_success is None
    found = history.history("up", b"orders", range="15m", now=t0)
    assert found.values["length"][-1] == 1
    assert history.history("down", b"orders", range="15m", now=t0).values == {}
