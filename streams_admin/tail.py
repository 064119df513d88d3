"""Live tail: one XREAD reader per stream per process, shared by every viewer of it.

XREAD, never XREADGROUP: watching must not create pending entries or touch any group.
Each viewer has a bounded queue of frames; a slow one loses its oldest frames (and is told
how many entries it skipped) instead of growing memory or delaying the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
import redis.asyncio

from streams_admin.values import Entry, parse_entry

log = logging.getLogger(__name__)

FRAME_INTERVAL = 0.05  # seconds: entries are batched into at most 20 frames/s per stream
BLOCK_MS = 1000
READ_COUNT = 1000


@dataclass(frozen=True)
class Frame:
    """Entries of one stream read in one XREAD, each rendered once for every viewer."""

    key: bytes
    entries: tuple[Entry, ...]
    rows: tuple[str, ...]


class Viewer:
    """One socket's bounded queue of frames."""

    def __init__(self, max_frames: int) -> None:
        self.frames: deque[Frame] = deque()
        self.max_frames = max_frames
        self.skipped = 0
        self._ready = asyncio.Event()

    def put(self, frame: Frame) -> None:
        if len(self.frames) >= self.max_frames:
            self.skipped += len(self.frames.popleft().entries)
        self.frames.append(frame)
        self._ready.set()

    async def get(self) -> tuple[int, Frame]:
        """The next frame, and how many entries were dropped before it."""
        while not self.frames:
            self._ready.clear()
            await self._ready.wait()
        skipped, self.skipped = self.skipped, 0
        return skipped, self.frames.popleft()


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
                   backlog: int) -> list[Entry]:
        """Start receiving key's new entries; returns those after `since` up to that point.

        The catch-up ends exactly where the live frames begin: no gap, no duplicate.
        """
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
            return []
        rows = await self.redis.xrevrange(key, upto, f"({since}", count=backlog)
        return [parse_entry(row) for row in reversed(rows)]

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
                frame = Frame(reader.key, entries,
                              tuple(self.render(reader.key, e) for e in entries))
                for viewer in list(reader.viewers):
                    viewer.put(frame)
                await asyncio.sleep(max(0.0, FRAME_INTERVAL - (loop.time() - started)))
