"""One reading connection of the live tail: a single XREAD BLOCK over many streams.

A process has a few of these (tail.READERS) however many streams its sockets watch, so its
Redis connections stay a handful. A new stream must not wait for the block in flight to end:
CLIENT UNBLOCK, sent on the hub's control connection, ends it early (as if it timed out), and
the loop issues its XREAD again with every stream it has now.

On a cluster a shard reads one primary's streams. XREAD with keys of different slots fails
(CROSSSLOT) even on one node, so a single blocking XREAD cannot cover them: one blocking XREAD
per slot would need a connection per slot watched (thousands), so instead the shard polls: a
pipeline of one non-blocking XREAD per slot group every POLL_INTERVAL, on one connection per
primary. The trade-off: commands grow with the slots watched and idle streams cost a poll,
but connections stay one per primary, and an entry waits at most POLL_INTERVAL. A failed or
redirected read (failover, resharding) makes the hub ask for the slot map again and move the
streams to the shard of the node holding them now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.typing import KeyT, StreamIdT

from streams_admin import tail_cluster

if TYPE_CHECKING:
    from streams_admin.tail import Hub, Reader

log = logging.getLogger(__name__)

FRAME_INTERVAL = 0.05  # seconds: a shard hands out at most 20 frames/s per stream
BLOCK_MS = 1000
READ_COUNT = 1000  # entries per stream per XREAD
MAX_BACKOFF = 5.0  # seconds between a failing shard's attempts, at most
POLL_INTERVAL = 0.05  # seconds between a cluster shard's reads when nothing came
# (a slot group quiet for a while is read every tail_cluster.IDLE_EVERY-th time only)
WAKE_TRIES = 50  # x 20 ms (about one block): an XREAD not yet blocking cannot be unblocked
READ_NAME = "streams-admin:tail-read"  # in CLIENT LIST


def _cluster_moved(exc: Exception) -> bool:
    """A node gone or failing over, or a key's slot served elsewhere now."""
    return isinstance(exc, redis.ConnectionError | redis.TimeoutError
                      | redis.exceptions.AskError | redis.exceptions.TryAgainError
                      | redis.exceptions.ClusterDownError) or \
        str(exc).startswith(("MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN"))


