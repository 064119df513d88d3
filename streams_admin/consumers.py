"""Websockets: the live tail (live counts: stats.py). Staff sessions only, like the pages."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import weakref
from collections import deque
from collections.abc import Mapping
from typing import Any

import redis
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from streams_admin import conf, names, params, permissions
from streams_admin.filters import TailOptions
from streams_admin.redis import async_client, async_cluster_client, async_node_client, is_cluster
from streams_admin.tail import BLOCK_MS, CONTROL_NAME, ClusterConnect, Frame, Hub, Viewer, shorten
from streams_admin.tail_messages import (
    MESSAGE_BYTES,
    by_token,
    encoded_row,
    entries_messages,
    render_row,
)
from streams_admin.values import Entry, id_key

__all__ = ["encoded_row", "render_row"]  # the benchmark measures them here

log = logging.getLogger(__name__)

WINDOW = 4  # messages sent but not yet acknowledged by the page; then frames wait (and drop)
WINDOW_BYTES = 1 << 20  # ... or this many characters sent but not yet acknowledged
HEARTBEAT = 10.0  # seconds of silence before a ping, to keep proxies from closing the socket
RESCAN = 5.0  # seconds between looks for new keys matching a firehose pattern
RESUME_WAIT = 5.0  # seconds a reconnecting firehose page has to say where each stream was
MAX_BACKOFF = 5.0  # seconds between a tail's attempts to join its streams while Redis is down
FIREHOSE_KEY_BYTES = 512  # longer key names are left out of a firehose (its positions stay small)
MAX_TEXT = 64 << 10  # characters in a message from a page; a longer one is ignored
MAX_DEPTH = 8  # nesting in a message from a page; a deeper one is ignored
MAX_ID_PART = (1 << 64) - 1
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[\[\]{}]")

_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def hub() -> Hub:
    """The running loop's hub (one per process under Daphne; one per test loop in tests)."""
    loop = asyncio.get_running_loop()
    if loop not in _hubs:
        _hubs[loop] = Hub(lambda: async_client(BLOCK_MS / 1000), encoded_row, ClusterConnect(
            is_cluster, lambda: async_cluster_client(client_name=CONTROL_NAME),
            lambda address: async_node_client(address)))
    return _hubs[loop]


def valid_id(text: str) -> bool:
    """An entry ID Redis accepts: "ms-seq" (or "ms"), each part a 64-bit number."""
    return bool(params.ID_RE.match(text)) and all(int(part) <= MAX_ID_PART
                                                  for part in text.split("-"))


def _positions(sent: dict[Any, Any]) -> dict[bytes, str]:
    """A page's {stream token: entry ID}; anything malformed is left out."""
    out: dict[bytes, str] = {}
    for token, entry_id in sent.items():
        if isinstance(entry_id, str) and valid_id(entry_id):
            with contextlib.suppress(ValueError):
                out[names.from_token(token)] = entry_id
    return out


def too_deep(text: str, limit: int = MAX_DEPTH) -> bool:
    """Is JSON text nested deeper than limit? Counted on the brackets outside strings."""
    depth = 0
    for bracket in _BRACKETS.finditer(_STRINGS.sub("", text)):
        depth += 1 if bracket[0] in "[{" else -1
        if depth > limit:
            return True
    return False


def trouble(exc: redis.RedisError) -> str:
    if isinstance(exc, redis.ResponseError):
        return f"Redis refused: {exc}"
    return f"Redis is not answering ({exc})"


def refused(key: bytes, exc: redis.ResponseError) -> str:
    shown = shorten(names.show(key))
    if str(exc).startswith("WRONGTYPE"):
        return f"{shown} is not a stream."
    return f"Redis refused to tail {shown}: {exc}"


def _staff(scope: Mapping[str, Any]) -> bool:
    return permissions.may_view(scope.get("user"))


class JsonConsumer(AsyncJsonWebsocketConsumer):
    max_text = MAX_TEXT

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None,
                      **kwargs: Any) -> None:
        """A page's message that is not JSON text (junk, binary), too long or too deeply
        nested is ignored: Channels' own receive would raise (json.loads recurses once per
        bracket), and the socket would end."""
        if not text_data or len(text_data) > self.max_text or too_deep(text_data):
            return
        try:
            content = json.loads(text_data)
        except ValueError:
            return
        await self.receive_json(content)


