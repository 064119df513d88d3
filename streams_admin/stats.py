"""Live counts: one sampler per process serves every stats socket.

Each STATS_INTERVAL the sampler reads every stream some page watches, once for all of them,
through one Redis connection (on a cluster, one per node): the read model's own pipelines
(streams.queue_infos, then lag_counts for the lags Redis cannot give), so a live figure is
the figure the page shows.
Each stream's figures are JSON-encoded once per change; a socket gets the streams it watches
whose figures changed since its previous message (all of them in its first).

Supervised: on a Redis error the sampler tells the sockets it is reconnecting, and retries with
backoff; once it reads again they get "live" and every figure anew. It stops, and closes its
connection, when the last socket leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import redis
import redis.asyncio

from streams_admin import conf, names, params, streams
from streams_admin.bus import lua
from streams_admin.consumers import JsonConsumer, _staff
from streams_admin.redis import (
    Server,
    async_client,
    async_cluster_client,
    drop_startup_connections,
    is_cluster,
    server_from_info,
)

log = logging.getLogger(__name__)

MAX_KEYS = 200  # streams one socket watches
CHUNK = 500  # streams per round trip: a reply stays bounded however many pages watch
BACKOFF = (0.5, 10.0)  # seconds: first and longest wait before the sampler retries
HEARTBEAT = 10.0  # seconds of silence before a ping, to keep proxies from closing the socket
CLIENT_NAME = "streams-admin:stats"  # what CLIENT LIST shows for the sampler's connection

_samplers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Sampler] = (
    weakref.WeakKeyDictionary())


def figures(info: streams.StreamInfo, rate: float | None) -> dict[str, Any]:
    """What a page shows live of a stream, from the read model's StreamInfo."""
    return {
        "length": info.length,
        "pending": info.pending,
        "rate": rate,
        "groups": {names.to_token(g.name): {
            "pending": g.pending,
            "lag": g.lag,
            "lag_at_least": g.lag_counted == "at least",
            "lag_counted": bool(g.lag_counted),
            "entries_read": g.entries_read,
            "last_delivered_id": g.last_delivered_id,
        } for g in info.groups},
    }


@dataclass(eq=False)
class Watcher:
    """One socket: its streams, what it was last sent of each, and a wake-up."""

    keys: list[bytes]
    sent: dict[bytes, int] = field(default_factory=dict)  # stream -> version last sent
    state: str = "live"  # the sampler's state as this socket last heard it
    covered: bool = False  # a sample has read all its streams: its first message is whole
    greeted: bool = False  # it had its first message (sent even if none of its streams exist)
    ready: asyncio.Event = field(default_factory=asyncio.Event)


class Sampler:
    """The loop's sampler: started by the first watcher, stopped with the last."""

    def __init__(self, connect: Callable[[], redis.asyncio.Redis]) -> None:
        self.connect = connect
        self.watchers: set[Watcher] = set()
        self.task: asyncio.Task[None] | None = None
        self.current: dict[bytes, tuple[int, str]] = {}  # stream -> (version, its JSON)
        self.version = 0
        self.added: dict[bytes, tuple[float, int]] = {}  # stream -> (when, entries added)
        self.state, self.reason = "live", ""
        self.samples = 0  # ticks that read Redis, for the tests and the benchmark

    def join(self, watcher: Watcher) -> None:
        self.watchers.add(watcher)
        if all(key in self.current for key in watcher.keys):
            watcher.covered = True
            watcher.ready.set()  # sampled already: its first message goes out at once
        if self.task is None:
            self.task = asyncio.create_task(self.run())

    async def leave(self, watcher: Watcher) -> None:
        self.watchers.discard(watcher)
        if self.watchers or self.task is None:
            return
        task, self.task = self.task, None  # a socket joining meanwhile starts a new one
        task.cancel()
        self.current.clear()
        self.added.clear()
        self.state, self.reason = "live", ""  # until the next sampler finds otherwise
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def run(self) -> None:
        client: redis.asyncio.Redis | None = None
        server: Server | None = None
        backoff = BACKOFF[0]
        try:
            while True:
                try:
                    # In a thread: connect() may ask the server whether it is a cluster.
                    if client is None:
                        client = await asyncio.to_thread(self.connect)
                    server = server or server_from_info(await _server_info(client))
                    await self.sample(client, server)
                    if isinstance(client, redis.asyncio.RedisCluster):
                        await drop_startup_connections(client)  # one per node, no more
                except Exception as exc:  # supervised: say so, wait, try again
                    server = None
                    self.fail(exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, BACKOFF[1])
                    continue
                backoff = BACKOFF[0]
                await asyncio.sleep(conf.get("STATS_INTERVAL"))
        finally:
            if client is not None:
                await client.aclose()

    def fail(self, exc: Exception) -> None:
        if isinstance(exc, redis.ConnectionError | redis.TimeoutError | OSError):
            reason = "Redis is not answering."
        else:
            log.exception("live counts: sampling failed")
            reason = f"Sampling failed ({type(exc).__name__})."
        self.state, self.reason = "reconnecting", reason
        self.current.clear()  # once back, every socket gets every figure anew
        self.added.clear()
        self.wake()

    async def sample(self, client: redis.asyncio.Redis, server: Server) -> None:
        watchers = list(self.watchers)
        keys = sorted({key for watcher in watchers for key in watcher.keys})
        changed: set[bytes] = set()
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start:start + CHUNK]
            pipe = client.pipeline(transaction=False)
            streams.queue_infos(pipe, chunk)
            infos = streams.infos_from(chunk, await pipe.execute(raise_on_error=False), server)
            found = [info for info in infos if info is not None]
            unknown, calls = streams.lag_counts(found)
            counted = await lua.pipelined_async(client, calls) if calls else []
            changed |= self.update(streams.with_counts(found, unknown, counted))
            gone = [key for key, info in zip(chunk, infos, strict=True) if info is None]
            changed |= self.forget(gone)
        self.samples += 1
        recovered, self.state, self.reason = self.state != "live", "live", ""
        for watcher in watchers:
            # Only the sockets with news wake up: most ticks change a few streams.
            if recovered or not watcher.covered or not changed.isdisjoint(watcher.keys):
                watcher.covered = True
                watcher.ready.set()

    def update(self, infos: list[streams.StreamInfo]) -> set[bytes]:
        """The streams' figures as the sockets will get them; returns the ones that changed."""
        changed: set[bytes] = set()
        now = asyncio.get_running_loop().time()
        for info in infos:
            added = info.entries_added if info.entries_added is not None else info.length
            then, before = self.added.get(info.key, (now, added))
            self.added[info.key] = (now, added)
            # None on the first look, and when the counter went back (a restarted Redis).
            fresh = now <= then or added < before
            rate = None if fresh else round((added - before) / (now - then), 1)
            encoded = json.dumps(figures(info, rate))
            if info.key not in self.current or self.current[info.key][1] != encoded:
                self.version += 1
                self.current[info.key] = (self.version, encoded)
                changed.add(info.key)
        return changed

    def forget(self, keys: list[bytes]) -> set[bytes]:
        """Streams that do not exist (deleted, or never were): null to their pages, once."""
        changed = {key for key in keys if self.current.get(key, (0, ""))[1] != "null"}
        for key in changed:
            self.version += 1
            self.current[key] = (self.version, "null")
            self.added.pop(key, None)
        return changed

    def wake(self) -> None:
        for watcher in self.watchers:
            watcher.ready.set()

    def message(self, watcher: Watcher) -> str | None:
        """What the watcher has not heard yet: the sampler's state if it changed, else the
        figures of its streams that changed (JSON joined from each stream's encoding)."""
        if watcher.state != self.state:
            watcher.state = self.state
            if self.state == "live":
                watcher.sent.clear()  # figures anew after an outage
                watcher.ready.set()  # ... in the next message
            return json.dumps({"type": "state", "state": self.state, "reason": self.reason})
        if not watcher.covered:
            return None
        changed = []
        for key in watcher.keys:
            version, encoded = self.current.get(key, (0, ""))
            if version and watcher.sent.get(key) != version:
                watcher.sent[key] = version
                changed.append(f"{json.dumps(names.to_token(key))}: {encoded}")
        if not changed and watcher.greeted:
            return None
        watcher.greeted = True
        return f'{{"type": "stats", "streams": {{{", ".join(changed)}}}}}'


