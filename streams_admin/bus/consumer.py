"""The consumer loop: read with XREADGROUP, bounded in-flight handlers, reclaim, reconnect."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError
from redis.typing import StreamIdT

from streams_admin.bus import coalesce
from streams_admin.bus.cluster import TRANSIENT, guarded
from streams_admin.bus.cluster_send import slot_of
from streams_admin.bus.config import BusConfig
from streams_admin.bus.envelope import text
from streams_admin.bus.handling import Handling, Subscription, cancelled_quietly

log = logging.getLogger("streams_admin.bus")

Unavailable = coalesce.Unavailable
EntryKey = tuple[str, str]  # (stream, entry ID)
# How long past its BLOCK a read on a cluster may take to answer before it counts as lost.
READ_GRACE_S = 5.0


@dataclass
class Consumer:
    config: BusConfig
    client: Callable[[], aioredis.Redis]
    blocking: Callable[[], aioredis.Redis]  # no socket timeout: XREADGROUP BLOCK waits
    handling: Handling
    subscriptions: dict[str, Subscription]  # by stream key
    _in_flight: dict[EntryKey, asyncio.Task[None] | None] = field(default_factory=dict)
    _retry_after: dict[EntryKey, float] = field(default_factory=dict)
    _cursors: dict[str, str] = field(default_factory=dict)
    _slot_free: asyncio.Event = field(default_factory=asyncio.Event)
    _stopping: bool = False
    _reading: asyncio.Future[Any] | None = None
    _failures: int = 0
    _blocked: bool = False  # in the blocking part of a read (acks written with it are done)
    # On a cluster: one XREADGROUP in flight per slot's streams (cluster.py), kept across turns.
    _reads: dict[tuple[str, ...], asyncio.Task[Any]] = field(default_factory=dict)

    @property
    def group(self) -> str:
        return self.handling.group

    @property
    def name(self) -> str:
        return self.handling.consumer

    async def run(self) -> None:
        """Consume until stop(); Redis going away is waited out with backoff."""
        in_hand = self._in_hand
        self.handling.metrics.live.append(in_hand)
        try:
            while not self._stopping:
                await self._run_once()
        finally:
            self.handling.metrics.live.remove(in_hand)
            if self._stopping:
                await self._finish()
            else:  # cancelled from outside: no graceful stop, entries stay pending
                for task in list(self._in_flight.values()):
                    if task is not None:
                        task.cancel()

    async def _run_once(self) -> None:
        try:
            await self._ensure_groups()
            await self._cancel_reads()
            await self._recover_own()  # our own pending list first, then new entries
            await self._read_loop()
        except asyncio.CancelledError:
            if not self._stopping:
                raise
        except ResponseError as error:
            if "NOGROUP" in str(error):
                log.warning("group %s is gone; creating it again", self.group)
            else:  # e.g. WRONGTYPE: an operator may fix the key; keep trying, slowly
                await self._back_off(error)
        except TRANSIENT as error:  # standalone: Redis away; a cluster: also a failover
            await self._back_off(error)
        except Exception as error:  # noqa: BLE001 - supervised: the loop never just ends
            # Seen: a write on a connection a failover has just closed raises TypeError from
            # asyncio (cpython#136234) through redis-py's cluster client. Whatever it is,
            # ending here would strand every entry still to come.
            log.exception("consumer %s: unexpected error", self.name)
            await self._back_off(error)

    async def _back_off(self, error: Exception) -> None:
        delay = min(self.config.backoff_s * 2 ** self._failures, self.config.backoff_max_s)
        self._failures += 1
        log.warning("consumer %s: %r; retrying in %.2fs", self.name, error, delay)
        await asyncio.sleep(delay)

    async def stop(self) -> None:
        self._stopping = True
        self._slot_free.set()
        if self._reading is not None and self._blocked:
            # Cancelling the blocked XREADGROUP drops its connection. Should Redis have just
            # delivered entries, they wait in our pending list (taken up on our next start,
            # or reclaimed by another consumer after min_idle).
            self._reading.cancel()
        for read in self._reads.values():  # on a cluster: the other slots' blocked reads
            read.cancel()

    async def _ensure_groups(self) -> None:
        for stream in self.subscriptions:
            try:
                # From "0" (as the spec does): events published before the group existed count.
                await self.client().xgroup_create(stream, self.group, id="0", mkstream=True)
            except ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    raise

    async def _read_loop(self) -> None:
        next_check = time.monotonic() + self.config.claim_interval_s
        while not self._stopping:
            await self._wait_for_slot()
            if time.monotonic() >= next_check:
                # On a cluster other slots' reads are in flight: what they were just given is
                # in our pending list but not in hand yet, so only older entries are ours.
                await self._recover_own(self.config.min_idle_ms if self._reads else None)
                await self._autoclaim()
                next_check = time.monotonic() + self.config.claim_interval_s
            if self._stopping or self._free() == 0:
                continue
            reply = await self._read_new()
            self._failures = 0
            for stream, entries in reply or []:
                for entry_id, fields in entries:
                    self._dispatch(text(stream), text(entry_id), fields, 1)

    async def _read_new(self) -> Any:
        # count bounds what is prefetched: backpressure, not an unbounded queue in memory.
        count = max(1, self._free() // len(self.subscriptions))
        block = min(self.config.block_ms, int(self.config.claim_interval_s * 1000))
        # Started eagerly, so stop() never cancels a read that was not sent yet.
        self._reading = asyncio.Task(self._read_raw(count, block),
                                     loop=asyncio.get_running_loop(), eager_start=True)
        try:
            return await self._reading
        finally:
            self._reading = None

    async def _read_raw(self, count: int, block: int) -> list[tuple[Any, list[Any]]]:
        """XREADGROUP, with the acks waiting to go out written just before it: one round
        trip per batch read instead of two."""
        if self.handling.cluster:
            return await self._read_slots(count, block)
        acks = self.handling.acks
        command: coalesce.Command
        command = ("XREADGROUP", "GROUP", self.group, self.name, "COUNT", count, "BLOCK", block,
                   "STREAMS", *self.subscriptions, *[">"] * len(self.subscriptions))
        pool = self.blocking().connection_pool
        connection = await pool.get_connection()
        try:
            await acks.send_before(connection, acks.take_all(), command)
            if self._stopping:
                raise asyncio.CancelledError
            self._blocked = True  # from here on stop() may cancel: the acks are through
            try:
                reply = await coalesce.reply(connection)
            finally:
                self._blocked = False
        except BaseException:
            await connection.disconnect()
            raise
        finally:
            await pool.release(connection)
        if isinstance(reply, Exception):
            raise reply
        # RESP3 answers a map of streams, RESP2 a list of [stream, entries] pairs.
        streams = reply.items() if isinstance(reply, dict) else reply or []
        return [(stream, [(i, _pairs(f)) for i, f in entries]) for stream, entries in streams]

    async def _read_slots(self, count: int, block: int) -> list[tuple[Any, list[Any]]]:
        """On a cluster one XREADGROUP may only name streams of one slot: one blocking read
        per slot, all in flight at once; whichever answers first is handled, the others
        keep waiting for the next turn. Acks go out by themselves (their own pipelines)."""
        client = self.blocking()
        await client.initialize()  # learn the slot map once, not in each read at once
        for streams in self._slot_groups():
            if streams not in self._reads:
                self._reads[streams] = asyncio.create_task(guarded(client, client.execute_command(
                    "XREADGROUP", "GROUP", self.group, self.name, "COUNT", count,
                    "BLOCK", block, "STREAMS", *streams, *[">"] * len(streams)),
                    timeout=block / 1000 + READ_GRACE_S))
        if self._stopping:  # stop() came while we started reads: it did not cancel these
            raise asyncio.CancelledError
        self._blocked = True
        try:
            await asyncio.wait(self._reads.values(), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._blocked = False
        replies = []
        for streams, read in list(self._reads.items()):
            if read.done():
                del self._reads[streams]
                replies.append(read.result())
        # Parsed by redis-py: [stream, [(id, fields), ...]] pairs (a map under RESP3).
        return [pair for reply in replies
                for pair in (reply.items() if isinstance(reply, dict) else reply or [])]

    async def _cancel_reads(self) -> None:
        """Entries a cancelled read was given wait in our pending list (_recover_own)."""
        for read in self._reads.values():
            await cancelled_quietly(read)
        self._reads.clear()

    def _slot_groups(self) -> list[tuple[str, ...]]:
        by_slot: dict[int, list[str]] = {}
        for stream in self.subscriptions:
            by_slot.setdefault(slot_of(stream), []).append(stream)
        return [tuple(streams) for streams in by_slot.values()]

    def _in_hand(self) -> int:
        return len(self._in_flight)

    def _free(self) -> int:
        return self.config.max_in_flight - len(self._in_flight)

    async def _wait_for_slot(self) -> None:
        while self._free() <= 0 and not self._stopping:
            self._slot_free.clear()
            await self._slot_free.wait()

    def _dispatch(self, stream: str, entry_id: str, fields: Any, deliveries: int) -> None:
        key = (stream, entry_id)
        if key in self._in_flight or self._stopping:
            return
        self._retry_after.pop(key, None)
        self._in_flight[key] = None  # held from now until acked (or left pending)
        # Eager: a handler that never waits runs to its end right here, without a loop turn.
        task = asyncio.Task(self._process(key, fields, deliveries),
                            loop=asyncio.get_running_loop(), eager_start=True)
        if not task.done() and key in self._in_flight:
            self._in_flight[key] = task

    async def _process(self, key: EntryKey, fields: Any, deliveries: int) -> None:
        stream, entry_id = key
        try:
            commit = await self.handling.process(
                self.subscriptions[stream], stream, entry_id, fields, deliveries)
        except Exception:  # noqa: BLE001 - never let one entry kill the loop
            log.exception("processing %s %s failed", stream, entry_id)
            commit = None
        if commit is None:
            self._release(key, acked=False)
        else:
            self.handling.acks.submit(commit, lambda results: self._acked(key, results))

    def _acked(self, key: EntryKey, results: list[Any] | BaseException) -> None:
        failed = isinstance(results, BaseException) or isinstance(results[-1], Exception)
        # Not failed: results is the list (mypy cannot see that through `failed`).
        errors = results if failed else [r for r in results if isinstance(r, Exception)]  # type: ignore[union-attr]
        if errors:
            log.warning("ack of %s %s: %r", key[0], key[1], errors)
        self._release(key, acked=not failed)

    def _release(self, key: EntryKey, *, acked: bool) -> None:
        if not acked:
            # Left pending: retried after min_idle, by us or by any consumer of the group.
            self._retry_after[key] = time.monotonic() + self.config.min_idle_ms / 1000
        self._in_flight.pop(key, None)
        self._slot_free.set()

    async def _recover_own(self, idle: int | None = None) -> None:
        """Our own pending entries not running now: after a restart, or claimed to us."""
        now = time.monotonic()
        # Forget waits that are over (some of those entries went to other consumers meanwhile).
        self._retry_after = {k: t for k, t in self._retry_after.items() if t > now}
        for stream in self.subscriptions:
            free = self._free()
            if free <= 0:
                return
            rows: list[Any] = await self.client().xpending_range(
                stream, self.group, min="-", max="+", consumername=self.name, idle=idle,
                count=free + len(self._in_flight) + len(self._retry_after))
            wanted = {text(r["message_id"]): r["times_delivered"] + 1 for r in rows
                      if self._eligible((stream, text(r["message_id"])), now)}
            ids = list[StreamIdT](wanted)[:free]
            if ids:
                claimed: list[Any] = await self.client().xclaim(
                    stream, self.group, self.name, 0, ids)
                for entry_id, fields in claimed:
                    self._dispatch(stream, text(entry_id), fields, wanted[text(entry_id)])

    def _eligible(self, key: EntryKey, now: float) -> bool:
        return key not in self._in_flight and self._retry_after.get(key, 0.0) <= now

    async def _autoclaim(self) -> None:
        """Take entries idle longer than min_idle from any consumer: dead ones, failed ones."""
        for stream in self.subscriptions:
            free = self._free()
            if free <= 0:
                return
            cursor = self._cursors.get(stream, "0-0")
            reply = await self.client().xautoclaim(
                stream, self.group, self.name, self.config.min_idle_ms, cursor, count=free)
            self._cursors[stream] = text(reply[0])
            entries = [(text(i), f) for i, f in reply[1] if f is not None]
            gone = [i for i, f in reply[1] if f is None]  # deleted entries (Redis < 7.0)
            if gone:
                await self.handling.acks.run([("XACK", stream, self.group, *gone)])
            if entries:
                counts = await self._delivery_counts(stream, [i for i, _ in entries])
                for entry_id, fields in entries:
                    self._dispatch(stream, entry_id, fields, counts.get(entry_id, 2))

    async def _delivery_counts(self, stream: str, ids: list[str]) -> dict[str, int]:
        async with self.client().pipeline(transaction=False) as pipe:
            for entry_id in ids:
                pipe.xpending_range(stream, self.group, min=entry_id, max=entry_id, count=1)
            replies = await pipe.execute()
        return {text(r["message_id"]): r["times_delivered"] for rows in replies for r in rows}

    async def _finish(self) -> None:
        """Graceful stop: let running handlers finish (within stop_timeout), flush acks."""
        await self._cancel_reads()
        tasks = [t for t in self._in_flight.values() if t is not None and not t.done()]
        if tasks:
            log.info("consumer %s stopping: waiting for %d handlers", self.name, len(tasks))
            _, late = await asyncio.wait(tasks, timeout=self.config.stop_timeout_s)
            for task in late:  # their entries stay pending and are redelivered
                await cancelled_quietly(task)
        await self.handling.acks.drain()
        await self.handling.commands.drain()


def _pairs(flat: list[Any] | None) -> dict[Any, Any] | None:
    if flat is None:
        return None
    it = iter(flat)
    return dict(zip(it, it, strict=False))
