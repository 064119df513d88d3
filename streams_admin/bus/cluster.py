"""The bus on Redis Cluster: pipelines through redis-py's cluster client, commits per slot.

Each primary gets its share of a pipeline in one round trip, the primaries at once
(cluster_send.py), but a MULTI or a script may only touch keys of one slot (else CROSSSLOT).
So an entry's commit (its reply, dead letter or idempotency marker, then its XACK) is:

- one slot (the opt-in hash-tag naming, `agent:stream:{task.created}`): one script, atomic as
  the MULTI on a standalone Redis;
- several slots: two steps -- first the copy/reply/marker, then, only once those are stored,
  the XACK. A failure or crash between the two leaves the entry pending: it is redelivered,
  which may duplicate (a second reply, a second dead letter unless recognised; see
  handling.py) but never loses it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, Literal

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, ResponseError

from streams_admin.bus import cluster_send, lua
from streams_admin.bus.cluster_send import RETRYABLE, slot_of
from streams_admin.bus.coalesce import (
    Coalescer,
    Command,
    Unavailable,
    _Batch,
    _merge_acks,
    backoff,
)
from streams_admin.bus.lua import Lua

# What the consumer waits out with backoff on a cluster, besides Redis being away.
TRANSIENT = (*Unavailable, RedisClusterException)

# How an entry's commit goes: its XACKs alone, one script, or writes then XACKs.
Plan = Literal["acks", "atomic", "steps"]
# Runs ARGV as commands, stopping at the first error; keys declared, so routed by slot.
ATOMIC = Lua.file(__file__, "atomic.lua")


class BusCluster(aioredis.RedisCluster):
    """redis-py's asyncio cluster client, finding XREAD(GROUP)'s keys itself: redis-py asks
    a node (`COMMAND GETKEYS`) over one shared connection, which breaks when several
    blocking reads start at once."""

    async def _determine_slot(self, *args: Any) -> int:
        command = _word(args[0]) if args else ""
        if command in ("XREAD", "XREADGROUP"):
            words = [_word(a) for a in args]
            after = 4 if command == "XREADGROUP" else 1  # GROUP name consumer come first
            start = words.index("STREAMS", after) + 1
            keys = args[start:start + (len(args) - start) // 2]
            slots = {slot_of(k) for k in keys}
            if len(slots) != 1:
                raise RedisClusterException(f"{command} over keys of {len(slots)} slots")
            return slots.pop()
        return await super()._determine_slot(*args)


async def guarded[T](client: Any, call: Awaitable[T], timeout: float | None = None) -> T:
    """`call` on a client whose slot map is known. redis-py learns it lazily, and renewing
    it (first use, failover) recycles connections under commands running at the same time;
    Python 3.12.1 then raises TypeError writing to the closed transport: the connection is
    gone, which the bus retries like any lost connection. Such a connection may also
    swallow a command: `timeout` bounds the wait for a blocking read's answer."""
    try:
        async with asyncio.timeout(timeout):
            await client.initialize()  # at once if known: a flag
            return await call
    except TypeError as error:
        raise RedisConnectionError(f"connection lost: {error}") from error
    except TimeoutError:
        raise RedisConnectionError(f"no answer within {timeout}s") from None


def _word(arg: Any) -> str:
    return (arg.decode("latin-1") if isinstance(arg, bytes) else str(arg)).upper()


def atomic(commands: list[Command]) -> Command:
    keys = list(dict.fromkeys(c[1] for c in commands))
    argv: list[Any] = []
    for command in commands:
        argv += [len(command), *command]
    return ATOMIC.command(keys, argv)


