"""The consumer runs inside an ASGI server's lifespan and stops with it."""

from __future__ import annotations

import asyncio

import redis

from streams_admin.bus.asgi import with_consumer
from tests.bus.conftest import wait_for


async def test_lifespan_starts_and_stops_the_consumer(make_bus, r: redis.Redis) -> None:
    bus = make_bus()
    done: list[int] = []
    bus.subscribe("task.created")(lambda data: done.append(data["n"]))

    async def app(scope, receive, send) -> None:  # noqa: ANN001 - the project's ASGI app
        raise AssertionError("lifespan must not reach the app")

    inbox: asyncio.Queue[dict] = asyncio.Queue()
    sent: list[str] = []

    async def send(message: dict) -> None:
        sent.append(message["type"])

    server = asyncio.create_task(with_consumer(app, bus, "g", "web-1")(
        {"type": "lifespan"}, inbox.get, send))
    await inbox.put({"type": "lifespan.startup"})
    await bus.publish("task.created", {"n": 1})
    await wait_for(lambda: done == [1], what="handled while the server runs")
    await inbox.put({"type": "lifespan.shutdown"})
    await server
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert r.xpending("agent:stream:task.created", "g")["pending"] == 0
