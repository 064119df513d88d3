"""Trend health and stalled consumers with a real bus worker, the real sampler and the pages:
while the worker is stopped the lag rises ("falling behind") and its consumer is stalled on the
overview and the group page; once a worker runs, "catching up" with a time to drain; caught
up, no consumer is stalled. And a lag Redis cannot give (deletions) still tells stalled."""

from __future__ import annotations

import re
import signal
import subprocess
import time

import pytest
import redis
from django.urls import reverse

from streams_admin import overview
from streams_admin.redis import server_from_info
from streams_admin.trends import health, measure, sampler
from tests.bus.test_worker import STREAM, publish, spawn
from tests.html import table
from tests.test_sampler import wait_for

KEY = STREAM.encode()


def sample_each_second(s: sampler.Sampler, seconds: int, each=lambda: None) -> int:
    """A cycle at each of the next `seconds` whole seconds (after `each`); the last slot."""
    first = int(time.time()) + 1
    for slot in range(first, first + seconds):
        each()
        time.sleep(max(0.0, slot - time.time()))
        assert s.cycle(slot)
    return first + seconds - 1


def pages(client, group: bytes) -> tuple[str, list[str], str]:
    """The overview's text, its row of STREAM, and the group page's HTML."""
    overview._flights.clear()  # noqa: SLF001 (a fresh look, not the one shared for 2 s)
    page = client.get("/").content.decode()
    row = next(row for row in table(page) if row[0] == STREAM)
    group_page = client.get(reverse("streams_admin:group", args=[KEY, group]))
    return " ".join(re.sub(r"<[^>]+>", " ", page).split()), row, group_page.content.decode()


@pytest.mark.django_db(transaction=True)
def test_a_stopped_worker_falls_behind_and_stalls_then_a_running_one_catches_up(
        r, redis_server, viewer_client, settings):
    settings.STREAMS_ADMIN = {"SAMPLE_INTERVAL": 1, "TREND_WINDOW": 8,
                              "IDLE_THRESHOLD_MS": 2000, "OVERVIEW_FRESHNESS": 0}
    workers: list[subprocess.Popen[bytes]] = []
    try:
        publish(r, 1, 0.0)
        first = spawn(workers, redis_server.url)  # creates its group, handles the event, stops
        wait_for(lambda: r.scard("test:done") == 1)
        first.send_signal(signal.SIGTERM)
        first.wait(30)
        group = r.xinfo_groups(STREAM)[0]["name"]
        dead = r.xinfo_consumers(STREAM, group)[0]["name"]
        s = sampler.Sampler(1)
        last = sample_each_second(s, 8, lambda: publish(r, 3, 0.0))  # 3 more a second

        rising = health.trend("default", KEY, group, now=last)
        assert rising.state == health.FALLING_BEHIND and rising.label == "falling behind +3/s"
        assert rising.lag == 24 and rising.per_second == pytest.approx(3)
        assert measure.snapshot().streams[0].groups[0].stalled == (dead,)  # the same rule
        whole, row, group_page = pages(viewer_client, group)
        assert "falling behind +3/s" in row[6] and "1 stalled" in row[6]
        assert "Stalled consumers 1" in whole
        # Redis 6.2 gives no lag: the summary of every stream knows that some wait, not how many
        told = "24 undelivered" if server_from_info(r.info()).has_lag else \
            "entries not yet delivered"
        assert f"while the group has {told}" in whole
        assert "falling behind +3/s" in group_page
        rows = table(group_page)  # the consumer's row, and its note under it
        below = rows[[row[0] for row in rows].index(dead.decode()) + 1]
        assert len(below) == 1
        assert re.fullmatch(r"stalled idle \d+s while the group has 24 undelivered", below[0])

        publish(r, 150, 0.3)  # a backlog a worker takes ~11 s for, 4 at a time
        spawn(workers, redis_server.url)
        wait_for(lambda: r.scard("test:started") >= 30)
        last = sample_each_second(s, 6)
        falling = health.trend("default", KEY, group, now=last)
        assert falling.state == health.CATCHING_UP, falling
        assert falling.lag and falling.drain_s == pytest.approx(falling.lag / -falling.per_second)
        assert f"catching up, ≈ {health.drain(falling.drain_s)} to drain" in falling.label
        _, row, group_page = pages(viewer_client, group)
        assert "catching up, ≈" in row[6] and "catching up, ≈" in group_page

        wait_for(lambda: r.xinfo_groups(STREAM)[0]["pending"] == 0
                 and r.scard("test:done") == 175, 60)
        sample_each_second(s, 1)
        whole, row, group_page = pages(viewer_client, group)
        assert "caught up" in row[6] and "stalled" not in row[6]
        assert "Stalled consumers none" in whole
        assert "badge bad\">stalled" not in group_page
    finally:
        for process in workers:
            process.kill()
            process.wait(10)


def test_stalled_when_redis_gives_no_lag_and_not_once_nothing_waits(
        r: redis.Redis, viewer_client, settings):
    """XDEL past the group's position: Redis 7+ gives no lag (6.2 never does); the overview's
    summary asks whether an entry waits, the group page counts them."""
    settings.STREAMS_ADMIN = {"IDLE_THRESHOLD_MS": 100, "OVERVIEW_FRESHNESS": 0}
    r.xadd(KEY, {"n": "0"})
    r.xgroup_create(KEY, b"g", id="0")
    r.xreadgroup(b"g", b"gone", {KEY: ">"}, count=1)
    r.xack(KEY, b"g", r.xrange(KEY)[0][0])
    ids = [r.xadd(KEY, {"n": str(n)}) for n in range(3)]
    r.xdel(KEY, ids[1])
    time.sleep(0.2)
    whole, row, group_page = pages(viewer_client, b"g")
    assert "1 stalled" in row[6]
    assert "idle" in whole and "while the group has entries not yet delivered" in whole
    assert "while the group has 2 undelivered" in group_page  # counted there
    r.xdel(KEY, ids[0], ids[2])  # nothing after the group's position any more
    whole, row, group_page = pages(viewer_client, b"g")
    assert "stalled" not in row[6] and "Stalled consumers none" in whole
    assert "badge bad\">stalled" not in group_page
