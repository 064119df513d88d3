"""Live counts over real websockets and a real Redis: one sampler per process, diffs, the read
model's lag, outages reported and survived."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model

from streams_admin import stats, streams
from streams_admin.names import to_token
from streams_admin.stats import StatsConsumer
from tests.redis_server import needs_lag

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def staff():
    return get_user_model().objects.create_user("op", password="pw", is_staff=True)


@pytest.fixture
def fast(settings) -> None:
    settings.STREAMS_ADMIN = {"STATS_INTERVAL": 0.2}


async def open_stats(user, *keys: bytes) -> WebsocketCommunicator:
    query = "&".join(f"key={to_token(key)}" for key in keys)
    communicator = WebsocketCommunicator(StatsConsumer.as_asgi(), f"/ws/stats/?{query}")
    communicator.scope["user"] = user
    assert (await communicator.connect(timeout=10))[0]
    return communicator


async def until(condition: Callable[[], bool], deadline: float = 20.0) -> None:
    async with asyncio.timeout(deadline):
        while not condition():
            await asyncio.sleep(0.05)


async def next_of(communicator: WebsocketCommunicator, kind: str, timeout: float = 10) -> dict:
    """The next message of a type (pings are skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            message = await communicator.receive_json_from(timeout=timeout)
            if message["type"] == kind:
                return message


def sampler_connections(r: redis.Redis) -> int:
    return sum(1 for c in r.client_list() if c["name"] == stats.CLIENT_NAME)


async def test_stats_report_counts_and_rate(r: redis.Redis, staff) -> None:
    r.xadd("s", {"n": "0"})
    r.xgroup_create("s", "g", id="0")
    socket = await open_stats(staff, b"s")
    first = await socket.receive_json_from(timeout=3)
    assert first["streams"]["s"]["length"] == 1
    assert first["streams"]["s"]["groups"]["g"]["lag"] == 1
    for n in range(5):
        r.xadd("s", {"n": str(n)})
    await socket.send_to(text_data="not json")  # ignored: the counts go on
    await socket.send_to(bytes_data=b"\xff")
    second = await socket.receive_json_from(timeout=3)
    assert second["streams"]["s"]["length"] == 6 and second["streams"]["s"]["rate"] > 0
    await socket.disconnect()


async def test_non_staff_sockets_are_refused(r, django_user_model) -> None:
    anonymous = WebsocketCommunicator(StatsConsumer.as_asgi(), "/ws/stats/?key=s")
    assert (await anonymous.connect())[0] is False
    viewer = await asyncio.to_thread(django_user_model.objects.create_user, "v", password="pw")
    plain = WebsocketCommunicator(StatsConsumer.as_asgi(), "/ws/stats/?key=s")
    plain.scope["user"] = viewer
    assert (await plain.connect())[0] is False


async def test_stats_lag_leaves_out_entries_trimmed_before_the_group_read_them(r, staff) -> None:
    for n in range(10):
        r.xadd("s", {"n": str(n)})
    r.xgroup_create("s", "g", id="0")
    r.xreadgroup("g", "c", {"s": ">"}, count=2)
    r.xtrim("s", maxlen=5, approximate=False)
    needs_lag(r)
    # Redis 7 and Valkey count the 3 it will never deliver; Redis 8.2 does not.
    assert r.xinfo_groups("s")[0]["lag"] in (8, 5)
    socket = await open_stats(staff, b"s")
    counts = await socket.receive_json_from(timeout=3)
    assert counts["streams"]["s"]["groups"]["g"]["lag"] == 5
    await socket.disconnect()


async def test_lag_is_the_stream_pages_figure_even_where_redis_gives_none(r, staff, settings):
    """XDEL past a group's position: Redis gives no lag; the page counts it, and so do the live
    counts, on a one-stream page and on the overview's many-stream socket alike."""
    needs_lag(r)
    ids = [r.xadd("s", {"n": str(n)}) for n in range(8)]
    r.xgroup_create("s", "g", id="0")
    r.xgroup_create("s", "late", id="0")
    r.xreadgroup("g", "c", {"s": ">"}, count=1)
    r.xdel("s", ids[3])
    r.xadd("other", {"n": "1"})
    assert r.xinfo_groups("s")[0]["lag"] is None
    for limit in (1000, 3):  # counted in full, and cut at the limit ("≥ 3")
        settings.STREAMS_ADMIN = {"LAG_COUNT_LIMIT": limit}
        page = await asyncio.to_thread(lambda: streams.stream(b"s", streams.server()))
        for keys in ((b"s",), (b"s", b"other")):
            socket = await open_stats(staff, *keys)
            groups = (await socket.receive_json_from(timeout=3))["streams"]["s"]["groups"]
            for g in page.groups:
                live = groups[to_token(g.name)]
                assert (live["lag"], live["lag_at_least"]) == (g.lag,
                                                               g.lag_counted == "at least")
            await socket.disconnect()
    assert page.groups[0].lag == 3 and page.groups[0].lag_counted == "at least"


async def test_a_socket_gets_everything_first_then_only_what_changed(r, staff, fast) -> None:
    r.xadd("a", {"n": "0"})
    r.xadd("b", {"n": "0"})
    socket = await open_stats(staff, b"a", b"b")
    first = await next_of(socket, "stats")
    assert set(first["streams"]) == {"a", "b"}
    # The next tick gives each stream its rate (none on a first look); then all is quiet.
    sampler = stats.sampler()
    async with asyncio.timeout(20):
        while not await socket.receive_nothing(timeout=0.5):
            await socket.receive_json_from()
    seen = sampler.samples
    await until(lambda: sampler.samples >= seen + 3)
    assert await socket.receive_nothing(timeout=0.3)  # unchanged ticks send nothing

    r.xadd("a", {"n": "1"})
    changed = await next_of(socket, "stats")
    assert list(changed["streams"]) == ["a"] and changed["streams"]["a"]["length"] == 2
    await socket.disconnect()


async def test_two_pages_get_only_their_own_streams(r, staff, fast) -> None:
    r.xadd("a", {"n": "0"})
    r.xadd("b", {"n": "0"})
    one, two = await open_stats(staff, b"a"), await open_stats(staff, b"b")
    for n in range(3):
        r.xadd("a", {"n": str(n)})
        r.xadd("b", {"n": str(n)})
        assert list((await next_of(one, "stats"))["streams"]) == ["a"]
        assert list((await next_of(two, "stats"))["streams"]) == ["b"]
    await one.disconnect()
    await two.disconnect()


async def test_hundreds_of_sockets_share_one_connection(r, staff) -> None:
    for n in range(50):
        r.xadd(f"s{n}", {"n": "0"})
    before = len(r.client_list())
    sockets = [await open_stats(staff, *(f"s{(i + j) % 50}".encode() for j in range(10)))
               for i in range(500)]
    for socket in sockets:
        assert len((await next_of(socket, "stats"))["streams"]) == 10
    assert sampler_connections(r) == 1
    assert len(r.client_list()) - before <= 3
    sampler = stats.sampler()
    for socket in sockets:
        await socket.disconnect()
    await until(lambda: sampler_connections(r) == 0)  # the last socket gone, so is the sampler
    assert sampler.task is None


async def test_redis_restart_is_reported_and_survived(r, redis_server, staff, fast) -> None:
    r.xadd("a", {"n": "0"})
    sockets = [await open_stats(staff, b"a"), await open_stats(staff, b"a")]
    for socket in sockets:
        await next_of(socket, "stats")
    await asyncio.to_thread(redis_server.stop)
    try:
        for socket in sockets:
            state = await next_of(socket, "state")
            assert state["state"] == "reconnecting" and "Redis" in state["reason"]
    finally:
        await asyncio.to_thread(redis_server.start)
    fresh = redis.Redis.from_url(redis_server.url)
    fresh.xadd("a", {"n": "after"})
    fresh.xadd("a", {"n": "after"})
    fresh.close()
    for socket in sockets:
        assert (await next_of(socket, "state", timeout=30))["state"] == "live"
        figures = (await next_of(socket, "stats"))["streams"]["a"]
        while figures is None:  # sampled before the writes: the restarted Redis was empty
            figures = (await next_of(socket, "stats"))["streams"]["a"]
        assert figures["length"] == 2
        await socket.disconnect()


async def test_a_stream_that_does_not_exist_is_said_so(r, staff, fast) -> None:
    socket = await open_stats(staff, b"deleted")
    assert await socket.receive_json_from(timeout=5) == {"type": "stats",
                                                         "streams": {"deleted": None}}
    r.xadd("deleted", {"n": "back"})
    assert (await next_of(socket, "stats"))["streams"]["deleted"]["length"] == 1
    r.delete("deleted")
    assert (await next_of(socket, "stats"))["streams"] == {"deleted": None}
    await socket.disconnect()


async def test_a_quiet_socket_is_pinged(r, staff, fast, monkeypatch) -> None:
    """Nothing changes, so nothing is sent; a ping keeps proxies from closing the socket."""
    monkeypatch.setattr(stats, "HEARTBEAT", 0.5)
    r.xadd("quiet", {"n": "0"})
    socket = await open_stats(staff, b"quiet")
    assert (await next_of(socket, "stats"))["streams"]["quiet"]["length"] == 1
    assert (await next_of(socket, "ping"))["type"] == "ping"
    await socket.disconnect()
