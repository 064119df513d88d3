"""Run a bus consumer inside an ASGI server's lifespan (uvicorn, hypercorn; Django's asgi.py).

    # dashboard/asgi.py (or any ASGI app)
    application = with_consumer(application, event_bus, consumer_group="agent-group")

On lifespan startup the consumer starts as a background task (as the spec's startup hook
does); on shutdown it stops gracefully. Servers without lifespan support (Daphne) should
run `manage.py bus_worker` instead.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from streams_admin.bus.bus import EventBus

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def with_consumer(app: ASGIApp, bus: EventBus, consumer_group: str = "agent-group",
                  consumer_name: str | None = None) -> ASGIApp:
    async def lifespan(receive: Receive, send: Send) -> None:
        task: asyncio.Task[None] | None = None
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                name = consumer_name or f"agent-{os.getpid()}"
                # Eager, so a quick shutdown finds the consumer already registered.
                task = asyncio.Task(bus.start_consumer(consumer_group, name),
                                    loop=asyncio.get_running_loop(), eager_start=True)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await bus.stop_consumer()
                if task is not None:
                    await task
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
        else:
            await app(scope, receive, send)

    return application
