"""safe_trim on every server: Redis 8.2+ trims with XTRIM … ACKED itself, older servers and
Valkey with the script; what a group still needs stays on both (test_history has the rest)."""

from __future__ import annotations

import redis

from streams_admin.bus import history

STREAM = "agent:stream:task.created"


def _acked_trim(r: redis.Redis) -> bool:
    version = r.info("server")
    return "valkey_version" not in version and \
        tuple(int(p) for p in str(version["redis_version"]).split(".")[:2]) >= (8, 2)


async def test_safe_trim_never_drops_a_pending_or_undelivered_entry(make_bus, r) -> None:
    bus = make_bus()
    ids = [r.xadd(STREAM, {"data": str(i)}) for i in range(8)]
    r.xgroup_create(STREAM, "g", id="0")
    r.xreadgroup("g", "c", {STREAM: ">"}, count=5)  # 0..4 delivered, 5..7 not yet
    r.xack(STREAM, "g", ids[0], ids[1], ids[3], ids[4])  # 2 still pending
    removed = await bus.safe_trim("task.created")
    left = [i for i, _ in r.xrange(STREAM)]
    assert ids[2] in left and ids[5:] == left[-3:]
    assert ids[0] not in left and ids[1] not in left
    # Redis 8.2's ACKED also takes the acked entries behind the pending one; the script
    # stops at the oldest pending entry.
    assert left == ([ids[2], *ids[5:]] if _acked_trim(r) else ids[2:])
    assert removed == 8 - len(left)
    assert r.xpending(STREAM, "g")["pending"] == 1  # its pending record is untouched


async def test_safe_trim_of_a_stream_without_groups_or_without_the_stream(make_bus, r) -> None:
    bus = make_bus()
    assert await bus.safe_trim("task.created") == 0  # no stream
    ids = [r.xadd(STREAM, {"data": str(i)}) for i in range(3)]
    # XTRIM … ACKED without groups would delete everything: nothing was delivered to anyone.
    assert await bus.safe_trim("task.created") == 0
    assert await bus.safe_trim("task.created", before=ids[2].decode()) == 0
    assert r.xlen(STREAM) == 3


async def test_safe_trim_with_before_keeps_the_newer_acked_entries(make_bus, r) -> None:
    bus = make_bus()
    ids = [r.xadd(STREAM, {"data": str(i)}) for i in range(6)]
    r.xgroup_create(STREAM, "g", id="0")
    r.xreadgroup("g", "c", {STREAM: ">"})
    r.xack(STREAM, "g", *ids)
    assert await bus.safe_trim("task.created", before=ids[4].decode()) == 4
    assert [i for i, _ in r.xrange(STREAM)] == ids[4:]


async def test_the_server_is_asked_once_whether_it_trims_acked(make_bus, r) -> None:
    bus = make_bus()
    ids = [r.xadd(STREAM, {"data": str(i)}) for i in range(4)]
    r.xgroup_create(STREAM, "g", id="0")
    r.xreadgroup("g", "c", {STREAM: ">"})
    r.xack(STREAM, "g", *ids[:2])
    assert await bus.safe_trim("task.created") == 2
    assert history._ACKED_TRIM.get(bus.client(), True) == _acked_trim(r)
    r.xack(STREAM, "g", *ids[2:])
    assert await bus.safe_trim("task.created") == 2
    assert r.xlen(STREAM) == 0


async def test_safe_trim_on_a_cluster(make_bus, cluster_url: str) -> None:
    bus = make_bus(redis_url=cluster_url)
    r = redis.RedisCluster.from_url(cluster_url)
    ids = [r.xadd(STREAM, {"data": str(i)}) for i in range(5)]
    r.xgroup_create(STREAM, "g", id="0")
    r.xreadgroup("g", "c", {STREAM: ">"}, count=3)
    r.xack(STREAM, "g", *ids[:2])
    assert await bus.safe_trim("task.created") == 2
    assert [i for i, _ in r.xrange(STREAM)] == ids[2:]
    r.close()
