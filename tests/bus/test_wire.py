"""The wire format: our events are the spec's envelope; the spec's clients work with us."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime

import redis

from streams_admin.bus import Envelope, EventBus
from tests.bus import spec_clients
from tests.bus.conftest import consuming, wait_for


async def test_publish_writes_the_spec_envelope(make_bus, r: redis.Redis) -> None:
    bus = make_bus()
    event_id = await bus.publish("task.created", {"task_id": "123", "priority": "high"})
    [(entry_id, fields)] = r.xrange("agent:stream:task.created")
    assert set(fields) == {b"event_id", b"event_type", b"timestamp", b"data"}
    assert fields[b"event_id"].decode() == event_id == str(uuid.UUID(event_id))
    assert fields[b"event_type"] == b"task.created"
    assert datetime.fromisoformat(fields[b"timestamp"].decode()).utcoffset().total_seconds() == 0
    assert json.loads(fields[b"data"]) == {"task_id": "123", "priority": "high"}


async def test_correlation_id_and_prefix(redis_url, r: redis.Redis, make_bus) -> None:
    bus = make_bus(prefix="svc:")
    await bus.publish("task.created", {"task_id": "1"}, correlation_id="my-correlation-id")
    [(_, fields)] = r.xrange("svc:task.created")
    assert fields[b"correlation_id"] == b"my-correlation-id"


async def test_publish_many_keeps_order(make_bus, r: redis.Redis) -> None:
    bus = make_bus()
    ids = await bus.publish_many([("a.created", {"n": i}) for i in range(5)] + [("b.done", {})])
    assert len(set(ids)) == 6
    stored = [f[b"event_id"].decode() for _, f in r.xrange("agent:stream:a.created")]
    assert stored == ids[:5]
    assert r.xlen("agent:stream:b.done") == 1


async def test_maxlen_trims_on_publish(make_bus, r: redis.Redis) -> None:
    bus = make_bus(maxlen=10)
    await asyncio.gather(*(bus.publish("t.x", {"n": i}) for i in range(1000)))
    assert 10 <= r.xlen("agent:stream:t.x") < 1000  # approximate: whole nodes go


async def test_spec_publisher_feeds_our_consumer(make_bus, redis_url: str) -> None:
    bus = make_bus()
    got: list[tuple[dict, Envelope]] = []

    @bus.subscribe("task.created")
    async def handle(data: dict, envelope: Envelope) -> None:
        got.append((data, envelope))

    spec_clients.connect(redis_url)
    spec_clients.publish_event("task.created", {"task_id": "task-123", "priority": "high"})
    async with consuming(bus):
        await wait_for(lambda: len(got) == 1, what="the spec's event handled")
    data, envelope = got[0]
    assert data == {"task_id": "task-123", "priority": "high"}
    assert envelope.event_type == "task.created" and envelope.delivery_count == 1
    assert envelope.timestamp.endswith("+00:00") and uuid.UUID(envelope.event_id)


async def test_spec_requester_gets_our_reply(make_bus, redis_url: str, r: redis.Redis) -> None:
    bus = make_bus()

    @bus.subscribe("document.process")
    async def process(data: dict) -> dict:
        return {"result": f"processed {data['doc_id']}", "status": "success"}

    spec_clients.connect(redis_url)
    async with consuming(bus):
        response = await asyncio.to_thread(
            asyncio.run, spec_clients.request_agent_action("document.process", {"doc_id": "456"}))
    assert response == {"result": "processed 456", "status": "success"}
    assert r.keys("agent:stream:response:*") == []


async def test_handler_without_envelope_and_sync_handler(make_bus) -> None:
    bus = make_bus()
    seen: list[object] = []
    bus.subscribe("a.x")(lambda data: seen.append(("sync", data)))

    @bus.subscribe("b.x")
    async def plain(data: dict) -> None:
        seen.append(("async", data))

    await bus.publish("a.x", 1)
    await bus.publish("b.x", {"k": "v"})
    async with consuming(bus):
        await wait_for(lambda: len(seen) == 2)
    assert sorted(seen, key=str) == [("async", {"k": "v"}), ("sync", 1)]


async def test_default_bus_reads_the_environment_lazily(monkeypatch, redis_url: str) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    bus = EventBus()  # nothing read or connected yet
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("BUS_PREFIX", "env:")
    assert bus.config.redis_url == redis_url and bus.keys.stream("x") == "env:x"
    await bus.aclose()
