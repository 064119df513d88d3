"""Request/response over streams, wire-compatible with the spec's plain redis-py requester.

The request is an ordinary event whose `event_id` is the correlation ID and whose data holds
`response_stream` (`{prefix}response:{correlation_id}`). The responder XADDs one envelope
there; the requester waits on it with XREAD BLOCK, then deletes it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from streams_admin.bus.envelope import Keys, new_event_id, text
from streams_admin.bus.publisher import Publisher


async def request(publisher: Publisher, blocking: Callable[[], aioredis.Redis], keys: Keys,
                  event_type: str, data: dict[str, Any], timeout: float = 30.0) -> Any | None:
    """The reply's data, or None when no reply came within `timeout` seconds."""
    correlation_id = new_event_id()
    stream = keys.response(correlation_id)
    client = blocking()
    try:
        await publisher.publish(event_type, {**data, "response_stream": stream},
                                event_id=correlation_id)
        # BLOCK 0 would wait forever: a time-out of 0 still waits one millisecond.
        reply = await client.xread({stream: "0"}, count=1, block=max(1, int(timeout * 1000)))
    finally:
        # Also after a time-out or a cancel: a late reply's stream would expire by itself,
        # but an early one must not stay behind.
        await client.delete(stream)
    if not reply:
        return None
    _, entries = reply[0]
    _, fields = entries[0]
    raw = {text(k): v for k, v in fields.items()}
    return json.loads(raw["data"]) if "data" in raw else None
