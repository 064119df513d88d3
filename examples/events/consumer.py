"""Consume events in a consumer group until Ctrl-C (or SIGTERM), then stop gracefully.

    REDIS_URL=redis://127.0.0.1:6379/0 python examples/events/consumer.py

The same handlers run as a worker process with
    python manage.py bus_worker --group agent-group --name agent-1 <module>
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import _path  # noqa: F401

from streams_admin.bus import Envelope, FatalError, event_bus


@event_bus.subscribe("task.created", idempotent=True)
async def handle_task_created(data: dict, envelope: Envelope) -> None:
    if "task_id" not in data:
        raise FatalError("a task without task_id can never be processed")  # dead-lettered
    print(f"task {data['task_id']} (event {envelope.event_id}, "
          f"delivery {envelope.delivery_count})")


@event_bus.subscribe("notification.sent")
async def handle_notification(data: dict) -> None:
    print(f"notification to {data.get('user_id')}: {data.get('status')}")


async def main() -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(event_bus.stop_consumer()))
    print("consuming task.created and notification.sent (Ctrl-C stops)")
    await event_bus.start_consumer(consumer_group="agent-group",
                                   consumer_name=f"agent-{os.getpid()}")
    await event_bus.aclose()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main())
