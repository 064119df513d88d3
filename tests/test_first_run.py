"""What a newcomer sees after ./bin/dashboard: demo traffic that keeps flowing whatever they
do to it, and a login they can get back into."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from django.core.management import call_command
from django.urls import reverse

from tests.redis_server import RedisServer, group_lag

ROOT = Path(__file__).resolve().parent.parent
TASKS, DOCS = b"agent:stream:task.created", b"agent:stream:document.processed"


def wait_for(what: str, condition: Callable[[], bool], log: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what}; the traffic's log:\n{log.read_text()}"
        time.sleep(0.1)


def read_by(r: redis.Redis, key: bytes, group: bytes) -> int:
    """Entries the group has read so far (0 when the stream or group is not there)."""
    try:
        groups = {g["name"]: g for g in r.xinfo_groups(key)}
    except redis.ResponseError:
        return 0
    if group not in groups:
        return 0
    if "entries-read" not in groups[group]:  # Redis 6.2: the entries up to its position
        return len(r.xrange(key, "-", groups[group]["last-delivered-id"]))
    return groups[group]["entries-read"] or 0


@pytest.fixture
def traffic(redis_server: RedisServer, tmp_path: Path) -> Iterator[tuple[redis.Redis, Path]]:
    """`manage.py demo_data --traffic`, as bin/dashboard runs it, on the suite's redis-server."""
    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    env = {**os.environ, "SECRET_KEY": "test", "REDIS_URL": redis_server.url,
           "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
           "DJANGO_SETTINGS_MODULE": "dashboard.settings"}
    log = tmp_path / "traffic.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "manage.py", "demo_data", "--traffic",
                                    "--rate", "40"], cwd=ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        yield r, log
        assert process.poll() is None, f"the traffic stopped:\n{log.read_text()}"
    finally:
        process.terminate()
        process.wait(10)
        r.close()


def keeps_flowing(r: redis.Redis, log: Path, key: bytes, group: bytes, more: int = 5) -> None:
    """New entries arrive in `key`, and its healthy group reads them."""
    length, read = r.xlen(key), read_by(r, key, group)
    wait_for(f"{key!r} grows", lambda: r.xlen(key) >= length + more, log)
    wait_for(f"{group!r} reads {key!r}", lambda: read_by(r, key, group) >= read + more, log)


def test_demo_traffic_keeps_flowing_on_every_stream(traffic) -> None:
    r, log = traffic
    wait_for("the demo streams are seeded", lambda: r.exists(TASKS, DOCS) == 2, log)
    keeps_flowing(r, log, TASKS, b"agent-group")
    keeps_flowing(r, log, DOCS, b"search-indexer")
    keeps_flowing(r, log, b"agent:stream:notification.sent", b"agent-group")
    lagging = r.xinfo_groups(DOCS)[0]
    assert lagging["name"] == b"analytics-group"
    assert group_lag(r, DOCS, lagging["name"]) > 1700  # still behind


def test_demo_traffic_outlives_a_destroyed_group_a_deleted_stream_and_a_redis_restart(
        traffic, redis_server: RedisServer) -> None:
    r, log = traffic
    wait_for("the demo streams are seeded", lambda: r.exists(TASKS, DOCS) == 2, log)
    keeps_flowing(r, log, TASKS, b"agent-group")
    r.xgroup_destroy(TASKS, b"agent-group")
    r.delete(DOCS)
    keeps_flowing(r, log, TASKS, b"agent-group")
    keeps_flowing(r, log, DOCS, b"search-indexer")

    redis_server.stop()  # nothing persisted: it comes back empty
    wait_for("the traffic notices Redis is gone", lambda: "retrying" in log.read_text(), log)
    redis_server.start()
    keeps_flowing(r, log, TASKS, b"agent-group", more=3)


# -- the login ----------------------------------------------------------------------------


def ensure_login(monkeypatch, capsys, **env: str) -> str:
    for name in ("DJANGO_SUPERUSER_USERNAME", "DJANGO_SUPERUSER_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    call_command("ensure_login")
    return capsys.readouterr().out


@pytest.mark.django_db
def test_a_second_start_says_how_to_get_back_in(client, r, monkeypatch, capsys) -> None:
    first = ensure_login(monkeypatch, capsys)
    assert first.startswith("Log in as admin / ")
    second = ensure_login(monkeypatch, capsys)
    assert "Log in with your existing superuser (admin)." in second
    assert "DJANGO_SUPERUSER_PASSWORD=<new password> ./bin/dashboard" in second

    for _ in range(10):  # forgotten, and locked out trying
        client.post(reverse("login"), {"username": "admin", "password": "guess"})
    ensure_login(monkeypatch, capsys, DJANGO_SUPERUSER_PASSWORD="remembered")
    response = client.post(reverse("login"), {"username": "admin", "password": "remembered"})
    assert response.status_code == 302
    assert client.get(reverse("streams_admin:audit")).status_code == 200
