"""Event history, replay, and trimming that never drops what a group still needs."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from streams_admin.bus import wire
from streams_admin.bus.envelope import Envelope, Keys, MalformedEntry, decode, text, time_to_id
from streams_admin.bus.lua import Lua

log = logging.getLogger("streams_admin.bus")


def start_id(start: str = "-", since: datetime | None = None) -> str:
    """XRANGE's start for "from this ID" or "from this time" (whichever is later)."""
    if since is None:
        return start
    by_time = time_to_id(since)
    return by_time if start == "-" or _id(by_time) > _id(start) else start


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _envelope(stream: str, entry_id: str, fields: Any) -> Envelope:
    try:
        return decode(stream, entry_id, fields)
    except MalformedEntry:
        # History shows what is there: a non-JSON `data` stays a string.
        envelope = decode(stream, entry_id, {k: v for k, v in fields.items() if k != wire.DATA})
        return dataclasses.replace(envelope, data=text(fields[wire.DATA]), raw=fields)


async def iter_history(client: aioredis.Redis, keys: Keys, event_type: str, start: str = "-",
                       end: str = "+", *, since: datetime | None = None,
                       page: int = 500) -> AsyncIterator[Envelope]:
    """Every event of a type from an ID or a time on, oldest first, one page at a time."""
    stream = keys.stream(event_type)
    low = start_id(start, since)
    while True:
        entries: list[Any] = await client.xrange(stream, min=low, max=end, count=page) or []
        for entry_id, fields in entries:
            yield _envelope(stream, text(entry_id), fields)
        if len(entries) < page:
            return
        low = "(" + text(entries[-1][0])  # exclusive: continue after the last one seen


async def replay(client: aioredis.Redis, keys: Keys, event_type: str,
                 handler: Callable[..., Awaitable[Any] | Any], start: str = "-", *,
                 since: datetime | None = None) -> int:
    """Feed past events to a handler (as `handler(data)` or `handler(data, envelope)`)."""
    two_args = len(inspect.signature(handler).parameters) >= 2
    count = 0
    async for envelope in iter_history(client, keys, event_type, start, since=since):
        result = handler(envelope.data, envelope) if two_args else handler(envelope.data)
        if inspect.isawaitable(result):
            await result
        count += 1
    return count


# Trims below the lowest ID a group still needs, in one atomic step (KEYS, ARGV: the file).
SAFE_TRIM = Lua.file(__file__, "safe_trim.lua")


async def safe_trim(client: aioredis.Redis, keys: Keys, event_type: str,
                    before: str | datetime | None = None) -> int:
    """Delete old entries that every group has been delivered and acked; how many went.

    `before` (an ID or a time) limits it further. A stream without groups is not trimmed:
    none of its entries was delivered to anyone yet.
    """
    limit = time_to_id(before) if isinstance(before, datetime) else (before or "")
    if _ACKED_TRIM.get(client, True):
        try:
            return await trim_acked(client, keys.stream(event_type), limit)
        except ResponseError as error:
            if "syntax error" not in str(error):  # XTRIM without ACKED: Redis < 8.2, Valkey
                raise
            _ACKED_TRIM[client] = False
    removed = await SAFE_TRIM.run(client, [keys.stream(event_type)], [limit])
    return int(removed)


# Per client: False once its server refused XTRIM … ACKED (asked once, then SAFE_TRIM).
_ACKED_TRIM: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


async def trim_acked(client: aioredis.Redis, stream: str, limit: str) -> int:
    """Redis 8.2+: XTRIM … ACKED deletes only entries every group has read and acked, so
    Redis keeps what a group still needs by itself; it also deletes acked entries past a
    pending one (SAFE_TRIM stops at the oldest pending). A group created meanwhile has read
    nothing, so ACKED keeps everything for it. Without groups ACKED would delete all."""
    try:
        groups = await client.xinfo_groups(stream)
    except ResponseError as error:
        if "no such key" in str(error):
            return 0
        raise
    if not groups:
        return 0
    # Nothing past the slowest group's position can go: MINID there keeps Redis from walking
    # every undelivered entry on each call (200,000 of them: 66 ms for nothing).
    floor = min((_after(text(g["last-delivered-id"])) for g in groups), key=_id)
    if limit:
        floor = min(floor, limit, key=_id)
    return int(await client.execute_command("XTRIM", stream, "MINID", floor, "ACKED"))


def _after(entry_id: str) -> str:
    ms, seq = _id(entry_id)
    return f"{ms}-{seq + 1}"
