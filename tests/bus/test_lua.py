"""The bus's scripts (safe_trim.lua; atomic.lua, a one-slot commit on a cluster) are called by
SHA, loaded once, and loaded again where a server lost them, failover included."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from streams_admin.bus import EventBus, FatalError
from streams_admin.bus.cluster import ATOMIC
from streams_admin.redis import server_from_info
from tests.bus.conftest import consuming, wait_for
from tests.test_lua import flush_scripts, grown, scripting

STREAM = "agent:stream:task.created"


def trimmable(r: Any, stream: str = STREAM) -> list[bytes]:
    """10 entries; group "g" was delivered and acked the first 6."""
    ids = [r.xadd(stream, {"data": str(i)}) for i in range(10)]
    r.xgroup_create(stream, "g", id="0")
    r.xreadgroup("g", "c", {stream: ">"}, count=6)
    r.xack(stream, "g", *ids[:6])
    return ids


async def test_safe_trim_by_sha_and_after_script_flush(make_bus, r: redis.Redis) -> None:
    bus = make_bus()
    ids = trimmable(r)
    flush_scripts(r)
    assert await bus.safe_trim("task.created", before=ids[2].decode()) == 2
    before = scripting(r)
    assert await bus.safe_trim("task.created", before=ids[4].decode()) == 2
    assert await bus.safe_trim("task.created") == 2
    calls = grown(before, scripting(r))
    # Redis 8.2+ trims with XTRIM … ACKED and never needs the script.
    by_sha = 0 if server_from_info(r.info("server")).has_ref_policies else 2
    assert (calls["cmdstat_evalsha"], calls["cmdstat_eval"], calls["cmdstat_script|load"]) \
        == (by_sha, 0, 0), calls
    assert [i for i, _ in r.xrange(STREAM)] == ids[6:]


@pytest.fixture
def rc(cluster_url: str, redis_cluster: Any) -> Any:
    client = redis_cluster.client()
    yield client
    client.close()


async def test_safe_trim_on_a_cluster_after_script_flush(make_bus, cluster_url, rc) -> None:
    bus = make_bus(redis_url=cluster_url)
    ids = trimmable(rc)
    flush_scripts(rc)
    assert await bus.safe_trim("task.created", before=ids[3].decode()) == 3
    assert await bus.safe_trim("task.created") == 3
    assert [i for i, _ in rc.xrange(STREAM)] == ids[6:]


TAGGED, TAGGED_DEAD = "agent:stream:{task.created}", "agent:stream:deadletter:{task.created}"


def fatal_bus(make_bus: Any, cluster_url: str) -> EventBus:
    """Hash-tag naming: each dead letter is one atomic.lua call on the stream's slot."""
    bus = make_bus(redis_url=cluster_url, hash_tags=True)

    @bus.subscribe("task.created")
    async def fatal(data: dict) -> None:
        raise FatalError("never")

    return bus


async def dead_lettered(bus: EventBus, r: Any, count: int) -> None:
    """Publish `count` events and wait until each is a dead letter (read on r)."""
    start = r.xlen(TAGGED_DEAD)
    await bus.publish_many([("task.created", {"n": n}) for n in range(count)])
    async with consuming(bus):
        await wait_for(lambda: r.xlen(TAGGED_DEAD) == start + count
                       and r.xpending(TAGGED, "g")["pending"] == 0)


async def test_atomic_commits_by_sha_and_after_script_flush(make_bus, cluster_url, rc) -> None:
    bus = fatal_bus(make_bus, cluster_url)
    await dead_lettered(bus, rc, 1)
    flush_scripts(rc)
    rc.delete(TAGGED_DEAD)
    before = scripting(rc)
    await dead_lettered(bus, rc, 5)  # the first commit meets NOSCRIPT: loaded, sent again
    assert grown(before, scripting(rc))["cmdstat_script|load"] >= 1
    rc.delete(TAGGED_DEAD)
    before = scripting(rc)
    await dead_lettered(bus, rc, 5)
    calls = grown(before, scripting(rc))
    assert calls["cmdstat_evalsha"] >= 5  # one per dead letter: its copy and XACK
    assert (calls["cmdstat_eval"], calls["cmdstat_script|load"]) == (0, 0), calls


def holds(redis_cluster: Any, node: Any, key: str) -> bool:
    """Whether node holds key now, by a fresh slot map (False while failing over)."""
    try:
        return redis_cluster.primary_of(key) is node
    except (redis.RedisError, redis.exceptions.RedisClusterException):
        return False


def replica_of(node: Any, primary: Any) -> bool:
    client = redis.Redis.from_url(node.url)
    try:
        return client.info("replication").get("master_port") == primary.port
    finally:
        client.close()


async def test_a_failovers_new_primary_gets_the_script(make_bus, cluster_url, redis_cluster,
                                                      rc) -> None:
    """A replica never gets its primary's scripts: once promoted, the first commit there
    meets NOSCRIPT, loads atomic.lua and goes through."""
    bus = fatal_bus(make_bus, cluster_url)
    await dead_lettered(bus, rc, 1)
    victim = redis_cluster.primary_of(TAGGED)
    heir = next(n for n in redis_cluster.nodes if replica_of(n, victim))
    after = redis.Redis.from_url(heir.url)
    if int(str(after.info("server")["redis_version"]).split(".")[0]) < 7:
        after.script_flush()  # Redis 6.2 replicates SCRIPT LOAD; 7.0 and later never do
    assert after.script_exists(ATOMIC.sha) == [False]
    redis_cluster.kill(victim)
    try:
        await wait_for(lambda: holds(redis_cluster, heir, TAGGED), timeout=30,
                       what="the replica promoted")
        await dead_lettered(bus, after, 3)
        assert after.script_exists(ATOMIC.sha) == [True]
    finally:
        victim.start()  # back as a replica of the promoted one
        redis_cluster.wait_ok()
        after.close()
