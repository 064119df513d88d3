"""The live tail and live counts on a real Redis Cluster (3 primaries, 3 replicas), REDIS_URL
naming one node: streams on every primary, a firehose over them all, a handful of
connections, and a failover survived."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
from django.contrib.auth import get_user_model

from streams_admin import consumers, stats, tail, tail_shard
from streams_admin.names import to_token
from tests.cluster_server import RedisCluster
from tests.test_stats import next_of, open_stats, until
from tests.test_tail_hardening import open_page

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def staff():
    return get_user_model().objects.create_user("op", password="pw", is_staff=True)


def one_key_per_primary(cluster: RedisCluster, prefix: str = "s") -> dict[int, str]:
    """A key on each primary: {port: key}."""
    keys: dict[int, str] = {}
    n = 0
    while len(keys) < 3:
        keys.setdefault(cluster.primary_of(f"{prefix}{n}").port, f"{prefix}{n}")
        n += 1
    return keys


def tail_connections(cluster: RedisCluster, names: set[str] | None = None) -> int:
    """The live tail's connections (or those named so) on every node, by CLIENT LIST."""
    names = names or {tail.CONTROL_NAME, tail_shard.READ_NAME}
    total = 0
    for node in cluster.nodes:
        if node.process is None:
            continue
        plain = redis.Redis.from_url(node.url)
        total += sum(1 for c in plain.client_list() if c["name"] in names)
        plain.close()
    return total


async def test_a_tail_of_a_stream_on_each_primary_delivers(rc, redis_cluster, staff):
    keys = one_key_per_primary(redis_cluster)
    for key in keys.values():
        rc.xadd(key, {"n": "before"})
    pages = {key: await open_page(staff, f"key={key}") for key in keys.values()}
    written = {key: rc.xadd(key, {"n": "after"}).decode() for key in keys.values()}
    for key, page in pages.items():
        await page.until(lambda page=page, key=key: written[key] in page.ids)
    for page in pages.values():
        await page.communicator.disconnect()
    assert consumers.hub().readers == {}


async def test_a_firehose_covers_every_primary_and_finds_new_streams(rc, redis_cluster, staff,
                                                                     monkeypatch):
    monkeypatch.setattr(consumers, "RESCAN", 0.3)
    keys = one_key_per_primary(redis_cluster, "fh:")
    for key in keys.values():
        rc.xadd(key, {"n": "0"})
    page = await open_page(staff, "pattern=fh:*")
    written = [rc.xadd(key, {"n": "1"}).decode() for key in keys.values()]
    await page.until(lambda: set(written) <= set(page.ids))
    # A new stream on each primary (keys the firehose has not seen yet) is picked up.
    new = one_key_per_primary(redis_cluster, "fh:new")
    later = [rc.xadd(key, {"n": "new"}).decode() for key in new.values()]
    await page.until(lambda: set(later) <= set(page.ids))
    await page.communicator.disconnect()


async def test_60_streams_are_tailed_over_a_handful_of_connections(rc, redis_cluster, staff):
    keys = [f"many:{n}" for n in range(60)]
    assert len({redis_cluster.primary_of(key).port for key in keys}) == 3
    pages = [await open_page(staff, f"key={key}") for key in keys]
    used = tail_connections(redis_cluster)
    written = [rc.xadd(key, {"n": "1"}).decode() for key in keys]
    async with asyncio.timeout(60):
        for page, entry_id in zip(pages, written, strict=True):
            await page.until(lambda page=page, entry_id=entry_id: entry_id in page.ids)
    used = max(used, tail_connections(redis_cluster))
    assert used <= 3 + 3, used  # primaries + 3
    for page in pages:
        await page.communicator.disconnect()
    assert consumers.hub().readers == {}


async def test_a_failover_says_reconnecting_then_live_and_delivers(rc, redis_cluster, staff):
    rc.xadd("orders", {"n": "0"})
    redis_cluster.wait_ok()  # the replica has the stream
    page = await open_page(staff, "key=orders")
    first = rc.xadd("orders", {"n": "1"}).decode()
    await page.until(lambda: first in page.ids)
    victim = redis_cluster.primary_of("orders")
    redis_cluster.kill(victim)
    try:
        reconnecting = await page.until_type("reconnecting", deadline=30)
        assert "not answering" in reconnecting["reason"]
        await page.until_type("live", deadline=60)
        deadline = time.monotonic() + 30
        while True:  # the client's slot map may still name the dead node for a moment
            try:
                after = rc.xadd("orders", {"n": "after failover"}).decode()
                break
            except (redis.RedisError, redis.exceptions.RedisClusterException):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
        await page.until(lambda: after in page.ids, deadline=30)
        await page.communicator.disconnect()
    finally:
        victim.start()  # back as a replica of the promoted one
        redis_cluster.wait_ok(60)


