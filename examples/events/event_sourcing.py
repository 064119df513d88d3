"""Event sourcing: read a stream's history from an ID or a time, and replay it.

    REDIS_URL=redis://127.0.0.1:6379/0 python examples/events/event_sourcing.py
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import _path  # noqa: F401

from streams_admin.bus import Envelope, event_bus


async def main() -> None:
    await event_bus.publish_many([("task.created", {"task_id": f"t-{n}", "priority": p})
                                  for n, p in enumerate(["high", "low", "high", "medium"])])

    # The last ten events, oldest first (history pages through long streams by itself).
    for envelope in await event_bus.history("task.created", count=10):
        print(f"{envelope.entry_id} {envelope.timestamp} {envelope.data}")

    # Rebuild a read model by replaying the last hour.
    by_priority: Counter[str] = Counter()

    async def apply(data: dict, envelope: Envelope) -> None:
        by_priority[data.get("priority", "?")] += 1

    since = datetime.now(UTC) - timedelta(hours=1)
    count = await event_bus.replay("task.created", apply, since=since)
    print(f"replayed {count} events: {dict(by_priority)}")

    # Drop what every consumer group has already processed (pending entries stay).
    print(f"trimmed {await event_bus.safe_trim('task.created')} entries")
    await event_bus.aclose()


if __name__ == "__main__":
    asyncio.run(main())
