"""Request/response: a responder whose return value is the reply, and a requester.

    REDIS_URL=redis://127.0.0.1:6379/0 python examples/events/request_response.py

Both run in this one process for the example; normally they are different services.
"""

from __future__ import annotations

import asyncio

import _path  # noqa: F401

from streams_admin.bus import event_bus


@event_bus.subscribe("document.process")
async def handle_document_process(data: dict) -> dict:
    # The return value goes to the requester's response stream.
    return {"result": f"processed {data['doc_id']}", "status": "success"}


async def main() -> None:
    responder = asyncio.create_task(
        event_bus.start_consumer(consumer_group="agent-group", consumer_name="responder"))

    response = await event_bus.request("document.process", {"doc_id": "456"}, timeout=30)
    print(f"Result: {response}" if response else "Request timed out")

    # Nobody answers this one: None after the time-out, and no response stream left behind.
    response = await event_bus.request("nobody.listens", {"x": 1}, timeout=1)
    print(f"Result: {response}" if response else "Request timed out")

    await event_bus.stop_consumer()
    await responder
    await event_bus.aclose()


if __name__ == "__main__":
    asyncio.run(main())
