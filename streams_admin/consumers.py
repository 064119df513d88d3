"""Websockets: the live tail (live counts: stats.py). Staff sessions only, like the pages."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import weakref
from collections import deque
from typing import Any

import redis
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from streams_admin import conf, html, names, params, permissions
from streams_admin.filters import TailOptions
from streams_admin.redis import async_client
from streams_admin.tail import BLOCK_MS, Frame, Hub, Viewer
from streams_admin.values import Entry, id_key

WINDOW = 4  # messages sent but not yet acknowledged by the page; then frames wait (and drop)
WINDOW_BYTES = 1 << 20  # ... or this many characters sent but not yet acknowledged
MESSAGE_BYTES = 256 << 10  # a page that fell behind gets its queued frames in one message
HEARTBEAT = 10.0  # seconds of silence before a ping, to keep proxies from closing the socket
RESCAN = 5.0  # seconds between looks for new keys matching a firehose pattern
RESUME_WAIT = 5.0  # seconds a reconnecting firehose page has to say where each stream was

_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def render_row(key: bytes, entry: Entry) -> str:
    return html.entry_row(key, entry, conf.get("PREVIEW_CHARS"), show_stream=True)


def encoded_row(key: bytes, entry: Entry) -> str:
    """The row as a JSON string: encoded once per entry, then joined into every frame."""
    return json.dumps(render_row(key, entry))


def hub() -> Hub:
    """The running loop's hub (one per process under Daphne; one per test loop in tests)."""
    loop = asyncio.get_running_loop()
    if loop not in _hubs:
        _hubs[loop] = Hub(lambda: async_client(BLOCK_MS / 1000), encoded_row)
    return _hubs[loop]


def _by_token(positions: dict[bytes, str]) -> dict[str, str]:
    """Positions as the page keeps them: {stream token: ID}."""
    return {names.to_token(key): at for key, at in positions.items()}


def _positions(sent: dict[Any, Any]) -> dict[bytes, str]:
    """A page's {stream token: entry ID}; anything malformed is left out."""
    out: dict[bytes, str] = {}
    for token, entry_id in sent.items():
        if isinstance(entry_id, str) and params.ID_RE.match(entry_id):
            with contextlib.suppress(ValueError):
                out[names.from_token(token)] = entry_id
    return out


def _staff(scope: dict[str, Any]) -> bool:
    return permissions.may_view(scope.get("user"))


class JsonConsumer(AsyncJsonWebsocketConsumer):
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None,
                      **kwargs: Any) -> None:
        """A page's message that is not JSON text (junk, binary) is ignored: Channels' own
        receive would raise, and the socket would end."""
        try:
            content = json.loads(text_data or "")
        except ValueError:
            return
        await self.receive_json(content)


