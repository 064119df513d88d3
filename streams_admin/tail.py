"""Live tail: a few XREAD readers per process, each blocking on many streams at once, and
every stream's entries shared by all its viewers.

XREAD, never XREADGROUP: watching must not create pending entries or touch any group.
Connections are budgeted: a process holds at most READERS reading connections (one XREAD
BLOCK each, over all the streams given to it) and CONTROL for joins, scans and wake-ups,
however many streams and sockets it serves. A stream joins the reader with the fewest, and
CLIENT UNBLOCK makes that reader issue its XREAD again with the new key at once.
Each entry is rendered once, for every viewer. Each viewer has a queue bounded in bytes; a
slow one loses its oldest frames (and is told how many entries it skipped) instead of
growing memory or delaying the others.
On a cluster (tail_cluster.py) a shard per primary polls its streams instead.
Readers are supervised: a Redis error makes one retry with backoff while its viewers learn
why (`trouble`), and a key that is not a stream fails its own viewers, not its neighbours.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from functools import cached_property
from typing import TypeVar

import redis
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from streams_admin import names, tail_cluster
from streams_admin.redis import slot_map
from streams_admin.tail_cluster import ClusterConnect
from streams_admin.tail_shard import BLOCK_MS, Shard
from streams_admin.values import Entry, id_key, parse_entry

__all__ = ["BLOCK_MS", "ClusterConnect", "Frame", "Hub", "Viewer"]

READERS = 4  # reading connections per process (shards), however many streams are watched
CONTROL = 2  # commands at once on the control connection(s): joins, scans, wake-ups
CONTROL_NAME = "streams-admin:tail"  # in CLIENT LIST

T = TypeVar("T")


@dataclass(frozen=True)
class Frame:
    """New entries of one stream as rows ready to send, each rendered once for every viewer.

    Strings only: the parsed entries are gone once a frame is made, so a queue holding
    frames keeps little alive.
    """

    rows: tuple[str, ...]  # oldest first; a filtered viewer's frame holds only its matches
    order: tuple[tuple[int, int], ...]  # the rows' entry IDs, to merge several streams' frames
    last_id: str  # the last entry read, shown or not
    read: int  # entries read, shown or not
    key: bytes = b""  # the stream
    size: int = 0  # characters in rows

    @classmethod
    def of(cls, entries: tuple[Entry, ...], rows: tuple[str, ...], last_id: str, read: int,
           key: bytes = b"") -> Frame:
        return cls(rows, tuple(map(id_key, (e.id for e in entries))), last_id, read, key,
                   sum(map(len, rows)))

    def only(self, entries: tuple[Entry, ...], keep: Callable[[Entry], bool]) -> Frame:
        """This frame with just the rows of the entries `keep` lets through."""
        kept = [(entry, row) for entry, row in zip(entries, self.rows, strict=True) if keep(entry)]
        return Frame.of(tuple(entry for entry, _ in kept), tuple(row for _, row in kept),
                        self.last_id, self.read, self.key)

    @cached_property
    def joined(self) -> str:
        """The rows comma-separated, built once however many viewers send them."""
        return ", ".join(self.rows)


class Viewer:
    """One socket's filter and its queue of frames, bounded in bytes: when the queue is full
    the oldest frames are dropped (and counted as skipped entries). It also hears of its
    streams' troubles: `news` says to look at the hub's state, `failed` which keys ended.

    Unfiltered viewers share their frames, so a queue mostly keeps them alive longer.
    """

    def __init__(self, max_bytes: int, keep: Callable[[Entry], bool] | None = None) -> None:
        self.frames: deque[Frame] = deque()
        self.max_bytes = max_bytes
        self.keep = keep
        self.bytes = 0
        self.skipped = 0
        self.news = False
        self.failed: dict[bytes, str] = {}
        self.ready = asyncio.Event()

    def wants(self, frame: Frame, entries: tuple[Entry, ...]) -> Frame:
        """What this viewer gets of a frame made from `entries`."""
        return frame if self.keep is None else frame.only(entries, self.keep)

    def put(self, frame: Frame) -> None:
        self.frames.append(frame)
        self.bytes += frame.size
        while self.bytes > self.max_bytes and len(self.frames) > 1:
            dropped = self.frames.popleft()
            self.bytes -= dropped.size
            self.skipped += dropped.read
        self.ready.set()

    def tell(self) -> None:
        self.news = True
        self.ready.set()

    def fail(self, key: bytes, reason: str) -> None:
        self.failed[key] = reason
        self.tell()

    def drop(self, keys: Collection[bytes]) -> None:
        """Forget the queued frames of these streams (joined, then left again)."""
        self.frames = deque(frame for frame in self.frames if frame.key not in keys)
        self.bytes = sum(frame.size for frame in self.frames)

    def take(self, max_bytes: int) -> tuple[int, list[Frame]]:
        """The oldest frames (one, then up to max_bytes; none if none), and how many entries
        were dropped before them."""
        frames: list[Frame] = []
        size = 0
        while self.frames and (not frames or size + self.frames[0].size <= max_bytes):
            frames.append(self.frames.popleft())
            size += frames[-1].size
        self.bytes -= size
        skipped, self.skipped = self.skipped, 0
        return skipped, frames


@dataclass(eq=False)
class Reader:
    """One stream's place in a shard: read up to last_id, for these viewers."""

    key: bytes
    last_id: str  # every entry up to here has been handed to the viewers
    shard: Shard
    viewers: set[Viewer] = field(default_factory=set)

    def hand_out(self, items: list) -> None:
        """New entries read: rendered once, a frame for every viewer."""
        entries = tuple(parse_entry(item) for item in items)
        self.last_id = entries[-1].id
        rows = tuple(self.shard.hub.render(self.key, e) for e in entries)
        frame = Frame.of(entries, rows, self.last_id, len(entries), self.key)
        for viewer in list(self.viewers):
            viewer.put(viewer.wants(frame, entries))