class Shard:
    """One reading connection and its task, started with its first stream and stopped with
    its last. Supervised: a failed read is retried with backoff, and `trouble` says why it
    is not reading until a read works again (the viewers are told of each change)."""

    def __init__(self, hub: Hub, node: str | None = None) -> None:
        self.hub = hub
        self.node = node  # on a cluster, host:port of the primary whose streams it reads
        self.readers: dict[bytes, Reader] = {}
        self.trouble: str | None = None
        self.reads = 0  # XREAD calls, for tests and benchmarks
        self._client: redis.asyncio.Redis | None = None
        self._client_id: int | None = None  # 0: CLIENT ID refused (an ACL): never woken
        self._task: asyncio.Task[None] | None = None
        self._waking: asyncio.Task[None] | None = None
        self._generation = 0  # bumped when a stream is added
        self._issued = 0  # the generation the XREAD in flight was issued with
        self._blocked = False
        self._slot_polls = tail_cluster.SlotPolls()  # on a cluster: which slot groups to read

    def add(self, reader: Reader) -> None:
        self.readers[reader.key] = reader
        self._generation += 1
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="tail shard")
        elif self._blocked and (self._waking is None or self._waking.done()):
            self._waking = asyncio.create_task(self._wake(), name="tail shard wake")

    async def remove(self, reader: Reader) -> None:
        """Forget a stream (an XREAD still naming it is harmless: its answer is dropped); the
        last one stops the task and closes the connection."""
        if self.readers.get(reader.key) is reader:
            del self.readers[reader.key]
        if self.readers or self._task is None:
            return
        tasks = [t for t in (self._task, self._waking) if t is not None]
        client, self._client, self._client_id = self._client, None, None
        self._task = self._waking = None
        self.trouble = None
        tasks = [t for t in tasks if t is not asyncio.current_task()]  # that one just ends
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if client is not None:
            await client.aclose()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = 0.1
        while self._task is asyncio.current_task():
            started = loop.time()
            try:
                readers, reply = await self._read()
                if reply:
                    self._hand_out(readers, reply)
            except Exception as exc:  # supervised: whatever it was, retry and say so
                if not await self._recover(exc):
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = 0.1
            self._set_trouble(None)
            if reply:
                await asyncio.sleep(max(0.0, FRAME_INTERVAL - (loop.time() - started)))

    def _hand_out(self, readers: dict[bytes, Reader], reply: Any) -> None:
        # RESP2 answers [[key, entries], ...], RESP3 {key: entries}.
        for key, items in reply.items() if isinstance(reply, dict) else reply:
            reader = readers.get(key)
            if items and reader is not None and self.readers.get(key) is reader:
                reader.hand_out(items)

    async def _read(self) -> tuple[dict[bytes, Reader], object]:
        if self.node is not None:
            return await self._poll()
        if self._client is None:
            self._client = self.hub.connect()
            self._client.set_retry(Retry(NoBackoff(), 0))  # this loop retries, and says why
            self._client.connection_pool.connection_kwargs["client_name"] = READ_NAME
        if self._client_id is None:
            try:
                self._client_id = await self._client.client_id()
            except redis.ResponseError:
                self._client_id = 0
            self._set_trouble(None)  # Redis answers again: reading resumes from last_id
        readers = dict(self.readers)
        streams: dict[KeyT, StreamIdT] = {key: r.last_id for key, r in readers.items()}
        self._issued, self._blocked = self._generation, True
        try:
            reply = await self._client.xread(streams, count=READ_COUNT, block=BLOCK_MS)
        finally:
            self._blocked = False
        self.reads += 1
        return readers, reply

    async def _poll(self) -> tuple[dict[bytes, Reader], object]:
        """A cluster shard's read: one XREAD per slot group, in one pipeline; a pause when
        nothing came."""
        if self._client is None:
            assert self.node is not None and self.hub.cluster is not None
            self._client = self.hub.cluster.node(self.node)
            self._client.set_retry(Retry(NoBackoff(), 0))  # this loop retries, and says why
            self._client.connection_pool.connection_kwargs["client_name"] = READ_NAME
        readers = dict(self.readers)
        slots = self._slot_polls.due(readers)
        pipe = self._client.pipeline(transaction=False)
        for streams in slots.values():
            pipe.xread(streams, count=READ_COUNT)
        reply: list = []
        errors: list[Exception] = []
        answers = await pipe.execute(raise_on_error=False) if slots else []
        for (slot, streams), answer in zip(slots.items(), answers, strict=True):
            if isinstance(answer, Exception) and tail_cluster.migrating(answer):
                answer = await tail_cluster.read_migrating(self.hub, streams, READ_COUNT)
            self._slot_polls.heard(slot, not isinstance(answer, Exception) and bool(answer))
            if isinstance(answer, Exception):
                errors.append(answer)  # that slot group's: a key moved, or not a stream
            else:
                reply += answer.items() if isinstance(answer, dict) else answer or []
        self.reads += 1
        if errors:  # the other groups' entries first: one slot's trouble stalls no other
            self._hand_out(readers, reply)
            raise errors[0]
        if not reply:
            await asyncio.sleep(POLL_INTERVAL)
        return readers, reply

    async def _recover(self, exc: Exception) -> bool:
        """After a failed read: streams that turned into another type fail their own viewers
        and the others are read again at once (True); any other error is the shard's trouble,
        and its viewers are told until a read works. On a cluster, a node down or a key
        redirected moves the streams to the node holding them now (True if any moved)."""
        if self.node is not None and _cluster_moved(exc):
            self._set_trouble(f"Redis is not answering ({exc})"
                              if isinstance(exc, redis.ConnectionError | redis.TimeoutError)
                              else f"The cluster is moving this stream ({exc}).")
            log.warning("tail: %s; reading from the cluster's slot map again", self.trouble)
            return await self.hub.rehome()
        if isinstance(exc, redis.ResponseError):
            with contextlib.suppress(redis.RedisError):
                if await self.hub.fail_wrong_types(list(self.readers)):
                    return True
            reason = f"Redis refused the read: {exc}"
        elif isinstance(exc, redis.RedisError):
            self._client_id = None  # a new connection, a new ID
            reason = f"Redis is not answering ({exc})"
        else:
            log.exception("tail reader failed")
            reason = f"The reader failed ({type(exc).__name__}); retrying."
        log.warning("tail: %s; retrying", reason)
        self._set_trouble(reason)
        return False

    def _set_trouble(self, reason: str | None) -> None:
        if reason != self.trouble:
            self.trouble = reason
            for reader in self.readers.values():
                for viewer in reader.viewers:
                    viewer.tell()

    async def _wake(self) -> None:
        """End the XREAD in flight early if it lacks streams added since it was issued."""
        for _ in range(WAKE_TRIES):
            if not self._blocked or self._issued == self._generation or not self._client_id:
                return
            with contextlib.suppress(redis.RedisError):
                # mypy cannot type a lambda with a default argument (binding the id now).
                if await self.hub.command(lambda r, to=self._client_id: r.client_unblock(to)):  # type: ignore[misc]
                    return
            await asyncio.sleep(0.02)  # sent, but not blocking in Redis yet
