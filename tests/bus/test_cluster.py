"""The bus on a real Redis Cluster (3 primaries, 3 replicas): the same behaviours as on one
server, two-step commits across slots, the hash-tag naming, and a primary killed mid-run."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from streams_admin.bus import Envelope, EventBus, FatalError
from tests.bus.conftest import consuming, wait_for

STREAM = "agent:stream:task.created"
DEADLETTER = "agent:stream:deadletter:task.created"


@pytest.fixture
def rc(cluster_url: str, redis_cluster: Any) -> Any:
    client = redis_cluster.client()
    yield client
    client.close()


@pytest.fixture
def cluster_bus(make_bus, cluster_url: str):
    def make(**options: Any) -> EventBus:
        return make_bus(redis_url=cluster_url, **options)
    return make


def recorder(into: list[int]) -> Any:
    async def handle(data: dict) -> None:
        into.append(data["n"])
    return handle


def primaries(redis_cluster: Any, keys: list[str]) -> set[int]:
    return {redis_cluster.primary_of(k).port for k in keys}


async def test_cluster_is_detected_from_one_node_url(cluster_bus) -> None:
    bus = cluster_bus()
    assert bus.cluster
    await bus.publish("task.created", {"n": 1})
    assert isinstance(bus.client(), redis.asyncio.RedisCluster)


async def test_publish_and_consume_across_primaries(cluster_bus, redis_cluster, rc) -> None:
    types = [f"t{i}.created" for i in range(8)]
    streams = [f"agent:stream:{t}" for t in types]
    assert len(primaries(redis_cluster, streams)) == 3  # the streams spread over every primary
    bus = cluster_bus()
    seen: dict[str, list[int]] = {t: [] for t in types}
    for t in types:
        bus.subscribe(t)(recorder(seen[t]))
    await bus.publish_many([(t, {"n": n}) for n in range(50) for t in types])
    async with consuming(bus):
        await wait_for(lambda: all(len(v) == 50 for v in seen.values()), what="all consumed")
        await wait_for(lambda: all(rc.xpending(s, "g")["pending"] == 0 for s in streams),
                       what="all acked")
    assert all(sorted(v) == list(range(50)) for v in seen.values())


async def test_request_response_on_cluster(cluster_bus) -> None:
    server, client = cluster_bus(), cluster_bus()

    @server.subscribe("math.add")
    async def add(data: dict) -> dict:
        return {"sum": data["a"] + data["b"]}

    async with consuming(server):
        replies = await asyncio.gather(*(client.request("math.add", {"a": i, "b": 1}, timeout=10)
                                         for i in range(20)))
    assert [r["sum"] for r in replies] == [i + 1 for i in range(20)]
    assert await client.request("nobody.listens", {}, timeout=0.3) is None


async def test_dead_letter_is_two_steps_across_slots_and_loses_nothing(cluster_bus, rc) -> None:
    assert rc.keyslot(STREAM) != rc.keyslot(DEADLETTER)  # the spec's plain names
    bus = cluster_bus(max_deliveries=2)

    @bus.subscribe("task.created")
    async def poison(data: dict) -> None:
        if data["n"] % 2:
            raise ValueError("odd")

    await bus.publish_many([("task.created", {"n": n}) for n in range(40)])
    async with consuming(bus):
        await wait_for(lambda: rc.xlen(DEADLETTER) == 20 and
                       rc.xpending(STREAM, "g")["pending"] == 0, what="odd ones dead-lettered")
    dead = rc.xrange(DEADLETTER)
    originals = {f[b"original_id"] for _, f in dead}
    assert len(originals) == 20  # each once: no loss, no duplicate
    assert {f[b"original_stream"] for _, f in dead} == {STREAM.encode()}


async def test_retry_recognises_its_own_dead_letter_copy(cluster_bus, rc) -> None:
    """Step one (the copy) done, step two (the XACK) lost: the retry only acks."""
    rc.xgroup_create(STREAM, "g", id="0", mkstream=True)
    bus = cluster_bus()
    await bus.publish("task.created", {"n": 1})
    [(entry_id, fields)] = rc.xreadgroup("g", "c1", {STREAM: ">"})[0][1]
    rc.xadd(DEADLETTER, {**fields, b"original_stream": STREAM, b"original_id": entry_id,
                         b"group": b"g", b"reason": b"fatal"})

    @bus.subscribe("task.created")
    async def fatal(data: dict) -> None:
        raise FatalError("never")

    async with consuming(bus, name="c2"):  # reclaims c1's entry after min_idle
        await wait_for(lambda: rc.xpending(STREAM, "g")["pending"] == 0, what="acked")
    assert rc.xlen(DEADLETTER) == 1


async def test_idempotent_handler_runs_once_per_event_on_cluster(cluster_bus, rc) -> None:
    bus = cluster_bus()
    runs: list[str] = []

    @bus.subscribe("task.created", idempotent=True)
    async def once(data: dict, envelope: Envelope) -> None:
        runs.append(envelope.event_id)

    ids = [await bus.publish("task.created", {"n": n}) for n in range(5)]
    for event_id in ids:  # a copy of each, as a publish retried after a lost reply stores
        await bus.publish("task.created", {"copy": True}, event_id=event_id)
    async with consuming(bus):
        await wait_for(lambda: len(runs) >= 5 and rc.xpending(STREAM, "g")["pending"] == 0)
    assert sorted(runs) == sorted(ids)
    assert rc.get(f"agent:idempotency:g:task.created:{ids[0]}") == b"done"


async def test_dead_consumer_entries_are_reclaimed(cluster_bus, rc) -> None:
    rc.xgroup_create(STREAM, "g", id="0", mkstream=True)
    bus = cluster_bus()
    await bus.publish_many([("task.created", {"n": n}) for n in range(10)])
    rc.xreadgroup("g", "dead", {STREAM: ">"}, count=10)  # read, then the consumer died
    seen: list[int] = []
    bus.subscribe("task.created")(recorder(seen))
    async with consuming(bus, name="alive"):
        await wait_for(lambda: len(seen) == 10 and rc.xpending(STREAM, "g")["pending"] == 0)
    assert sorted(seen) == list(range(10))


def evals(rc: Any, key: str) -> int:
    node = rc.get_node_from_key(key)
    stats = rc.info("commandstats", target_nodes=node)
    ran = stats.get("cmdstat_evalsha", {})  # a first call may meet NOSCRIPT: it fails, not runs
    return int(ran.get("calls", 0)) - int(ran.get("failed_calls", 0))


async def test_hash_tag_naming_keeps_dead_letter_atomic(cluster_bus, rc) -> None:
    stream, dead = "agent:stream:{task.created}", "agent:stream:deadletter:{task.created}"
    assert rc.keyslot(stream) == rc.keyslot(dead)
    assert rc.keyslot("agent:stream:{task.created}") != rc.keyslot("agent:stream:{task.done}")
    bus = cluster_bus(hash_tags=True)

    @bus.subscribe("task.created", idempotent=True)
    async def fatal(data: dict) -> None:
        raise FatalError("never")

    event_id = await bus.publish("task.created", {"n": 1})
    before = evals(rc, stream)
    async with consuming(bus):
        await wait_for(lambda: rc.xlen(dead) == 1 and rc.xpending(stream, "g")["pending"] == 0)
    assert evals(rc, stream) == before + 1  # copy and XACK in one script, on the one slot
    [(_, fields)] = rc.xrange(dead)
    assert fields[b"event_id"].decode() == event_id
    assert fields[b"original_stream"] == stream.encode()
    assert rc.keyslot(bus.keys.done("g", "task.created", event_id)) == rc.keyslot(stream)


def replicated(redis_cluster: Any, key: str, length: int) -> bool:
    """Whether the replica of key's primary holds `length` entries of it."""
    primary = redis_cluster.primary_of(key)
    for node in redis_cluster.nodes:
        if node is primary or node.process is None:
            continue
        client = redis.Redis(port=node.port)
        try:
            if client.info("replication").get("master_port") != primary.port:
                continue
            client.execute_command("READONLY")
            return client.xlen(key) == length
        finally:
            client.close()
    return False


