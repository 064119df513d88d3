"""Publishing: concurrent publish() calls are coalesced into pipelines of XADDs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from streams_admin.bus import wire
from streams_admin.bus.coalesce import Coalescer, Command, xadd
from streams_admin.bus.config import BusConfig
from streams_admin.bus.envelope import Keys, encode
from streams_admin.bus.metrics import BusMetrics, child

_EVENT_ID = wire.name(wire.EVENT_ID)  # a key of the dict envelope.encode returns


@dataclass
class Publisher:
    config: BusConfig
    keys: Keys
    metrics: BusMetrics
    pipeline: Coalescer

    async def publish(self, event_type: str, data: Any, correlation_id: str | None = None, *,
                      event_id: str | None = None, maxlen: int | None = None) -> str:
        """Append one event to `{prefix}{event_type}`; its event_id once Redis has it."""
        fields = encode(event_type, data, event_id=event_id, correlation_id=correlation_id)
        (result,) = await self.pipeline.run([self._xadd(event_type, fields, maxlen)])
        if isinstance(result, Exception):
            raise result
        child(self.metrics.published, event_type).inc()
        return fields[_EVENT_ID]

    async def publish_many(self, events: Iterable[tuple[str, Any]], *,
                           correlation_id: str | None = None,
                           maxlen: int | None = None) -> list[str]:
        """Publish (event_type, data) pairs in one round trip; their event_ids, in order."""
        encoded = [(event_type, encode(event_type, data, correlation_id=correlation_id))
                   for event_type, data in events]
        results = await self.pipeline.run(
            [self._xadd(event_type, fields, maxlen) for event_type, fields in encoded])
        errors = [r for r in results if isinstance(r, Exception)]
        if errors:
            raise errors[0]
        for event_type, _ in encoded:
            child(self.metrics.published, event_type).inc()
        return [fields[_EVENT_ID] for _, fields in encoded]

    def _xadd(self, event_type: str, fields: dict[str, str], maxlen: int | None) -> Command:
        return xadd(self.keys.stream(event_type), fields, maxlen or self.config.maxlen)
