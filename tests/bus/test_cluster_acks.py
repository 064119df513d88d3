"""On a cluster, a worker's acks of one stream go out as one XACK per batch, as on one server
(each command costs Python to route, pack and read)."""

from __future__ import annotations

from typing import Any

import redis

from tests.bus.conftest import consuming, wait_for

STREAM = "agent:stream:task.created"


def xack_calls(node_url: str) -> int:
    with redis.Redis.from_url(node_url) as node:
        return node.info("commandstats").get("cmdstat_xack", {}).get("calls", 0)


async def test_acks_of_a_batch_share_one_xack(make_bus, cluster_url: str,
                                              redis_cluster: Any) -> None:
    bus = make_bus(redis_url=cluster_url)
    seen: list[int] = []

    @bus.subscribe("task.created")
    async def handle(data: dict) -> None:
        seen.append(data["n"])

    await bus.publish_many([("task.created", {"n": n}) for n in range(500)])
    primary = redis_cluster.primary_of(STREAM).url
    before = xack_calls(primary)
    async with consuming(bus):
        await wait_for(lambda: len(seen) == 500, what="all consumed")
        client = redis_cluster.client()
        await wait_for(lambda: client.xpending(STREAM, "g")["pending"] == 0, what="all acked")
        client.close()
    assert sorted(seen) == list(range(500))
    assert xack_calls(primary) - before < 250  # batches of entries, not one XACK each