class TailConsumer(JsonConsumer):
    """Sends {"type": "live"} once its readers are in place, then {"type": "entries", seq, rows,
    last_id, read}, {"type": "skipped", count} and pings.

    A firehose (several streams) also sends "positions": {stream token: ID}, where each stream
    was read up to, in "live" and with every entries message. A page that reconnects with
    resume=1 sends them back first ({"resume": positions}) and each stream goes on from its own
    position: one last ID could skip another stream's entries that were still on their way.

    The page acknowledges each entries message ({"ack": seq}). The server never has more than
    WINDOW messages or WINDOW_BYTES in flight: a page that cannot keep up leaves frames in its
    bounded queue, which drops the oldest, rather than in server or proxy buffers that would
    grow. A page that fell behind gets its queued frames in one message (up to MESSAGE_BYTES).
    """

    viewer: Viewer
    task: asyncio.Task[None] | None = None
    resumed: asyncio.Future[dict[bytes, str]] | None = None  # resume=1: the page's positions

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
        wanted = self.options.filter
        self.viewer = Viewer(conf.get("TAIL_QUEUE_BYTES"), wanted.matches if wanted else None)
        self.keys: set[bytes] = set()
        self.sent = 0
        self.in_flight: deque[tuple[int, int]] = deque()  # (seq, characters) not yet acked
        self.in_flight_bytes = 0
        self.window = asyncio.Event()
        self.window.set()
        if self.options.resume:
            self.resumed = asyncio.get_running_loop().create_future()
        self.task = asyncio.create_task(self.run())

    async def dispatch(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.receive":
            # Acks, many a second: skip Channels' per-message thread hop that closes stale
            # database connections (this consumer never touches the database after connect).
            await self.websocket_receive(message)
        else:
            await super().dispatch(message)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and isinstance(content.get("resume"), dict):
            if self.resumed is not None and not self.resumed.done():
                self.resumed.set_result(_positions(content["resume"]))
            return
        if not (isinstance(content, dict) and isinstance(content.get("ack"), int)):
            return
        while self.in_flight and self.in_flight[0][0] <= content["ack"]:
            self.in_flight_bytes -= self.in_flight.popleft()[1]
        if len(self.in_flight) < WINDOW and self.in_flight_bytes < WINDOW_BYTES:
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
        resume: dict[bytes, str] | None = None
        if self.resumed is not None:
            with contextlib.suppress(TimeoutError):
                resume = await asyncio.wait_for(self.resumed, RESUME_WAIT)
        try:
            starts, backlog = await self.join_new_keys(self.options.since, resume)
        except (redis.ConnectionError, redis.TimeoutError):
            await self.send_json({"type": "error", "message": "Redis is not answering."})
            await self.close(code=4503)
            return
        live: dict[str, Any] = {"type": "live"}  # every reader is in place: nothing is missed
        if self.options.pattern:
            live["positions"] = _by_token(starts)
        await self.send_json(live)
        await self.send_backlog(backlog)
        loop = asyncio.get_running_loop()
        rescanned = loop.time()
        while True:
            await self.window.wait()
            try:
                async with asyncio.timeout(HEARTBEAT):
                    skipped, frames = await self.viewer.get(MESSAGE_BYTES)
            except TimeoutError:
                await self.send_json({"type": "ping"})
            else:
                if skipped:
                    await self.send_json({"type": "skipped", "count": skipped})
                await self.send_frames(frames)
            if self.options.pattern and loop.time() - rescanned > RESCAN:
                rescanned = loop.time()
                await self.send_backlog((await self.join_new_keys(since="0-0"))[1])

    async def join_new_keys(self, since: str | None, resume: dict[bytes, str] | None = None
                            ) -> tuple[dict[bytes, str], list[tuple[bytes, Entry]]]:
        """Join every key not joined yet, each after `since` or its own position in `resume`
        (a stream the page never heard of: from its start). Returns where each key starts
        (what the page has of it) and their backlog, oldest first."""
        keys = list(self.options.keys) or await self.scan()
        starts: dict[bytes, str] = {}
        backlog: list[tuple[bytes, Entry]] = []
        for key in keys:
            if key in self.keys:
                continue
            self.keys.add(key)
            after = since if resume is None else resume.get(key, "0-0")
            upto, entries = await hub().join(key, self.viewer, after, conf.get("TAIL_MAX_ROWS"))
            starts[key] = after if after is not None else upto
            backlog += [(key, e) for e in entries]
        backlog.sort(key=lambda pair: id_key(pair[1].id))
        return starts, backlog[-conf.get("TAIL_MAX_ROWS"):]

    async def scan(self) -> list[bytes]:
        found: list[bytes] = []
        limit = conf.get("TAIL_MAX_STREAMS")
        async for key in hub().redis.scan_iter(match=self.options.pattern, count=1000,
                                               _type="stream"):
            if not names.in_scope(key):
                continue
            found.append(key)
            if len(found) >= limit:
                break
        return found

    async def send_backlog(self, backlog: list[tuple[bytes, Entry]]) -> None:
        if backlog:
            entries = tuple(entry for _, entry in backlog)
            rows = tuple(encoded_row(key, entry) for key, entry in backlog)
            frame = Frame.of(entries, rows, entries[-1].id, len(entries))
            positions = {key: entry.id for key, entry in backlog}  # oldest first: the last wins
            await self.send_frames([self.viewer.wants(frame, entries)], positions)

    async def send_frames(self, frames: list[Frame],
                          positions: dict[bytes, str] | None = None) -> None:
        """One entries message for frames (oldest first).

        The rows are JSON strings already, so the message is joined, not encoded, per viewer;
        it reads exactly as json.dumps would write it.
        """
        self.sent += 1
        last_id = frames[-1].last_id
        if self.options.pattern and len(frames) > 1:
            # Several streams' frames: their rows in ID order, as one stream's would be.
            merged = heapq.merge(*(zip(f.order, f.rows, strict=True) for f in frames))
            rows = ", ".join(row for _, row in merged)
            last_id = max((f.last_id for f in frames), key=id_key)
        else:
            rows = ", ".join(frame.joined for frame in frames if frame.rows)
        read = sum(frame.read for frame in frames)
        where = ""
        if self.options.pattern:
            positions = positions or {frame.key: frame.last_id for frame in frames}
            where = f'"positions": {json.dumps(_by_token(positions))}, '
        text = (f'{{"type": "entries", "seq": {self.sent}, "rows": [{rows}], {where}'
                f'"last_id": {json.dumps(last_id)}, "read": {read}}}')
        self.in_flight.append((self.sent, len(text)))
        self.in_flight_bytes += len(text)
        if len(self.in_flight) >= WINDOW or self.in_flight_bytes >= WINDOW_BYTES:
            self.window.clear()
        await self.send(text_data=text)

