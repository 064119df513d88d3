"""Request/response over streams, wire-compatible with the spec's plain redis-py requester.

The request is an ordinary event whose `event_id` is the correlation ID and whose data holds
`response_stream` (`{prefix}response:{correlation_id}`). The responder XADDs one envelope
there (with an EXPIRE in the same MULTI); the requester waits on it with XREAD BLOCK, then
deletes it -- on every way out: reply, time-out, cancel, error.

Waiting blocks a connection, so requests wait on a small pool of them (`request_connections`):
a burst of requests queues for a connection instead of failing or opening hundreds.
The request is published before it queues, so its reply is already stored when it gets one.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams_admin.bus import coalesce, wire
from streams_admin.bus.cluster import guarded
from streams_admin.bus.coalesce import Coalescer, Command
from streams_admin.bus.envelope import Keys, new_event_id, text
from streams_admin.bus.publisher import Publisher

log = logging.getLogger("streams_admin.bus")

# How long past the request's deadline Redis may take to answer the XREAD it was given.
GRACE_S = 5.0


async def request(publisher: Publisher, replies: aioredis.Redis, keys: Keys, event_type: str,
                  data: dict[str, Any], timeout: float = 30.0) -> Any | None:
    """The reply's data, or None when no reply came within `timeout` seconds."""
    correlation_id = new_event_id()
    stream = keys.response(correlation_id)
    deadline = asyncio.get_running_loop().time() + timeout
    reply, deleted = None, False
    try:
        await publisher.publish(event_type, {**data, wire.RESPONSE_STREAM: stream},
                                event_id=correlation_id)
        reply, deleted = await _wait(replies, publisher.pipeline, stream, deadline)
    finally:
        if not deleted:  # a time-out in the client, a cancel, an error
            await _delete(publisher.pipeline, stream)
    return _data(reply)


def _read_and_delete(stream: str, block_ms: int | None = None) -> list[Command]:
    """XREAD, then DEL in the same write: Redis runs the DEL as soon as the XREAD returns
    (a blocked client's next commands wait for it), so deleting costs no round trip."""
    block = ("BLOCK", block_ms) if block_ms is not None else ()
    return [("XREAD", "COUNT", 1, *block, "STREAMS", stream, "0"), ("DEL", stream)]


async def _wait(replies: aioredis.Redis, commands: Coalescer, stream: str,
                deadline: float) -> tuple[Any, bool]:
    """The raw XREAD reply (empty at the deadline), and whether the stream was deleted."""
    pool = replies.connection_pool
    try:
        async with asyncio.timeout_at(deadline):
            connection = await pool.get_connection()
    except TimeoutError:
        # Every connection waited on other replies until our deadline: look once, unblocked.
        reply, deleted = await commands.run(_read_and_delete(stream))
        if not reply:
            log.warning("request %s timed out queued for one of %d reply connections "
                        "(request_connections)", stream, pool.max_connections)
        return _raised(reply), not isinstance(deleted, Exception)
    try:
        return await _blocking_read(connection, stream, deadline)
    except BaseException:
        await connection.disconnect()  # a reply may still be on its way: never reuse it
        raise
    finally:
        await pool.release(connection)


async def _blocking_read(connection: Any, stream: str, deadline: float) -> tuple[Any, bool]:
    block_ms = max(1, int((deadline - asyncio.get_running_loop().time()) * 1000))
    wire = b"".join(coalesce.pack_command(c) for c in _read_and_delete(stream, block_ms))
    try:
        async with asyncio.timeout_at(deadline + GRACE_S):
            await connection.send_packed_command(wire, check_health=False)
            reply = await coalesce.reply(connection)
            deleted = await coalesce.reply(connection)
    except TimeoutError:
        raise RedisTimeoutError(f"Redis did not answer XREAD on {stream}") from None
    return _raised(reply), not isinstance(deleted, Exception)


def _raised(reply: Any) -> Any:
    if isinstance(reply, Exception):
        raise reply
    return reply


async def _delete(commands: Coalescer, stream: str) -> None:
    # Queued at once, so it goes out even if the caller is cancelled while it waits.
    try:
        (result,) = await commands.run([("DEL", stream)])
    except Exception as error:  # noqa: BLE001 - the reply's own EXPIRE removes it then
        result = error
    if isinstance(result, Exception):
        log.warning("could not delete %s (it expires by itself): %r", stream, result)


def _data(reply: Any) -> Any | None:
    """The reply envelope's data from a raw XREAD reply (RESP2 list or RESP3 map)."""
    if not reply:
        return None
    streams = reply.values() if isinstance(reply, dict) else [e for _, e in reply]
    for entries in streams:
        for _, flat in entries:
            fields = {text(k): v for k, v in zip(flat[::2], flat[1::2], strict=True)}
            data = fields.get(wire.name(wire.DATA))
            return None if data is None else json.loads(data)
    return None


async def request_on_cluster(publisher: Publisher, replies: Any, slots: asyncio.Semaphore,
                             keys: Keys, event_type: str, data: dict[str, Any],
                             timeout: float = 30.0) -> Any | None:
    """request() on Redis Cluster: XREAD BLOCK through redis-py's cluster client (it finds
    the response stream's node), then DEL; `slots` bounds how many requests block at once.
    The reply and the request's ack are in different slots: see docs/bus.md."""
    correlation_id = new_event_id()
    stream = keys.response(correlation_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    reply = None
    try:
        await publisher.publish(event_type, {**data, wire.RESPONSE_STREAM: stream},
                                event_id=correlation_id)
        try:
            async with asyncio.timeout_at(deadline):
                await slots.acquire()
        except TimeoutError:  # every slot waited on other replies: look once, unblocked
            reply = await guarded(replies, replies.xread({stream: "0"}, count=1))
        else:
            try:
                block_ms = max(1, int((deadline - loop.time()) * 1000))
                async with asyncio.timeout_at(deadline + GRACE_S):
                    reply = await guarded(replies, replies.xread({stream: "0"}, count=1,
                                                                 block=block_ms))
            finally:
                slots.release()
    finally:
        await _delete(publisher.pipeline, stream)
    return _parsed_data(reply)


def _parsed_data(reply: Any) -> Any | None:
    """The reply envelope's data from redis-py's parsed XREAD reply."""
    streams = reply.values() if isinstance(reply, dict) else [e for _, e in reply or []]
    for entries in streams:
        for _, fields in entries:
            data = (fields or {}).get(wire.DATA)
            return None if data is None else json.loads(data)
    return None
