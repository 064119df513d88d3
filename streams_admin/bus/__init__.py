"""The bundled event bus over Redis Streams. Imports nothing from Django.

    from streams_admin.bus import event_bus

    @event_bus.subscribe("task.created")
    async def handle(data): ...

`event_bus` reads REDIS_URL and BUS_PREFIX (and BUS_* options) when first used.
"""

from __future__ import annotations

from streams_admin.bus.bus import EventBus
from streams_admin.bus.config import BusConfig
from streams_admin.bus.envelope import Envelope
from streams_admin.bus.handling import FatalError

event_bus = EventBus()

__all__ = ["BusConfig", "Envelope", "EventBus", "FatalError", "event_bus"]
