"""Commands from concurrent callers share pipelines: one round trip carries many of them.

While one pipeline is on the wire, new commands queue up; the next pipeline takes them all.
Under load batches grow by themselves, and a lone caller still goes out at once (no timer).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, cast

import hiredis
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("streams_admin.bus")

READ_TIMEOUT_S = 10.0

# Redis is away (down, restarting, unreachable): worth waiting for, unlike a command's error.
Unavailable = (RedisConnectionError, RedisTimeoutError, OSError)

# One command as Redis sees it: ("XADD", key, "*", field, value, ...). Replies come back raw.
Command = tuple[bytes | str | int | float, ...]
# hiredis's stub types the argument as a 1-tuple; it packs a command of any length.
pack_command = cast(Callable[[Command], bytes], hiredis.pack_command)


def xadd(key: bytes | str, fields: dict[Any, Any], maxlen: int | None = None) -> Command:
    trim = ("MAXLEN", "~", maxlen) if maxlen else ()
    return ("XADD", key, *trim, "*", *chain.from_iterable(fields.items()))


def backoff(first: float, cap: float) -> Iterator[float]:
    delay = first
    while True:
        yield delay
        delay = min(delay * 2, cap)


# Called with a batch's results (errors as exceptions), or with the error that sank it.
Done = Callable[[list[Any] | BaseException], None]


@dataclass
class _Batch:
    commands: list[Command]
    done: Done


@dataclass
class Coalescer:
    client: Callable[[], aioredis.Redis]
    transaction: bool = False
    max_commands: int = 1_000
    retry_s: float = 10.0
    backoff_s: float = 0.1
    backoff_max_s: float = 5.0
    _queue: deque[_Batch] = field(default_factory=deque)
    _flusher: asyncio.Task[None] | None = None

    async def run(self, commands: list[Command]) -> list[Any]:
        """Run commands in the next pipeline; their results, errors included as exceptions."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()

        def done(results: list[Any] | BaseException) -> None:
            if not future.done():
                if isinstance(results, BaseException):
                    future.set_exception(results)
                else:
                    future.set_result(results)

        self.submit(commands, done)
        return await future

    def submit(self, commands: list[Command], done: Done) -> None:
        """Queue commands for the next pipeline; `done` gets their results."""
        self._queue.append(_Batch(commands, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())

    async def drain(self) -> None:
        """Wait until everything queued so far has been sent."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    async def _flush(self) -> None:
        while self._queue:
            batches = self._take()
            try:
                results = await self._execute([c for b in batches for c in b.commands])
            except Exception as error:  # noqa: BLE001 - handed to every waiting caller
                _fail(batches, error)
                continue
            _deliver(batches, results)

    def take_all(self) -> list[_Batch]:
        """Everything queued, for a caller that sends it along with its own command."""
        taken = list(self._queue)
        self._queue.clear()
        return taken

    async def send_before(self, connection: Any, batches: list[_Batch],
                          command: Command) -> None:
        """Write the batches' commands and then `command` in one go (one round trip instead
        of two) and hand the batches their results; `command`'s reply is the caller's."""
        commands = [c for b in batches for c in b.commands]
        wire, where = self._wire(commands) if commands else ([], [])
        try:
            await connection.send_packed_command(
                b"".join(pack_command(c) for c in [*wire, command]), check_health=False)
            async with asyncio.timeout(READ_TIMEOUT_S):
                replies = [await reply(connection) for _ in wire]
        except BaseException as error:
            stopped = RedisConnectionError("stopped")
            _fail(batches, error if isinstance(error, Exception) else stopped)
            raise
        _deliver(batches, self._results(replies, where))

    def _take(self) -> list[_Batch]:
        taken: list[_Batch] = []
        size = 0
        while self._queue and (not taken or size + len(self._queue[0].commands)
                               <= self.max_commands):
            batch = self._queue.popleft()
            taken.append(batch)
            size += len(batch.commands)
        return taken

    async def _execute(self, commands: list[Command]) -> list[Any]:
        # A Redis that restarts is waited for (with backoff) rather than failing every caller.
        deadline = time.monotonic() + self.retry_s
        delays = backoff(self.backoff_s, self.backoff_max_s)
        while True:
            try:
                return await self._pipeline(commands)
            except Unavailable as error:
                if time.monotonic() >= deadline:
                    raise
                delay = next(delays)
                log.warning("redis unavailable (%s); retrying %d commands in %.2fs",
                            error, len(commands), delay)
                await asyncio.sleep(delay)

    async def _pipeline(self, commands: list[Command]) -> list[Any]:
        # Packed by hiredis in C and written at once: redis-py's Python packing of each
        # command cost more than Redis itself does.
        wire, where = self._wire(commands)
        pool = self.client().connection_pool
        connection = await pool.get_connection()
        try:
            await connection.send_packed_command(
                b"".join(pack_command(c) for c in wire), check_health=False)
            # One deadline for the whole batch: a timer per reply cost more than parsing it.
            async with asyncio.timeout(READ_TIMEOUT_S):
                replies = [await reply(connection) for _ in wire]
        except BaseException:
            await connection.disconnect()
            raise
        finally:
            await pool.release(connection)
        return self._results(replies, where)

    def _wire(self, commands: list[Command]) -> tuple[list[Command], list[int]]:
        wire, where = _merge_acks(commands)
        if self.transaction:
            wire = [("MULTI",), *wire, ("EXEC",)]
        return wire, where

    def _results(self, replies: list[Any], where: list[int]) -> list[Any]:
        if not where:
            return []
        if self.transaction:
            replies = replies[-1] if isinstance(replies[-1], list) else [replies[-1]] * len(where)
        return [replies[i] for i in where]


def _deliver(batches: list[_Batch], results: list[Any]) -> None:
    start = 0
    for batch in batches:
        end = start + len(batch.commands)
        batch.done(results[start:end])
        start = end


def _fail(batches: list[_Batch], error: BaseException) -> None:
    for batch in batches:
        batch.done(error)


async def reply(connection: Any) -> Any:
    try:
        return await connection.read_response(timeout=math.inf, disconnect_on_error=True)
    except ResponseError as error:  # this command failed, not the pipeline
        return error


def _merge_acks(commands: list[Command]) -> tuple[list[Command], list[int]]:
    """One XACK per stream and group instead of one per entry; where each result is."""
    wire: list[Command] = []
    where: list[int] = []
    acks: dict[tuple[Any, Any], int] = {}
    for command in commands:
        if command[0] == "XACK":
            key = (command[1], command[2])
            if key in acks:
                wire[acks[key]] = (*wire[acks[key]], *command[3:])
                where.append(acks[key])
                continue
            acks[key] = len(wire)
        where.append(len(wire))
        wire.append(command)
    return wire, where
