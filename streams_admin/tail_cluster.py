"""The live tail on a Redis Cluster: a shard per primary (tail_shard polls it, one XREAD per
slot group), the control client routing by key, a firehose's SCAN of every primary, and the
streams moved to the node holding them after a failover or a resharding.

Connections stay a handful however many streams are watched: one reading connection per
primary, and the control client's one per node (the hub sends it one command at a time).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio
from redis.crc import key_slot
from redis.typing import KeyT, StreamIdT

from streams_admin import tail_shard
from streams_admin.redis import slot_map

if TYPE_CHECKING:
    from streams_admin.tail import Hub, Reader


@dataclass(frozen=True)
class ClusterConnect:
    """How the hub connects on a cluster: the control client routes by key; each primary's
    shard reads with a plain client of that node."""

    is_cluster: Callable[[], bool]  # blocking: asked once, in a thread
    control: Callable[[], redis.asyncio.RedisCluster]
    node: Callable[[str], redis.asyncio.Redis]  # host:port -> that node's client


def node_shard(hub: Hub, control: redis.asyncio.RedisCluster, key: bytes) -> tail_shard.Shard:
    """The shard of the primary holding key, by the control client's slot map."""
    # None only when a replica is asked for; a bytes key is hashed as it is.
    name = control.get_node_from_key(key).name  # type: ignore[arg-type,union-attr]
    if name not in hub.node_shards:
        hub.node_shards[name] = tail_shard.Shard(hub, node=name)
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


QUIET_POLLS = 20  # polls in a row with nothing (1 s): a slot group is idle
IDLE_BATCH = 32  # idle slot groups a poll reads before they are spread over several polls
IDLE_EVERY = 4  # at most: an idle slot group is read at least every 4th poll (200 ms)


class SlotPolls:
    """Which of a cluster shard's slot groups a poll reads: one that had entries lately every
    poll (an entry waits at most POLL_INTERVAL). Those quiet for QUIET_POLLS polls in a row
    too while there are at most IDLE_BATCH of them; past that they take turns, about
    IDLE_BATCH a poll, each read at least every IDLE_EVERY-th poll (its next
    entry waits up to IDLE_EVERY x POLL_INTERVAL). A firehose over 1,000 idle streams sends
    about IDLE_EVERY times fewer XREADs, in shorter pipelines; a tail of a few streams is
    read as before (bench/cluster_tail.py)."""

    def __init__(self) -> None:
        self.quiet: dict[int, int] = {}  # slot -> polls in a row that read nothing there
        self.polls = 0

    def due(self, readers: dict[bytes, Reader]) -> dict[int, dict[KeyT, StreamIdT]]:
        """The slot groups to read now: {slot: {key: last ID}}."""
        self.polls += 1
        slots: dict[int, dict[KeyT, StreamIdT]] = {}
        for key, reader in readers.items():
            slots.setdefault(_slot(key), {})[key] = reader.last_id
        self.quiet = {slot: self.quiet.get(slot, 0) for slot in slots}  # of slots still read
        idle = [slot for slot, quiet in self.quiet.items() if quiet >= QUIET_POLLS]
        every = min(IDLE_EVERY, max(1, -(-len(idle) // IDLE_BATCH)))
        skipped = {slot for n, slot in enumerate(idle) if (self.polls + n) % every}
        return {slot: streams for slot, streams in slots.items() if slot not in skipped}

    def heard(self, slot: int, anything: bool) -> None:
        self.quiet[slot] = 0 if anything else self.quiet.get(slot, 0) + 1


@functools.lru_cache(maxsize=1 << 16)
def _slot(key: bytes) -> int:
    return key_slot(key)  # asked for every watched stream 20 times a second


def migrating(error: Exception) -> bool:
    """A slot group's read refused because its slot is migrating to another primary: one of
    its keys went there already (ASK), or some did (TRYAGAIN, for a read of several keys)."""
    return isinstance(error, redis.exceptions.AskError | redis.exceptions.TryAgainError)


async def read_migrating(hub: Hub, streams: dict[KeyT, StreamIdT], count: int) -> list | Exception:
    """A migrating slot group read stream by stream through the control client, which
    follows ASK (ASKING, then the read on the importing node; one command at a time, so on
    its one connection to that node): each stream read where it is, from its last ID, until
    the slot is handed over (MOVED) and the shard's rehome moves it. Its error, if any."""
    out: list = []
    for key, last_id in streams.items():

        async def read(r: redis.asyncio.Redis, k: KeyT = key, i: StreamIdT = last_id) -> Any:
            return await r.xread({k: i}, count=count)

        try:
            answer = await hub.command(read)
        except redis.RedisError as exc:
            return exc
        out += answer.items() if isinstance(answer, dict) else answer or []
    return out


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
