"""Publish events: one at a time, with a correlation ID, and in a batch.

    REDIS_URL=redis://127.0.0.1:6379/0 python examples/events/publisher.py
"""

from __future__ import annotations

import asyncio

import _path  # noqa: F401

from streams_admin.bus import event_bus


async def main() -> None:
    event_id = await event_bus.publish("task.created", {"task_id": "123", "priority": "high"})
    print(f"published task.created {event_id}")

    event_id = await event_bus.publish("task.created", {"task_id": "124"},
                                       correlation_id="my-correlation-id")
    print(f"published task.created {event_id} (correlation my-correlation-id)")

    # Concurrent publishes share pipelines by themselves; publish_many is one round trip.
    ids = await event_bus.publish_many(
        [("notification.sent", {"user_id": f"user-{n}", "type": "email", "status": "sent"})
         for n in range(10)])
    print(f"published {len(ids)} notification.sent events")
    await event_bus.aclose()


if __name__ == "__main__":
    asyncio.run(main())