class TailConsumer(JsonConsumer):
    """Sends {"type": "live"} once its readers are in place (with "last_id", where the page's
    rows begin), then {"type": "entries", seq, rows, last_id, read}, {"type": "skipped",
    count} and pings. While its streams are not being read it says {"type": "reconnecting",
    reason}, then "live" again once they are; nothing is lost meanwhile (each stream is read
    on from its last ID). A stream that is not one (or that Redis refuses to read) gets
    {"type": "error", message} and the socket closes (4404).

    A firehose (several streams) sends "positions": {stream token: ID} instead of last_id,
    where each stream was read up to, in "live" and with every entries message. A page that
    reconnects with resume=1 sends them back first ({"resume": positions}) and each stream
    goes on from its own position: one last ID could skip another stream's entries that were
    still on their way. A stream of a firehose that turns into another type gets {"type":
    "error", stream, message} and the others go on. A firehose leaves out key names over
    FIREHOSE_KEY_BYTES, so that its positions (and the page's resume) stay small.

    The page acknowledges each entries message ({"ack": seq}). The server never has more than
    WINDOW messages or WINDOW_BYTES in flight: a page that cannot keep up leaves frames in its
    bounded queue, which drops the oldest, rather than in server or proxy buffers that would
    grow. A page that fell behind gets its queued frames in one message (up to MESSAGE_BYTES;
    more go out in several, so that none nears Daphne's 1 MiB limit).
    """

    viewer: Viewer
    task: asyncio.Task[None] | None = None
    resumed: asyncio.Future[dict[bytes, str]] | None = None  # resume=1: the page's positions

    @property
    def max_text(self) -> int:  # type: ignore[override]
        return MAX_TEXT + conf.get("TAIL_MAX_STREAMS") * (FIREHOSE_KEY_BYTES * 2)

    async def connect(self) -> None:
        if not _staff(self.scope):
            await self.close(code=4003)
            return
        await self.accept()
        try:
            self.options = TailOptions.from_query(self.scope["query_string"])
            since = self.options.since
            if since is not None and not valid_id(since):
                raise params.BadParam(f"“{since}” is past the last possible entry ID "
                                      f"({MAX_ID_PART}-{MAX_ID_PART}).")
        except params.BadParam as exc:
            await self.send_json({"type": "error", "message": str(exc)})
            await self.close(code=4400)
            return
        wanted = self.options.filter
        self.viewer = Viewer(conf.get("TAIL_QUEUE_BYTES"), wanted.matches if wanted else None)
        self.keys: set[bytes] = set()
        self.outbox: deque[str] = deque()  # entries messages ready, waiting for the window
        self.sent = 0
        self.in_flight: deque[tuple[int, int]] = deque()  # (seq, characters) not yet acked
        self.in_flight_bytes = 0
        self.trouble: str | None = None  # why this socket's own Redis calls fail now
        self.told: str | None = None  # the trouble the page was last told of (None: live)
        self.quiet_since = asyncio.get_running_loop().time()
        if self.options.resume:
            self.resumed = asyncio.get_running_loop().create_future()
        self.task = asyncio.create_task(self.run())

    async def dispatch(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.receive":
            # Acks, many a second: skip Channels' per-message thread hop that closes stale
            # database connections (this consumer never touches the database after connect).
            await self.websocket_receive(message)  # type: ignore[arg-type]  # checked above
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
        self.viewer.ready.set()  # the window may be open again

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

    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None,  # type: ignore[override]  # as Channels' own
                   close: bool = False) -> None:
        self.quiet_since = asyncio.get_running_loop().time()  # the next ping is due from here
        await super().send(text_data, bytes_data, close)

    async def send_json(self, content: Any, close: bool = False) -> None:
        await self.send(text_data=json.dumps(content), close=close)  # Channels' skips send()

    async def run(self) -> None:
        """Supervised: whatever goes wrong, the page hears of it rather than a silence."""
        try:
            if await self.start():
                await self.follow()
        except Exception:
            log.exception("live tail failed")
            with contextlib.suppress(Exception):
                await self.send_json({"type": "error", "message": "The live tail failed."})
                await self.close(code=1011)

    async def start(self) -> bool:
        """Join the streams, retrying while Redis is down; False if it refuses the tail."""
        resume: dict[bytes, str] | None = None
        if self.resumed is not None:
            with contextlib.suppress(TimeoutError):
                resume = await asyncio.wait_for(self.resumed, RESUME_WAIT)
        backoff = 0.5
        while True:
            try:
                starts, backlog = await self.join_new_keys(self.options.since, resume)
                break
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                await self.tell(trouble(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                if asyncio.get_running_loop().time() - self.quiet_since >= HEARTBEAT:
                    await self.send_json({"type": "ping"})
            except redis.ResponseError as exc:  # a firehose's keys are skipped one by one
                keys = self.options.keys
                await self.send_json({"type": "error", "message": refused(keys[0], exc)
                                      if keys else trouble(exc)})
                await self.close(code=4404)
                return False
        live: dict[str, Any] = {"type": "live"}  # every reader is in place: nothing is missed
        if self.options.pattern:
            live["positions"] = by_token(starts)
        else:
            live["last_id"] = starts[self.options.keys[0]]
        await self.send_json(live)
        self.told = None
        self.viewer.tell()  # a reader may have run into trouble meanwhile: follow() checks
        self.outbox.extend(entries_messages(backlog, bool(self.options.pattern)) if backlog
                           else ())
        return True

    async def follow(self) -> None:
        """Until the socket ends: tell the page of failed streams and of the readers' state,
        send what the window allows, rescan a firehose's pattern, ping when quiet."""
        loop = asyncio.get_running_loop()
        rescan_at = loop.time() + RESCAN
        while True:
            self.viewer.ready.clear()
            if self.viewer.failed:
                if not await self.drop_failed():
                    return
            elif self.viewer.news:
                self.viewer.news = False
                await self.tell(self.trouble or hub().trouble(self.keys))
            elif self.window_open() and (self.outbox or self.viewer.frames):
                await self.send_entries()
            elif self.options.pattern and loop.time() >= rescan_at:
                await self.rescan()
                rescan_at = loop.time() + (1.0 if self.trouble else RESCAN)
            elif loop.time() - self.quiet_since >= HEARTBEAT:
                await self.send_json({"type": "ping"})
            else:
                wake = self.quiet_since + HEARTBEAT
                if self.options.pattern:
                    wake = min(wake, rescan_at)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(wake):
                        await self.viewer.ready.wait()

    def window_open(self) -> bool:
        return len(self.in_flight) < WINDOW and self.in_flight_bytes < WINDOW_BYTES

    async def tell(self, trouble: str | None) -> None:
        """Say whether the streams are being read, when that changed."""
        if trouble != self.told:
            self.told = trouble
            await self.send_json({"type": "reconnecting", "reason": trouble} if trouble
                                 else {"type": "live"})

    async def drop_failed(self) -> bool:
        """Tell the page of streams that stopped being streams; False if the socket ends."""
        failed, self.viewer.failed = self.viewer.failed, {}
        for key, reason in failed.items():
            self.keys.discard(key)
            if not self.options.pattern:
                await self.send_json({"type": "error", "message": reason})
                await self.close(code=4404)
                return False
            await self.send_json({"type": "error", "stream": names.to_token(key),
                                  "message": reason})
        return True

    async def rescan(self) -> None:
        try:
            backlog = (await self.join_new_keys(since="0-0"))[1]
        except redis.RedisError as exc:
            self.trouble = trouble(exc)
        else:
            self.trouble = None
            self.outbox.extend(entries_messages(backlog, True) if backlog else ())
        await self.tell(self.trouble or hub().trouble(self.keys))

    async def join_new_keys(self, since: str | None, resume: dict[bytes, str] | None = None
                            ) -> tuple[dict[bytes, str], list[Frame]]:
        """Join every key not joined yet, each after `since` or its own position in `resume`
        (a stream the page never heard of: from its start). Returns where each key starts
        (what the page has of it) and their backlog: a frame per stream, oldest first, up to
        TAIL_MAX_ROWS in all. All or nothing: if Redis fails, the keys joined are left."""
        keys = list(self.options.keys) or await hub().scan(
            self.options.pattern, conf.get("TAIL_MAX_STREAMS"), self.followable)
        starts: dict[bytes, str] = {}
        backlog: list[tuple[bytes, Entry]] = []
        try:
            for key in keys:
                if key in self.keys or key in starts:
                    continue
                after = since if resume is None else resume.get(key, "0-0")
                try:
                    upto, entries = await hub().join(key, self.viewer, after,
                                                     conf.get("TAIL_MAX_ROWS"))
                except redis.ResponseError as exc:
                    if not self.options.pattern:
                        raise
                    self.viewer.fail(key, refused(key, exc))
                    continue
                starts[key] = after if after is not None else upto
                backlog += [(key, e) for e in entries]
        except BaseException:
            for key in starts:
                await hub().leave(key, self.viewer)
            self.viewer.drop(starts)
            raise
        self.keys.update(starts)
        backlog.sort(key=lambda pair: id_key(pair[1].id))
        return starts, self.frames(backlog[-conf.get("TAIL_MAX_ROWS"):])

    def followable(self, key: bytes) -> bool:
        return len(key) <= FIREHOSE_KEY_BYTES and names.in_scope(key)

    def frames(self, backlog: list[tuple[bytes, Entry]]) -> list[Frame]:
        """Backlog entries (oldest first) as this viewer's frames, one per stream."""
        by_key: dict[bytes, list[Entry]] = {}
        for key, entry in backlog:
            by_key.setdefault(key, []).append(entry)
        frames = []
        for key, listed in by_key.items():
            entries = tuple(listed)
            rows = tuple(encoded_row(key, entry) for entry in entries)
            frame = Frame.of(entries, rows, entries[-1].id, len(entries), key)
            frames.append(self.viewer.wants(frame, entries))
        return frames

    async def send_entries(self) -> None:
        """The next entries message: ready in the outbox, or made from the queued frames."""
        if not self.outbox:
            skipped, frames = self.viewer.take(MESSAGE_BYTES)
            if skipped:
                await self.send_json({"type": "skipped", "count": skipped})
            self.outbox.extend(entries_messages(frames, bool(self.options.pattern)))
        self.sent += 1
        text = f'{{"type": "entries", "seq": {self.sent}, {self.outbox.popleft()}'
        self.in_flight.append((self.sent, len(text)))
        self.in_flight_bytes += len(text)
        await self.send(text_data=text)