async def test_primary_killed_mid_run_loses_nothing(cluster_bus, redis_cluster, rc) -> None:
    """SIGKILL the primary holding the stream while a worker handles 5,000 events: its
    replica takes over, the worker reconnects; every event is handled. Duplicates can only
    be entries whose XACK the dead primary had not replicated (docs/bus.md), so at most
    the entries in flight around the kill, each handled at most twice."""
    total = 5_000
    bus = cluster_bus(max_in_flight=32)
    handled: dict[int, int] = {}

    @bus.subscribe("task.created")
    async def handle(data: dict) -> None:
        await asyncio.sleep(0.002)
        handled[data["n"]] = handled.get(data["n"], 0) + 1

    for start in range(0, total, 1_000):
        await bus.publish_many([("task.created", {"n": n}) for n in range(start, start + 1_000)])
    await wait_for(lambda: replicated(redis_cluster, STREAM, total), what="replicated")
    primary = redis_cluster.primary_of(STREAM)
    async with consuming(bus):
        await wait_for(lambda: len(handled) >= 500, what="a tenth handled")
        redis_cluster.kill(primary)
        assert len(handled) < total  # killed mid-run
        await wait_for(lambda: len(handled) == total, timeout=60, what="all handled")
        await wait_for(lambda: redis_cluster.primary_of(STREAM) is not primary and
                       rc.xpending(STREAM, "g")["pending"] == 0, timeout=30, what="all acked")
    duplicates = {n: c for n, c in handled.items() if c > 1}
    print(f"failover: {total} handled, {len(duplicates)} duplicates")
    assert set(handled) == set(range(total))  # none lost
    assert all(c == 2 for c in duplicates.values())
    assert len(duplicates) <= 1_000  # only those around the kill, not a replay of the stream
    assert not rc.exists(DEADLETTER)