async def test_live_counts_for_streams_on_every_node(rc, redis_cluster, staff, settings):
    settings.STREAMS_ADMIN = {"STATS_INTERVAL": 0.2}
    keys = one_key_per_primary(redis_cluster)
    for port, key in keys.items():
        for _ in range(port % 5 + 1):
            rc.xadd(key, {"n": "1"})
        rc.xgroup_create(key, "g", id="0")
    communicator = await open_stats(staff, *(key.encode() for key in keys.values()))
    message = await next_of(communicator, "stats")
    figures = message["streams"]
    for port, key in keys.items():
        shown = figures[to_token(key.encode())]
        assert shown is not None and shown["length"] == port % 5 + 1
        assert shown["groups"][to_token(b"g")]["lag"] == port % 5 + 1
    # One per primary, once a tick has closed what asking for the slot map left open.
    await until(lambda: tail_connections(redis_cluster, {stats.CLIENT_NAME}) <= 3, 10)
    await communicator.disconnect()
    assert stats.sampler().task is None


def move_slot(cluster: RedisCluster, slot: int, key: str, source_port: int,
              target_port: int) -> None:
    """Reshard: the slot (and key) from one primary to another, as redis-cli would."""
    by_port = {node.port: node for node in cluster.nodes}
    src = redis.Redis.from_url(by_port[source_port].url)
    dst = redis.Redis.from_url(by_port[target_port].url)
    try:
        src_id, dst_id = src.execute_command("CLUSTER MYID"), dst.execute_command("CLUSTER MYID")
        dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
        src.execute_command("MIGRATE", "127.0.0.1", target_port, key, 0, 5000)
        dst.execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)
        src.execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)
    finally:
        src.close()
        dst.close()


async def test_a_resharded_stream_goes_on_from_its_new_primary(rc, redis_cluster, staff):
    keys = one_key_per_primary(redis_cluster)
    rc.xadd("moving", {"n": "0"})
    source = redis_cluster.primary_of("moving").port
    target = next(port for port in keys if port != source)
    page = await open_page(staff, "key=moving")
    first = rc.xadd("moving", {"n": "1"}).decode()
    await page.until(lambda: first in page.ids)
    slot = rc.keyslot("moving")
    move_slot(redis_cluster, slot, "moving", source, target)
    try:
        deadline = time.monotonic() + 30
        while redis_cluster.primary_of("moving").port != target:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        after = rc.xadd("moving", {"n": "after the move"}).decode()
        await page.until(lambda: after in page.ids, deadline=30)
        assert page.ids == [first, after]  # nothing lost, nothing twice
        await page.communicator.disconnect()
    finally:
        move_slot(redis_cluster, slot, "moving", target, source)
        redis_cluster.wait_ok(60)


async def test_a_key_of_a_firehose_turning_into_a_string_fails_alone(rc, redis_cluster, staff):
    """Streams of two slots on one primary: one becomes a string; the other goes on."""
    port = redis_cluster.primary_of("wt:0").port
    other = next(f"wt:{n}" for n in range(1, 1000) if redis_cluster.primary_of(f"wt:{n}").port
                 == port and rc.keyslot(f"wt:{n}") != rc.keyslot("wt:0"))
    rc.xadd("wt:0", {"n": "0"})
    rc.xadd(other, {"n": "0"})
    page = await open_page(staff, "pattern=wt:*")
    rc.delete("wt:0")
    rc.set("wt:0", "a string now")
    error = await page.until_type("error", deadline=20)
    assert "is not a stream" in error["message"]
    later = rc.xadd(other, {"n": "1"}).decode()
    await page.until(lambda: later in page.ids)
    await page.communicator.disconnect()


async def test_live_counts_survive_a_failover(rc, redis_cluster, staff, settings):
    settings.STREAMS_ADMIN = {"STATS_INTERVAL": 0.2}
    rc.xadd("counted", {"n": "1"})
    redis_cluster.wait_ok()  # the replica has the stream
    communicator = await open_stats(staff, b"counted")
    assert (await next_of(communicator, "stats"))["streams"][to_token(b"counted")]["length"] == 1
    victim = redis_cluster.primary_of("counted")
    redis_cluster.kill(victim)
    try:
        state = await next_of(communicator, "state", timeout=30)
        assert state["state"] == "reconnecting"
        assert (await next_of(communicator, "state", timeout=60))["state"] == "live"
        deadline = time.monotonic() + 30
        while True:
            try:
                rc.xadd("counted", {"n": "2"})
                break
            except (redis.RedisError, redis.exceptions.RedisClusterException):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
        async with asyncio.timeout(30):
            while True:
                figures = (await next_of(communicator, "stats", timeout=30))["streams"]
                if figures.get(to_token(b"counted"), {}).get("length") == 2:
                    break
        await communicator.disconnect()
    finally:
        victim.start()
        redis_cluster.wait_ok(60)