class ClusterCoalescer(Coalescer):
    """A Coalescer over redis.asyncio.RedisCluster; `transaction` commits per slot."""

    async def _pipeline(self, commands: list[Command]) -> list[Any]:
        """Each command's result. One XACK per stream and group, as on one server: a worker
        acks a batch of entries of one stream, one command to route, pack and read instead
        of one per entry."""
        wire, where = _merge_acks(commands)
        replies = await self._send(wire)
        return [replies[i] for i in where]

    async def _send(self, commands: list[Command]) -> list[Any]:
        """Each command's result; a command that met a failover is sent again (alone)."""
        results: list[Any] = [None] * len(commands)
        todo = list(range(len(commands)))
        deadline = time.monotonic() + self.retry_s
        delays = backoff(self.backoff_s, self.backoff_max_s)
        while True:
            replies = await _scripts_loaded(self.client(), [commands[i] for i in todo])
            for i, result in zip(todo, replies, strict=True):
                results[i] = result
            todo = [i for i in todo if isinstance(results[i], RETRYABLE)]
            if not todo or time.monotonic() >= deadline:
                return results
            await asyncio.sleep(next(delays))

    async def _flush(self) -> None:
        if not self.transaction:
            return await super()._flush()
        while self._queue:
            batches = self._take()
            try:
                outcomes = await self._commit(batches)
            except Exception as error:  # noqa: BLE001 - handed to every waiting caller
                outcomes = [error] * len(batches)
            for batch, outcome in zip(batches, outcomes, strict=True):
                batch.done(outcome)
        return None

    async def _commit(self, batches: list[_Batch]) -> list[list[Any] | BaseException]:
        """Step one: what may go at once -- an entry's bare XACK (nothing to store first:
        the handler succeeded with no reply), the atomic scripts, the writes before each
        cross-slot XACK. Step two: those XACKs whose writes all succeeded."""
        first: list[Command] = []
        plans: list[tuple[int, int, Plan]] = []  # (start in `first`, count, how)
        for batch in batches:
            start, how = len(first), _plan(batch.commands)
            if how == "atomic":
                first.append(atomic(batch.commands))
            else:
                first += batch.commands if how == "acks" else _split(batch.commands)[1]
            plans.append((start, len(first) - start, how))
        done = await self._execute(first) if first else []
        second: list[Command] = []
        for batch, (start, count, how) in zip(batches, plans, strict=True):
            if how == "steps" and not any(isinstance(r, Exception)
                                          for r in done[start:start + count]):
                second += _split(batch.commands)[0]
        acked = iter(await self._execute(second) if second else [])
        return [done[start:start + count] if how == "acks"
                else _outcome(batch, done[start:start + count], how == "atomic", acked)
                for batch, (start, count, how) in zip(batches, plans, strict=True)]


async def _scripts_loaded(client: Any, commands: list[Command]) -> list[Any]:
    """The commands' results; a script call the node lacked the script for (NOSCRIPT: did
    not run; a flush, a restart, a failover's new primary) is sent again once loaded there.
    A load that meets a failover leaves its calls to the next round as that error."""
    replies = await _send(client, commands)
    again = lua.missing(commands, replies)
    if again:
        try:
            await guarded(client, lua.load_async(client, [commands[i] for i in again]))
        except RETRYABLE as error:
            return [error if i in again else reply for i, reply in enumerate(replies)]
        for i, reply in zip(again, await _send(client, [commands[i] for i in again]),
                            strict=True):
            replies[i] = reply
    return replies


async def _send(client: Any, commands: list[Command]) -> list[Any]:
    return await guarded(client, cluster_send.send(client, commands))


def _plan(commands: list[Command]) -> Plan:
    if all(c[0] == "XACK" for c in commands):
        return "acks"
    return "atomic" if len({slot_of(c[1]) for c in commands}) == 1 else "steps"


def _split(commands: list[Command]) -> tuple[list[Command], list[Command]]:
    """(XACKs, everything else): the XACKs go last, once the rest is stored."""
    return ([c for c in commands if c[0] == "XACK"], [c for c in commands if c[0] != "XACK"])


def _outcome(batch: _Batch, written: list[Any], whole: bool, acked: Any) -> list[Any]:
    if whole:
        (result,) = written
        if isinstance(result, Exception):
            return [result] * len(batch.commands)
        return list(result)
    acks, _ = _split(batch.commands)
    failed = next((r for r in written if isinstance(r, Exception)), None)
    if failed is not None:  # nothing acked: the entry stays pending and is redelivered
        ack_results: list[Any] = [ResponseError(f"not acked: {failed}")] * len(acks)
    else:
        ack_results = [next(acked) for _ in acks]
    written_iter, ack_iter = iter(written), iter(ack_results)
    return [next(ack_iter) if c[0] == "XACK" else next(written_iter) for c in batch.commands]
