"""Websockets: the live tail and live counts. Staff sessions only, like the pages."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from typing import Any
from urllib.parse import parse_qs

import redis
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.template.loader import render_to_string

from streams_admin import conf, names, params
from streams_admin.filters import TailOptions
from streams_admin.redis import async_client
from streams_admin.tail import BLOCK_MS, Hub, Viewer
from streams_admin.values import Entry

WINDOW = 4  # frames sent but not yet acknowledged by the page; then frames wait (and drop)
HEARTBEAT = 10.0  # seconds of silence before a ping, to keep proxies from closing the socket
RESCAN = 5.0  # seconds between looks for new keys matching a firehose pattern

_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def render_row(key: bytes, entry: Entry) -> str:
    context = {"key": key, "e": entry, "show_stream": True,
               "preview_chars": conf.get("PREVIEW_CHARS")}
    return render_to_string("streams_admin/_entry_row.html", context)


def hub() -> Hub:
    """The running loop's hub (one per process under Daphne; one per test loop in tests)."""
    loop = asyncio.get_running_loop()
    if loop not in _hubs:
        _hubs[loop] = Hub(lambda: async_client(BLOCK_MS / 1000), render_row)
    return _hubs[loop]


def _staff(scope: dict[str, Any]) -> bool:
    user = scope.get("user")
    return bool(user and user.is_active and user.is_staff)


class TailConsumer(AsyncJsonWebsocketConsumer):
    """Sends {"type": "entries", seq, rows, last_id}, {"type": "skipped", count} and pings.

    The page acknowledges each entries frame ({"ack": seq}). The server never has more than
    WINDOW frames in flight: a page that cannot keep up leaves frames in its bounded queue,
    which drops the oldest, rather than in server or proxy buffers that would grow.
    """

    viewer: Viewer
    task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        if not _staff(self.scope):
            await self.close(code=4003)
            return
        await self.accept()
        try:
            self.options = TailOptions.from_query(self.scope["query_string"])
        except params.BadParam as exc:
            await self.send_json({"type": "error", "message": str(exc)})
            await self.close(code=4400)
            return
        self.viewer = Viewer(conf.get("TAIL_QUEUE_FRAMES"))
        self.keys: set[bytes] = set()
        self.sent = self.acked = 0
        self.window = asyncio.Event()
        self.window.set()
        self.task = asyncio.create_task(self.run())

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and isinstance(content.get("ack"), int):
            self.acked = max(self.acked, min(content["ack"], self.sent))
            if self.sent - self.acked < WINDOW:
                self.window.set()

    async def disconnect(self, code: int) -> None:
        if self.task is None:
            return
        self.task.cancel()
        try:
            # A send that raced the close ends run() with an error; the reader must still
            # lose this viewer, or it would read for nobody.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        finally:
            for key in self.keys:
                await hub().leave(key, self.viewer)
            self.keys.clear()

    async def run(self) -> None:
        try:
            backlog = await self.join_new_keys(self.options.since)
        except (redis.ConnectionError, redis.TimeoutError):
            await self.send_json({"type": "error", "message": "Redis is not answering."})
            await self.close(code=4503)
            return
        await self.send_entries_of(backlog)
        loop = asyncio.get_running_loop()
        rescanned = loop.time()
        while True:
            await self.window.wait()
            try:
                skipped, frame = await asyncio.wait_for(self.viewer.get(), HEARTBEAT)
            except TimeoutError:
                await self.send_json({"type": "ping"})
            else:
                if skipped:
                    await self.send_json({"type": "skipped", "count": skipped})
                pairs = [(frame.key, e) for e in frame.entries]
                await self.send_entries(pairs, list(frame.rows))
            if self.options.pattern and loop.time() - rescanned > RESCAN:
                rescanned = loop.time()
                await self.send_entries_of(await self.join_new_keys(since="0-0"))

    async def join_new_keys(self, since: str | None) -> list[tuple[bytes, Entry]]:
        """Join every key not joined yet; returns their backlog after `since`, oldest first."""
        keys = list(self.options.keys) or await self.scan()
        backlog: list[tuple[bytes, Entry]] = []
        for key in keys:
            if key in self.keys:
                continue
            self.keys.add(key)
            entries = await hub().join(key, self.viewer, since, conf.get("TAIL_MAX_ROWS"))
            backlog += [(key, e) for e in entries]
        backlog.sort(key=lambda pair: tuple(map(int, pair[1].id.split("-"))))
        return backlog[-conf.get("TAIL_MAX_ROWS"):]

    async def scan(self) -> list[bytes]:
        found: list[bytes] = []
        limit = conf.get("TAIL_MAX_STREAMS")
        async for key in hub().redis.scan_iter(match=self.options.pattern, count=1000,
                                               _type="stream"):
            found.append(key)
            if len(found) >= limit:
                break
        return found

    async def send_entries_of(self, backlog: list[tuple[bytes, Entry]]) -> None:
        await self.send_entries(backlog, [render_row(key, e) for key, e in backlog])

    async def send_entries(self, pairs: list[tuple[bytes, Entry]], rows: list[str]) -> None:
        keep = [row for (_, entry), row in zip(pairs, rows, strict=True)
                if self.options.filter.matches(entry)]
        if not pairs:
            return
        self.sent += 1
        if self.sent - self.acked >= WINDOW:
            self.window.clear()
        await self.send_json({"type": "entries", "seq": self.sent, "rows": keep,
                              "last_id": pairs[-1][1].id, "read": len(pairs)})


class StatsConsumer(AsyncJsonWebsocketConsumer):
    """Every second: length, pending, lag and rate for the streams a page shows."""

    task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        if not _staff(self.scope):
            await self.close(code=4003)
            return
        q = parse_qs(self.scope["query_string"].decode("latin-1"))
        try:
            self.keys = [params.name(token) for token in q.get("key", [])][:200]
        except params.BadParam:
            await self.close(code=4400)
            return
        await self.accept()
        self.task = asyncio.create_task(self.run())

    async def disconnect(self, code: int) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def run(self) -> None:
        client = async_client()
        previous: dict[bytes, tuple[float, int]] = {}
        try:
            while True:
                with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                    await self.send_json({"type": "stats",
                                          "streams": await self.sample(client, previous)})
                await asyncio.sleep(conf.get("STATS_INTERVAL"))
        finally:
            await client.aclose()

    async def sample(self, client: redis.asyncio.Redis,
                     previous: dict[bytes, tuple[float, int]]) -> dict[str, Any]:
        pipe = client.pipeline(transaction=False)
        for key in self.keys:
            pipe.xinfo_stream(key)
            pipe.xinfo_groups(key)
        replies = await pipe.execute(raise_on_error=False)
        now = asyncio.get_running_loop().time()
        out: dict[str, Any] = {}
        for key, info, groups in zip(self.keys, replies[::2], replies[1::2], strict=True):
            if isinstance(info, Exception) or isinstance(groups, Exception):
                continue
            added = info.get("entries-added", info["length"])
            then, before = previous.get(key, (now, added))
            previous[key] = (now, added)
            out[names.to_token(key)] = {
                "length": info["length"],
                "pending": sum(g["pending"] for g in groups),
                "rate": round((added - before) / (now - then), 1) if now > then else None,
                "groups": {names.to_token(g["name"]): {
                    "pending": g["pending"], "lag": g.get("lag"),
                    "entries_read": g.get("entries-read"),
                    "last_delivered_id": g["last-delivered-id"].decode(),
                } for g in groups},
            }
        return out