class Hub:
    """The process's readers: a stream is read from its first viewer's join to its last
    viewer's leave, by one of at most READERS shards."""

    def __init__(self, connect: Callable[[], redis.asyncio.Redis],
                 render: Callable[[bytes, Entry], str],
                 cluster: ClusterConnect | None = None) -> None:
        """connect: a new client (each shard has its own); render: an entry's row as the
        sockets send it (called once per entry read); cluster: how to connect when REDIS_URL
        names a node of a cluster (None: never a cluster)."""
        self.connect = connect
        self.render = render
        self.cluster = cluster
        self.readers: dict[bytes, Reader] = {}
        self.shards = [Shard(self) for _ in range(READERS)]
        self.node_shards: dict[str, Shard] = {}  # on a cluster: a shard per primary instead
        self.clustered = False  # whether the control client is a cluster's
        self._redis: redis.asyncio.Redis | None = None
        self._slots = asyncio.Semaphore(CONTROL)
        # On a cluster, one command at a time: the control client then keeps one connection to
        # each node it has spoken to, beside each primary's reading one (tail_cluster).
        self.serial = asyncio.Lock()
        self._busy = 0  # commands waiting or running: the control client stays open for them

    async def command(self, call: Callable[[redis.asyncio.Redis], Awaitable[T]]) -> T:
        """One command on the control client, CONTROL at a time: its pool stays that small."""
        self._busy += 1
        try:
            async with self._slots:
                if self._redis is None:
                    self._redis = await self._control()
                if not self.clustered:
                    return await call(self._redis)
                async with self.serial:
                    return await call(self._redis)
        finally:
            self._busy -= 1

    async def _control(self) -> redis.asyncio.Redis:
        if self.cluster is not None and await asyncio.to_thread(self.cluster.is_cluster):
            self.clustered = True
            control = self.cluster.control()
            await slot_map(control)
            return control  # type: ignore[return-value]  # the same commands, routed by key
        self.clustered = False
        r = self.connect()
        r.set_retry(Retry(NoBackoff(), 1))  # a pooled one gone stale
        r.connection_pool.connection_kwargs["client_name"] = CONTROL_NAME
        return r

    def shard_for(self, key: bytes) -> Shard:
        """The shard to read key: the least busy one; on a cluster, its primary's."""
        if not self.clustered or self._redis is None:
            return min(self.shards, key=lambda s: len(s.readers))
        return tail_cluster.node_shard(self, self._redis, key)  # type: ignore[arg-type]

    async def rehome(self) -> bool:
        """On a cluster, after a node failed or redirected a read: see tail_cluster."""
        if not self.clustered or self._redis is None:
            return False
        return await tail_cluster.rehome(self, self._redis)  # type: ignore[arg-type]

    async def join(self, key: bytes, viewer: Viewer, since: str | None,
                   backlog: int) -> tuple[str, list[Entry]]:
        """Start receiving key's new entries; returns where the live frames begin and the
        entries after `since` up to there: no gap, no duplicate. Raises what Redis says of
        the key (WRONGTYPE: not a stream) or of `since`."""
        reader = self.readers.get(key)
        if reader is None:
            position = await self.command(lambda r: _position(r, key))
            reader = self.readers.get(key)  # another viewer may have started it meanwhile
            if reader is None:
                shard = self.shard_for(key)
                reader = self.readers[key] = Reader(key, position, shard)
                shard.add(reader)
        reader.viewers.add(viewer)
        upto = reader.last_id  # taken with the add, before any await
        if since is None:
            return upto, []
        try:
            rows = await self.command(lambda r: r.xrevrange(key, upto, f"({since}", count=backlog))
        except BaseException:
            await self.leave(key, viewer)
            raise
        return upto, [parse_entry(row) for row in reversed(rows or [])]

    async def leave(self, key: bytes, viewer: Viewer) -> None:
        reader = self.readers.get(key)
        if reader is None:
            return
        reader.viewers.discard(viewer)
        if not reader.viewers:
            del self.readers[key]
            await reader.shard.remove(reader)
        if not self.readers and not self._busy and self._redis is not None:
            client, self._redis = self._redis, None
            await client.aclose()

    def trouble(self, keys: set[bytes]) -> str | None:
        """Why some of these streams are not being read now, or None."""
        for key in keys:
            reader = self.readers.get(key)
            if reader is not None and reader.shard.trouble:
                return reader.shard.trouble
        return None

    async def fail_wrong_types(self, keys: list[bytes]) -> bool:
        """Drop the keys that hold something else than a stream, telling their viewers.
        False if all are streams (or gone, which XREAD waits for)."""
        types = await self.command(lambda r: _types(r, keys))
        wrong = {key: kind for key, kind in zip(keys, types, strict=True)
                 if kind not in (b"stream", b"none")}
        for key, kind in wrong.items():
            reader = self.readers.pop(key, None)
            if reader is None:
                continue
            for viewer in reader.viewers:
                viewer.fail(key, not_a_stream(key, kind.decode(errors="replace")))
            await reader.shard.remove(reader)
        return bool(wrong)

    async def scan(self, pattern: str, limit: int, keep: Callable[[bytes], bool]) -> list[bytes]:
        """Up to `limit` streams matching `pattern` that `keep` accepts."""
        if self._redis is None:
            await self.command(_nothing)  # the control client: a cluster's or a server's
        if self.clustered:
            return await self.command(
                lambda r: tail_cluster.scan_primaries(r, pattern, limit, keep))  # type: ignore[arg-type]  # clustered: r is the RedisCluster
        found: list[bytes] = []
        cursor = 0
        while True:
            # mypy cannot type a lambda with a default argument (binding this cursor).
            cursor, keys = await self.command(
                lambda r, at=cursor: r.scan(at, match=pattern, count=1000, _type="stream"))  # type: ignore[misc]
            found += filter(keep, keys)
            if not cursor or len(found) >= limit:
                return found[:limit]


async def _nothing(r: redis.asyncio.Redis) -> None:
    return None


def not_a_stream(key: bytes, kind: str) -> str:
    return f"{shorten(names.show(key))} is not a stream (it holds a {kind})."


def shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


async def _types(r: redis.asyncio.Redis, keys: list[bytes]) -> list[bytes]:
    pipe = r.pipeline(transaction=False)
    for key in keys:
        pipe.type(key)
    return [kind if isinstance(kind, bytes) else str(kind).encode() for kind in
            await pipe.execute()]


async def _position(r: redis.asyncio.Redis, key: bytes) -> str:
    newest = await r.xrevrange(key, "+", "-", count=1)
    if newest:
        return parse_entry(newest[0]).id
    try:
        info = await r.xinfo_stream(key)
    except redis.ResponseError as exc:
        if str(exc).startswith("WRONGTYPE"):
            raise
        return "0-0"  # no stream yet: everything it will get is new
    return info["last-generated-id"].decode()
