"""The live tail on a Redis Cluster: a shard per primary (tail_shard polls it, one XREAD per
slot group), the control client routing by key, a firehose's SCAN of every primary, and the
streams moved to the node holding them after a failover or a resharding.

Connections stay a handful however many streams are watched: one reading connection per
primary, and the control client's one per node (the hub sends it one command at a time).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis
import redis.asyncio

from streams_admin.redis import slot_map
from streams_admin.tail_shard import Shard

if TYPE_CHECKING:
    from streams_admin.tail import Hub


@dataclass(frozen=True)
class ClusterConnect:
    """How the hub connects on a cluster: the control client routes by key; each primary's
    shard reads with a plain client of that node."""

    is_cluster: Callable[[], bool]  # blocking: asked once, in a thread
    control: Callable[[], redis.asyncio.RedisCluster]
    node: Callable[[str], redis.asyncio.Redis]  # host:port -> that node's client


def node_shard(hub: Hub, control: redis.asyncio.RedisCluster, key: bytes) -> Shard:
    """The shard of the primary holding key, by the control client's slot map."""
    # None only when a replica is asked for; a bytes key is hashed as it is.
    name = control.get_node_from_key(key).name  # type: ignore[arg-type,union-attr]
    if name not in hub.node_shards:
        hub.node_shards[name] = Shard(hub, node=name)
    return hub.node_shards[name]


async def rehome(hub: Hub, control: redis.asyncio.RedisCluster) -> bool:
    """After a node failed or redirected a read (failover, resharding): ask for the slot map
    again and move each stream to its primary's shard; its viewers hear of it (and are told
    "live" once its new shard has no trouble). True if any moved."""
    try:
        async with hub.serial:
            await slot_map(control, again=True)
    except redis.RedisError:
        pass  # still failing over: the old map, and the next failed read asks again
    moved = False
    for reader in list(hub.readers.values()):
        try:
            shard = node_shard(hub, control, reader.key)
        except (redis.RedisError, redis.exceptions.RedisClusterException):
            continue  # its slot is not served yet: the next try
        if shard is reader.shard or hub.readers.get(reader.key) is not reader:
            continue
        await reader.shard.remove(reader)
        reader.shard = shard
        shard.add(reader)
        moved = True
        for viewer in reader.viewers:
            viewer.tell()
    return moved


async def scan_primaries(r: redis.asyncio.RedisCluster, pattern: str, limit: int,
                         keep: Callable[[bytes], bool]) -> list[bytes]:
    """SCAN of every primary (a firehose covers them all, and a new stream on any)."""
    found: dict[bytes, None] = {}  # a key moving in a resharding is seen on two nodes
    async for key in r.scan_iter(match=pattern, count=1000, _type="stream"):
        if keep(key):
            found[key] = None
            if len(found) >= limit:
                break
    return list(found)
