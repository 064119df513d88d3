"""Bus tests: a flushed private redis-server per test, buses with fast timings."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry

from streams_admin.bus import EventBus
from tests.redis_server import RedisServer

# Fast timings so retries, reclaims and reconnects happen within a test's patience.
FAST = {"min_idle_ms": 200, "claim_interval_s": 0.1, "block_ms": 100, "backoff_s": 0.05,
        "backoff_max_s": 0.3, "stop_timeout_s": 10.0}


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    if redis_server.process is None:
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    """A plain bytes client on the test's Redis, for looking at what the bus wrote."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
async def make_bus(redis_url: str) -> AsyncIterator[Callable[..., EventBus]]:
    made: list[EventBus] = []

    def make(**options: Any) -> EventBus:
        url = options.pop("redis_url", redis_url)
        bus = EventBus(url, registry=CollectorRegistry(), **{**FAST, **options})
        made.append(bus)
        return bus

    yield make
    for bus in made:
        await bus.stop_consumer()
        await bus.aclose()


@contextlib.asynccontextmanager
async def consuming(bus: EventBus, group: str = "g", name: str = "c1") -> AsyncIterator[None]:
    task = asyncio.create_task(bus.start_consumer(group, name))
    try:
        yield
    finally:
        await bus.stop_consumer()
        await task


async def wait_for(condition: Callable[[], Awaitable[bool] | bool], timeout: float = 15.0,
                   what: str = "condition") -> None:
    """Wait on a condition with a deadline (never assert on elapsed time)."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Any]:
    """One private Redis Cluster (3 primaries, 3 replicas) for the session, started by the
    first test that asks for it (~3 s), so the other bus tests do not pay for it."""
    from tests.cluster_server import RedisCluster

    cluster = RedisCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster_url(redis_cluster: Any) -> Iterator[str]:
    """The cluster's URL (one node, as a user gives it), every primary flushed; a test that
    killed a node gets a healed cluster (the node restarted as a replica)."""
    from redis.cluster import RedisCluster as SyncCluster

    for node in redis_cluster.nodes:
        if node.process is None:
            node.start()
    redis_cluster.wait_ok()
    client = redis_cluster.client()
    client.flushall(target_nodes=SyncCluster.PRIMARIES)
    client.close()
    yield redis_cluster.url
