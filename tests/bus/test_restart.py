"""Redis restarted under a running consumer: it reconnects by itself and loses nothing."""

from __future__ import annotations

import asyncio

from streams_admin.bus import Envelope
from tests.bus.conftest import consuming, wait_for
from tests.redis_server import RedisServer


async def test_consumer_and_publisher_ride_out_a_redis_restart(
        make_bus, redis_server: RedisServer) -> None:
    bus = make_bus(publish_retry_s=30)
    handled: set[str] = set()

    @bus.subscribe("task.created")
    async def handle(data: dict, envelope: Envelope) -> None:
        handled.add(envelope.event_id)

    async with consuming(bus):
        before = await bus.publish_many([("task.created", {"n": i}) for i in range(50)])
        # The test server keeps nothing on disk: wait until these are done before it stops.
        await wait_for(lambda: handled >= set(before), what="events before the restart")
        await asyncio.to_thread(redis_server.stop)
        # Published while Redis is down: publish() waits for it to come back.
        during = asyncio.gather(*(bus.publish("task.created", {"n": i}) for i in range(50)))
        await asyncio.sleep(0.5)
        await asyncio.to_thread(redis_server.start)
        after = await bus.publish_many([("task.created", {"n": i}) for i in range(50)])
        published = set(before) | set(await during) | set(after)
        await wait_for(lambda: handled >= published, what="every event after the restart")
    assert len(published) == 150 and handled == published
