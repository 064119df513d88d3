"""Live tail: one XREAD reader per stream per process, shared by every viewer of it.

XREAD, never XREADGROUP: watching must not create pending entries or touch any group.
Each entry is rendered once, for every viewer. Each viewer has a queue bounded in bytes; a
slow one loses its oldest frames (and is told how many entries it skipped) instead of
growing memory or delaying the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import redis
import redis.asyncio

from streams_admin.values import Entry, id_key, parse_entry

log = logging.getLogger(__name__)

FRAME_INTERVAL = 0.05  # seconds: entries are batched into at most 20 frames/s per stream
BLOCK_MS = 1000
READ_COUNT = 1000


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
    key: bytes = b""  # the stream (b"" for a catch-up frame of several)
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
    the oldest frames are dropped (and counted as skipped entries).

    Unfiltered viewers share their frames, so a queue mostly keeps them alive longer.
    """

    def __init__(self, max_bytes: int, keep: Callable[[Entry], bool] | None = None) -> None:
        self.frames: deque[Frame] = deque()
        self.max_bytes = max_bytes
        self.keep = keep
        self.bytes = 0
        self.skipped = 0
        self._ready = asyncio.Event()

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
        self._ready.set()

    async def get(self, max_bytes: int) -> tuple[int, list[Frame]]:
        """The oldest frames (at least one, then up to max_bytes), and how many entries were
        dropped before them."""
        while not self.frames:
            self._ready.clear()
            await self._ready.wait()
        frames = [self.frames.popleft()]
        size = frames[0].size
        while self.frames and size + self.frames[0].size <= max_bytes:
            frames.append(self.frames.popleft())
            size += frames[-1].size
        self.bytes -= size
        skipped, self.skipped = self.skipped, 0
        return skipped, frames


@dataclass
class Reader:
    key: bytes
    last_id: str  # every entry up to here has been handed to the viewers
    viewers: set[Viewer] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    reads: int = 0  # XREAD calls, for the benchmark


class Hub:
    """The process's readers, created with the first viewer of a stream, stopped with the last."""

    def __init__(self, connect: Callable[[], redis.asyncio.Redis],
                 render: Callable[[bytes, Entry], str]) -> None:
        """render: an entry's row as the sockets send it (called once per entry read)."""
        self.connect = connect
        self.render = render
        self.readers: dict[bytes, Reader] = {}
        self._redis: redis.asyncio.Redis | None = None

    @property
    def redis(self) -> redis.asyncio.Redis:
        if self._redis is None:
            self._redis = self.connect()
        return self._redis

    async def join(self, key: bytes, viewer: Viewer, since: str | None,
                   backlog: int) -> tuple[str, list[Entry]]:
        """Start receiving key's new entries; returns where the live frames begin and the
        entries after `since` up to there: no gap, no duplicate."""
        reader = self.readers.get(key)
        if reader is None:
            position = await self._position(key)
            reader = self.readers.get(key)  # another viewer may have started it meanwhile
            if reader is None:
                reader = self.readers[key] = Reader(key, position)
                reader.task = asyncio.create_task(self._read(reader), name=f"tail {key!r}")
        reader.viewers.add(viewer)
        upto = reader.last_id  # taken with the add, before any await
        if since is None:
            return upto, []
        rows = await self.redis.xrevrange(key, upto, f"({since}", count=backlog)
        return upto, [parse_entry(row) for row in reversed(rows)]

    async def leave(self, key: bytes, viewer: Viewer) -> None:
        reader = self.readers.get(key)
        if reader is None:
            return
        reader.viewers.discard(viewer)
        if not reader.viewers:
            del self.readers[key]
            if reader.task is not None:
                reader.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader.task
        if not self.readers and self._redis is not None:
            client, self._redis = self._redis, None
            await client.aclose()

    async def _position(self, key: bytes) -> str:
        newest = await self.redis.xrevrange(key, "+", "-", count=1)
        if newest:
            return parse_entry(newest[0]).id
        try:
            info = await self.redis.xinfo_stream(key)
        except redis.ResponseError:
            return "0-0"  # no stream yet: everything it will get is new
        return info["last-generated-id"].decode()

    async def _read(self, reader: Reader) -> None:
        loop = asyncio.get_running_loop()
        backoff = 0.1
        while True:
            started = loop.time()
            try:
                reply = await self.redis.xread(
                    {reader.key: reader.last_id}, count=READ_COUNT, block=BLOCK_MS
                )
                reader.reads += 1
                backoff = 0.1
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("tail of %r: Redis unavailable (%s); retrying", reader.key, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5)
                continue
            if reply:
                # One stream asked for: RESP2 answers [[key, entries]], RESP3 {key: entries}.
                (_, items), = reply.items() if isinstance(reply, dict) else reply
                entries = tuple(parse_entry(item) for item in items)
                reader.last_id = entries[-1].id
                rows = tuple(self.render(reader.key, e) for e in entries)
                frame = Frame.of(entries, rows, reader.last_id, len(entries), reader.key)
                for viewer in list(reader.viewers):
                    viewer.put(viewer.wants(frame, entries))
                await asyncio.sleep(max(0.0, FRAME_INTERVAL - (loop.time() - started)))
