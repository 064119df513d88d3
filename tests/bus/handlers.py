"""Handlers the worker-process tests load: they record what they did in Redis."""

from __future__ import annotations

import asyncio

from streams_admin.bus import Envelope, event_bus


@event_bus.subscribe("job.run")
async def run_job(data: dict, envelope: Envelope) -> None:
    client = event_bus.client()
    await client.sadd("test:started", envelope.event_id)
    await asyncio.sleep(data.get("seconds", 0.05))
    await client.sadd("test:done", envelope.event_id)
