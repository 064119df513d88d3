"""Event history, replay, and trimming that keeps what a group still needs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import redis

from streams_admin.bus import Envelope
from tests.bus.conftest import consuming, wait_for

STREAM = "agent:stream:task.created"


async def test_history_from_an_id_and_from_a_time(make_bus, r: redis.Redis) -> None:
    bus = make_bus()
    r.xadd(STREAM, {"event_id": "old", "event_type": "task.created", "timestamp": "t",
                    "data": '{"n": 0}'}, id="1000-0")
    ids = await bus.publish_many([("task.created", {"n": i}) for i in range(1, 4)])
    everything = await bus.history("task.created")
    assert [e.data["n"] for e in everything] == [0, 1, 2, 3]
    after_second = await bus.history("task.created", start="(" + everything[1].entry_id)
    assert [e.event_id for e in after_second] == ids[1:]
    recent = await bus.history("task.created", since=datetime.now(UTC) - timedelta(hours=1))
    assert [e.event_id for e in recent] == ids


async def test_history_pages_through_long_streams(make_bus) -> None:
    bus = make_bus()
    await bus.publish_many([("task.created", {"n": i}) for i in range(1234)])
    seen = [e.data["n"] async for e in bus.iter_history("task.created")]
    assert seen == list(range(1234))


async def test_history_shows_malformed_entries_as_they_are(make_bus, r: redis.Redis) -> None:
    bus = make_bus()
    r.xadd(STREAM, {"data": "not json"})
    [event] = await bus.history("task.created")
    assert event.data == "not json"


async def test_replay_feeds_a_handler(make_bus) -> None:
    bus = make_bus()
    await bus.publish_many([("task.created", {"n": i}) for i in range(10)])
    seen: list[tuple[int, str]] = []

    async def rebuild(data: dict, envelope: Envelope) -> None:
        seen.append((data["n"], envelope.event_type))

    assert await bus.replay("task.created", rebuild) == 10
    assert seen == [(i, "task.created") for i in range(10)]


async def test_safe_trim_keeps_pending_and_undelivered_entries(make_bus, r: redis.Redis) -> None:
    bus = make_bus()
    ids = [r.xadd(STREAM, {"data": str(i)}) for i in range(10)]
    assert await bus.safe_trim("task.created") == 0  # no group: nothing was delivered
    r.xgroup_create(STREAM, "fast", id="0")
    r.xgroup_create(STREAM, "slow", id="0")
    r.xreadgroup("fast", "c", {STREAM: ">"})
    r.xack(STREAM, "fast", *ids)
    r.xreadgroup("slow", "c", {STREAM: ">"}, count=6)  # slow got 0..5
    r.xack(STREAM, "slow", *ids[:3])  # and acked 0..2; 3..5 pending, 6..9 undelivered
    assert await bus.safe_trim("task.created") == 3
    assert [i for i, _ in r.xrange(STREAM)] == ids[3:]
    assert await bus.safe_trim("task.created", before=ids[4].decode()) == 0
    r.xack(STREAM, "slow", *ids[3:6])
    assert await bus.safe_trim("task.created", before=ids[4].decode()) == 1
    assert await bus.safe_trim("task.created") == 2
    assert [i for i, _ in r.xrange(STREAM)] == ids[6:]


async def test_metrics_count_processed_events(make_bus) -> None:
    bus = make_bus()
    done: list[int] = []

    @bus.subscribe("task.created")
    async def handle(data: dict, envelope: Envelope) -> None:
        done.append(1)
        if data["n"] == 0 and envelope.delivery_count == 1:
            raise RuntimeError("first fails once")

    await bus.publish_many([("task.created", {"n": i}) for i in range(3)])
    async with consuming(bus):
        await wait_for(lambda: len(done) == 4)
        await wait_for(lambda: bus.registry.get_sample_value(
            "events_processed_total", {"event_type": "task.created", "status": "success"}) == 3)
    sample = bus.registry.get_sample_value
    assert sample("events_processed_total", {"event_type": "task.created", "status": "error"}) == 1
    assert sample("events_published_total", {"event_type": "task.created"}) == 3
    assert sample("events_redelivered_total", {"event_type": "task.created"}) == 1
    assert sample("event_processing_seconds_count", {"event_type": "task.created"}) == 4
    assert sample("events_in_flight", {}) == 0
