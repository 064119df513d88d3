"""The bus routes its pipelines on a cluster itself (streams_admin/bus/cluster.py `_send`):
each primary's share from the bus's own copy of the slot map. That copy goes stale when a slot
moves (ASK while it migrates, MOVED once handed over), and a primary can lose a script the
others keep (NOSCRIPT): nothing is lost or done twice."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from streams_admin.bus import FatalError
from tests.bus.conftest import consuming, wait_for
from tests.cluster_server import Migration, RedisCluster

STREAM = "agent:stream:task.created"


@pytest.fixture(scope="module")
def moving_cluster() -> Iterator[RedisCluster]:
    """A private cluster of primaries only (a slot moves to any other node): the session's
    shared one keeps its slot map."""
    cluster = RedisCluster(primaries=3, replicas=0).start()
    yield cluster
    cluster.stop()


async def test_a_slot_moving_while_publishing_and_acking_loses_nothing(
        make_bus, moving_cluster: RedisCluster) -> None:
    """The stream's slot is resharded to another primary while events are published and
    handled, with the bus's slot map stale throughout: the stream moves mid-publish, then
    the source answers ASK, then the slot is handed over mid-publish (MOVED). Every event is
    stored once, handled once and acked."""
    bus = make_bus(redis_url=moving_cluster.url)
    seen: list[int] = []

    @bus.subscribe("task.created")
    async def handle(data: dict) -> None:
        seen.append(data["n"])

    async def publish(start: int, during: Any = None) -> None:
        sent = asyncio.gather(*(bus.publish("task.created", {"n": n})
                                for n in range(start, start + 300)))
        await (asyncio.gather(sent, asyncio.to_thread(during)) if during else sent)

    source = moving_cluster.primary_of(STREAM)
    async with consuming(bus):
        await publish(0)  # the bus learns the slot map: the source holds the slot
        migration = Migration(moving_cluster, STREAM)
        await publish(300, lambda: migration.move(STREAM))
        await publish(600)  # the stream is on the target: the source answers ASK
        await publish(900, migration.finish)
        await publish(1200)  # the bus's map may still name the source: MOVED
        client = moving_cluster.client()
        try:
            await wait_for(lambda: len(seen) >= 1500 and
                           client.xpending(STREAM, "g")["pending"] == 0, what="all acked")
            assert moving_cluster.primary_of(STREAM).port != source.port  # it did move
            assert client.xlen(STREAM) == 1500  # each stored once
        finally:
            client.close()
    assert sorted(seen) == list(range(1500))  # each handled once


def noscript_errors(node_url: str) -> int:
    with redis.Redis.from_url(node_url) as node:
        return int(node.info("errorstats").get("errorstat_NOSCRIPT", {}).get("count", 0))


async def test_a_script_flushed_from_one_primary_is_loaded_again(
        make_bus, cluster_url: str, redis_cluster: Any) -> None:
    """With the hash-tag naming each dead letter is one script call on its stream's slot.
    One primary loses the script (SCRIPT FLUSH) while another keeps it: the first answers
    NOSCRIPT, the script is loaded there and that call sent again; every entry is
    dead-lettered once and acked, on both primaries."""
    bus = make_bus(redis_url=cluster_url, hash_tags=True)
    types = ["task.created", "task.done"]
    streams = [bus.keys.stream(t) for t in types]
    flushed, kept = (redis_cluster.primary_of(s) for s in streams)
    assert flushed.port != kept.port  # the two streams on two primaries

    for event_type in types:
        @bus.subscribe(event_type)
        async def fatal(data: dict) -> None:
            raise FatalError("never")

    def dead_lettered(count: int) -> bool:
        return all(rc.xlen(bus.keys.deadletter(t)) == count and
                   rc.xpending(bus.keys.stream(t), "g")["pending"] == 0 for t in types)

    rc = redis_cluster.client()
    try:
        async with consuming(bus):
            await bus.publish_many([(t, {"n": n}) for n in range(10) for t in types])
            await wait_for(lambda: dead_lettered(10), what="the first dead letters")
            before = noscript_errors(flushed.url)
            with redis.Redis.from_url(flushed.url) as node:
                node.script_flush()
            await bus.publish_many([(t, {"n": n}) for n in range(10, 20) for t in types])
            await wait_for(lambda: dead_lettered(20), what="the dead letters after the flush")
        assert noscript_errors(flushed.url) > before  # the call did meet NOSCRIPT there
        for t in types:
            ids = [f[b"original_id"] for _, f in rc.xrange(bus.keys.deadletter(t))]
            assert len(set(ids)) == 20  # each entry once
    finally:
        rc.close()
