"""Idempotency under pressure: copies of one event run its handler once, wherever they land."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis

from streams_admin.bus import Envelope
from tests.bus.conftest import consuming, wait_for
from tests.bus.faults import ReplyLosingProxy
from tests.redis_server import group_lag, needs_redis_7

STREAM = "agent:stream:task.created"
DEADLETTER = "agent:stream:deadletter:task.created"


def copy_of(event_id: str) -> dict[str, str]:
    return {"event_id": event_id, "event_type": "task.created",
            "timestamp": "2024-01-01T12:00:00.000Z", "data": '{"task_id": "1"}'}


def all_acked(r: redis.Redis, group: str = "g") -> bool:
    info = {g["name"]: g for g in r.xinfo_groups(STREAM)}.get(group.encode())
    return info is not None and group_lag(r, STREAM, group) == 0 and info["pending"] == 0


def duplicates(bus) -> float:
    return bus.registry.get_sample_value(
        "events_processed_total", {"event_type": "task.created", "status": "duplicate"}) or 0


def redelivered(bus) -> float:
    return bus.registry.get_sample_value(
        "events_redelivered_total", {"event_type": "task.created"}) or 0


@pytest.mark.parametrize("copies", [2, 3, 5])
async def test_copies_read_in_one_batch_run_once(make_bus, r: redis.Redis, copies: int) -> None:
    bus = make_bus(min_idle_ms=600_000)  # every copy must be settled now, not after a retry
    runs: list[str] = []

    @bus.subscribe("task.created", idempotent=True)
    async def once(data: dict, envelope: Envelope) -> None:
        runs.append(envelope.entry_id)
        await asyncio.sleep(0.05)  # the copies arrive while the first one runs

    event_id = str(uuid.uuid4())
    for _ in range(copies):
        r.xadd(STREAM, copy_of(event_id))
    async with consuming(bus):
        await wait_for(lambda: all_acked(r), what="every copy acked")
    assert len(runs) == 1
    assert duplicates(bus) == copies - 1
    assert r.get(f"agent:idempotency:g:task.created:{event_id}") == b"done"


async def test_copies_on_two_consumers_of_a_group_run_once(make_bus, r: redis.Redis) -> None:
    needs_redis_7(r, "has no PEXPIRE … GT: a lease is not renewed (bus/idempotency.py), so a "
                  "copy running longer than min_idle_ms may run again")
    # max_deliveries 2: b's copy is redelivered more often than that while a runs (every
    # min_idle_ms, 0.2 s), and must wait, not go to the dead letters as a poison entry: the
    # deliveries it spends waiting are given back.
    first, second = (make_bus(max_in_flight=1, max_deliveries=2),
                     make_bus(max_in_flight=1, max_deliveries=2))
    runs: list[str] = []
    release = asyncio.Event()

    async def once(data: dict, envelope: Envelope) -> None:
        runs.append(envelope.entry_id)
        await release.wait()

    first.subscribe("task.created", idempotent=True)(once)
    second.subscribe("task.created", idempotent=True)(once)
    event_id = str(uuid.uuid4())
    r.xgroup_create(STREAM, "g", id="0", mkstream=True)
    r.xadd(STREAM, copy_of(event_id))
    async with consuming(first, name="a"):
        await wait_for(lambda: len(runs) == 1, what="the first copy running on a")
        r.xadd(STREAM, copy_of(event_id))
        async with consuming(second, name="b"):
            # b holds the second copy (delivered to it) while a still runs the first:
            await wait_for(lambda: r.xpending(STREAM, "g")["consumers"] == [
                {"name": b"a", "pending": 1}, {"name": b"b", "pending": 1}],
                what="each consumer holding one copy")
            await asyncio.sleep(0.8)  # b retried it (min_idle 0.2 s) and must not have run it
            assert len(runs) == 1
            await wait_for(lambda: redelivered(second) > 2,
                           what="the waiting copy redelivered more than max_deliveries times")
            assert max(p["times_delivered"]
                       for p in r.xpending_range(STREAM, "g", "-", "+", 10)) <= 2
            release.set()
            await wait_for(lambda: all_acked(r), what="both copies acked")
    assert len(runs) == 1
    # The copy that did not run was acked as a duplicate (by b, or by a should a have taken
    # it over from b while b waited to retry it).
    assert duplicates(first) + duplicates(second) >= 1
    assert not r.exists(DEADLETTER)


async def test_copy_whose_run_crashed_is_retried_once(make_bus, r: redis.Redis) -> None:
    # a's lease outlives its crash by up to 1.5 s, while b retries every 0.2 s: the copies
    # wait for it past b's max_deliveries, and must then run once, not go to the dead letters.
    crashing, healthy = make_bus(min_idle_ms=1500), make_bus(max_deliveries=2)
    started, finished = [], []

    @crashing.subscribe("task.created", idempotent=True)
    async def hangs(data: dict, envelope: Envelope) -> None:
        started.append(envelope.entry_id)
        await asyncio.Event().wait()  # the process dies in here

    @healthy.subscribe("task.created", idempotent=True)
    async def works(data: dict, envelope: Envelope) -> None:
        finished.append(envelope.entry_id)

    event_id = str(uuid.uuid4())
    for _ in range(3):
        r.xadd(STREAM, copy_of(event_id))
    crash = asyncio.create_task(crashing.start_consumer("g", "a"))
    await wait_for(lambda: started, what="a running a copy")
    crash.cancel()  # no graceful stop: a's copies stay pending, its marker stays set
    with pytest.raises(asyncio.CancelledError):
        await crash
    async with consuming(healthy, name="b"):
        await wait_for(lambda: all_acked(r), what="b took over every copy")
    assert len(started) == 1 and len(finished) == 1
    assert duplicates(healthy) == 2
    assert r.get(f"agent:idempotency:g:task.created:{event_id}") == b"done"
    assert not r.exists(DEADLETTER)


async def test_publish_retried_after_a_lost_reply_is_handled_once(
        make_bus, r: redis.Redis, redis_url: str) -> None:
    consumer = make_bus()
    runs: list[str] = []

    @consumer.subscribe("task.created", idempotent=True)
    async def once(data: dict, envelope: Envelope) -> None:
        runs.append(envelope.event_id)

    async with ReplyLosingProxy(redis_url).running() as proxy:
        publisher = make_bus(redis_url=proxy.url)
        event_id = await publisher.publish("task.created", {"task_id": "1"})
    assert proxy.lost == 1
    stored = [f[b"event_id"].decode() for _, f in r.xrange(STREAM)]
    assert stored == [event_id, event_id]  # the retry stored it again
    async with consuming(consumer):
        await wait_for(lambda: all_acked(r), what="both copies acked")
    assert runs == [event_id]
    assert duplicates(consumer) == 1