async def _server_info(client: redis.asyncio.Redis) -> dict[str, Any]:
    if isinstance(client, redis.asyncio.RedisCluster):  # one node's: they run one version
        return await client.info("server", target_nodes=redis.asyncio.RedisCluster.RANDOM)
    return await client.info("server")


def _connect() -> redis.asyncio.Redis:
    if is_cluster():
        # Pipelines routed by key: one round trip to each node holding some of the keys, one
        # connection per node; the lag counts (EVALSHA) go to each key's node too.
        return async_cluster_client(client_name=CLIENT_NAME)  # type: ignore[return-value]
    client = async_client()
    # Named, on every (re)connection: an operator's CLIENT LIST shows what holds it.
    client.connection_pool.connection_kwargs["client_name"] = CLIENT_NAME
    return client


def sampler() -> Sampler:
    """The running loop's sampler (one per process under Daphne; one per test loop in tests)."""
    loop = asyncio.get_running_loop()
    if loop not in _samplers:
        _samplers[loop] = Sampler(_connect)
    return _samplers[loop]


def watched_keys(query_string: bytes) -> list[bytes]:
    """The streams a page asks for (?key=token...), in scope, at most MAX_KEYS."""
    q = parse_qs(query_string.decode("latin-1"))
    keys = [key for key in map(params.name, q.get("key", []))
            if key is not None and names.in_scope(key)]
    return list(dict.fromkeys(keys))[:MAX_KEYS]


class StatsConsumer(JsonConsumer):
    """Sends {"type": "stats", "streams": {token: figures}}: every stream it watches first,
    then the ones whose figures changed (null: the stream does not exist); {"type": "state",
    "state": "reconnecting"|"live", "reason"} when the sampler loses or regains Redis; a ping
    after HEARTBEAT of silence."""

    task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        if not _staff(self.scope):
            await self.close(code=4003)
            return
        try:
            keys = watched_keys(self.scope["query_string"])
        except params.BadParam:
            await self.close(code=4400)
            return
        await self.accept()
        self.watcher = Watcher(keys)
        self.sampler = sampler()
        self.sampler.join(self.watcher)
        self.task = asyncio.create_task(self.run())

    async def disconnect(self, code: int) -> None:
        if self.task is None:
            return
        self.task.cancel()
        try:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        finally:
            await self.sampler.leave(self.watcher)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """The page has nothing to say: whatever it sends is ignored."""

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        sent = loop.time()
        while True:
            # Woken every tick, changed or not: the silence is counted from the last message.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, sent + HEARTBEAT - loop.time())):
                    await self.watcher.ready.wait()
            self.watcher.ready.clear()
            text = self.sampler.message(self.watcher)
            if text is None and loop.time() - sent >= HEARTBEAT:
                text = '{"type": "ping"}'
            if text is not None:
                await self.send(text_data=text)
                sent = loop.time()
