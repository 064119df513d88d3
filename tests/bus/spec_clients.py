"""The spec's plain redis-py publisher and requester, as written there (client injected).

Only two changes: `redis_client` points at the test's Redis, and the requester gives up
with TimeoutError as the spec's does. They run in a thread: the requester blocks.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import datetime, timezone

import redis

redis_client: redis.Redis = None  # type: ignore[assignment]  # set by connect()


def connect(url: str) -> None:
    global redis_client
    redis_client = redis.Redis.from_url(url, decode_responses=True)


def publish_event(event_type, data):  # noqa: ANN001, ANN201 - verbatim from the spec
    event = {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "timestamp": datetime.now(timezone.utc).isoformat(),  # noqa: UP017
        "data": json.dumps(data)
    }

    stream_name = f"agent:stream:{event_type}"
    redis_client.xadd(stream_name, event)


async def request_agent_action(action_type, params):  # noqa: ANN001, ANN201 - the spec's
    correlation_id = str(uuid.uuid4())
    response_stream = f"agent:stream:response:{correlation_id}"

    # Publish request
    event = {
        "event_id": correlation_id,
        "event_type": action_type,
        "timestamp": datetime.now(timezone.utc).isoformat(),  # noqa: UP017
        "data": json.dumps({
            **params,
            "response_stream": response_stream
        })
    }

    redis_client.xadd(f"agent:stream:{action_type}", event)

    # Wait for response (with timeout)
    start_time = time.time()
    timeout = 30

    while time.time() - start_time < timeout:
        messages = redis_client.xread({response_stream: "0"}, count=1, block=1000)
        if messages:
            for stream, msg_list in messages:  # noqa: B007
                for msg_id, msg_data in msg_list:  # noqa: B007
                    redis_client.delete(response_stream)
                    return json.loads(msg_data["data"])
        await asyncio.sleep(0.1)

    raise TimeoutError("No response received")
