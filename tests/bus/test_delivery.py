"""Delivery guarantees: retry, reclaim, dead-letter, idempotency, backpressure, stop."""

from __future__ import annotations

import asyncio
import json
import uuid

import redis

from streams_admin.bus import Envelope, FatalError
from tests.bus.conftest import consuming, wait_for
from tests.redis_server import group_lag

STREAM = "agent:stream:task.created"
DEADLETTER = "agent:stream:deadletter:task.created"


def pending(r: redis.Redis, group: str = "g") -> int:
    return r.xpending(STREAM, group)["pending"]


async def test_failed_entry_is_retried_until_it_succeeds(make_bus, r: redis.Redis) -> None:
    bus = make_bus()
    deliveries: list[int] = []

    @bus.subscribe("task.created")
    async def flaky(data: dict, envelope: Envelope) -> None:
        deliveries.append(envelope.delivery_count)
        if len(deliveries) < 3:
            raise RuntimeError("not yet")

    await bus.publish("task.created", {"task_id": "1"})
    async with consuming(bus):
        await wait_for(lambda: len(deliveries) == 3 and pending(r) == 0, what="third try acked")
    assert deliveries == [1, 2, 3]
    assert not r.exists(DEADLETTER)


async def test_poison_entry_is_dead_lettered_after_max_deliveries(make_bus, r) -> None:
    bus = make_bus(max_deliveries=3)
    calls: list[int] = []

    @bus.subscribe("task.created")
    async def poison(data: dict, envelope: Envelope) -> None:
        calls.append(envelope.delivery_count)
        raise ValueError("cannot parse task")

    event_id = await bus.publish("task.created", {"task_id": "bad"})
    [(entry_id, _)] = r.xrange(STREAM)
    async with consuming(bus):
        await wait_for(lambda: r.xlen(DEADLETTER) == 1 and pending(r) == 0, what="dead letter")
    assert calls == [1, 2, 3]
    [(_, dead)] = r.xrange(DEADLETTER)
    assert dead[b"event_id"].decode() == event_id
    assert json.loads(dead[b"data"]) == {"task_id": "bad"}
    assert dead[b"error"] == b"ValueError: cannot parse task"
    assert dead[b"delivery_count"] == b"3" and dead[b"reason"] == b"max_deliveries"
    assert dead[b"original_stream"] == STREAM.encode() and dead[b"original_id"] == entry_id
    assert dead[b"group"] == b"g"
    assert bus.registry.get_sample_value(
        "events_dead_lettered_total", {"event_type": "task.created", "reason": "max_deliveries"}
    ) == 1


async def test_fatal_error_is_dead_lettered_at_once(make_bus, r: redis.Redis) -> None:
    bus = make_bus(max_deliveries=5)
    calls: list[int] = []

    @bus.subscribe("task.created")
    async def fatal(data: dict) -> None:
        calls.append(1)
        raise FatalError("task belongs to a deleted tenant")

    await bus.publish("task.created", {"task_id": "1"})
    async with consuming(bus):
        await wait_for(lambda: r.xlen(DEADLETTER) == 1 and pending(r) == 0)
    assert calls == [1]
    [(_, dead)] = r.xrange(DEADLETTER)
    assert dead[b"delivery_count"] == b"1" and dead[b"reason"] == b"fatal"


async def test_entry_whose_data_is_not_json_is_dead_lettered(make_bus, r: redis.Redis) -> None:
    bus = make_bus()
    calls: list[object] = []
    bus.subscribe("task.created")(calls.append)
    r.xadd(STREAM, {"event_id": "x", "event_type": "task.created", "data": b"\xff{not json"})
    async with consuming(bus):
        await wait_for(lambda: r.exists(DEADLETTER) and pending(r) == 0)
    assert calls == []
    [(_, dead)] = r.xrange(DEADLETTER)
    assert dead[b"data"] == b"\xff{not json" and dead[b"reason"] == b"malformed"


async def test_duplicates_are_suppressed_with_idempotency(make_bus, r: redis.Redis) -> None:
    bus = make_bus()
    runs: list[str] = []

    @bus.subscribe("task.created", idempotent=True)
    async def once(data: dict, envelope: Envelope) -> None:
        runs.append(envelope.event_id)

    event_id = str(uuid.uuid4())
    envelope = {"event_id": event_id, "event_type": "task.created",
                "timestamp": "2024-01-01T12:00:00.000Z", "data": "{}"}
    r.xadd(STREAM, envelope)
    async with consuming(bus):
        await wait_for(lambda: runs and pending(r) == 0)
        r.xadd(STREAM, envelope)  # the publisher retried: same event, a second entry
        r.xadd(STREAM, envelope)
        await wait_for(lambda: group_lag(r, STREAM, "g") == 0 and pending(r) == 0)
    assert runs == [event_id]
    assert bus.registry.get_sample_value(
        "events_processed_total", {"event_type": "task.created", "status": "duplicate"}) == 2
    assert r.get(f"agent:idempotency:g:task.created:{event_id}") == b"done"


async def test_dead_consumers_entries_are_reclaimed(make_bus, r: redis.Redis) -> None:
    bus = make_bus()
    done: list[str] = []
    bus.subscribe("task.created")(lambda data: done.append(data["n"]))
    r.xgroup_create(STREAM, "g", id="0", mkstream=True)
    ids = await bus.publish_many([("task.created", {"n": str(i)}) for i in range(5)])
    # A consumer that read them and died without acking:
    r.xreadgroup("g", "dead", {STREAM: ">"}, count=10)
    async with consuming(bus, name="alive"):
        await wait_for(lambda: len(done) == 5 and pending(r) == 0, what="reclaim")
    assert sorted(done) == [str(i) for i in range(5)] and len(ids) == 5


async def test_entry_claimed_to_us_by_an_operator_is_processed(make_bus, r: redis.Redis) -> None:
    bus = make_bus(min_idle_ms=600_000)  # never idle long enough for XAUTOCLAIM
    done: list[str] = []
    bus.subscribe("task.created")(lambda data: done.append(data["n"]))
    r.xgroup_create(STREAM, "g", id="0", mkstream=True)
    await bus.publish("task.created", {"n": "1"})
    [[_, [(entry_id, _)]]] = r.xreadgroup("g", "stuck", {STREAM: ">"})
    async with consuming(bus, name="healthy"):
        await asyncio.sleep(0.3)
        assert done == []  # still held by "stuck"
        r.xclaim(STREAM, "g", "healthy", 0, [entry_id])  # the dashboard's claim
        await wait_for(lambda: done == ["1"] and pending(r) == 0, what="claimed entry")


async def test_own_pending_entries_come_first_after_a_restart(make_bus, r) -> None:
    bus = make_bus(min_idle_ms=600_000)
    done: list[str] = []
    bus.subscribe("task.created")(lambda data: done.append(data["n"]))
    r.xgroup_create(STREAM, "g", id="0", mkstream=True)
    await bus.publish("task.created", {"n": "old"})
    r.xreadgroup("g", "c1", {STREAM: ">"})  # c1's previous life read it, then crashed
    async with consuming(bus, name="c1"):
        await wait_for(lambda: done == ["old"] and pending(r) == 0)


async def test_in_flight_is_bounded_and_nothing_is_prefetched(make_bus, r) -> None:
    bus = make_bus(max_in_flight=3)
    running, peak, peak_pending, done = set(), [0], [0], []

    @bus.subscribe("task.created")
    async def slow(data: dict) -> None:
        running.add(data["n"])
        peak[0] = max(peak[0], len(running))
        peak_pending[0] = max(peak_pending[0], pending(r))
        await asyncio.sleep(0.02)
        running.discard(data["n"])
        done.append(data["n"])

    await bus.publish_many([("task.created", {"n": i}) for i in range(30)])
    async with consuming(bus):
        await wait_for(lambda: len(done) == 30 and pending(r) == 0)
    assert peak[0] == 3 and peak_pending[0] <= 3


async def test_stop_finishes_running_handlers_and_flushes_acks(make_bus, r) -> None:
    bus = make_bus(max_in_flight=10)
    started, finished = [], []

    @bus.subscribe("task.created")
    async def slow(data: dict) -> None:
        started.append(data["n"])
        await asyncio.sleep(0.5)
        finished.append(data["n"])

    await bus.publish_many([("task.created", {"n": i}) for i in range(5)])
    async with consuming(bus):
        await wait_for(lambda: len(started) == 5)
    assert sorted(finished) == list(range(5))
    assert pending(r) == 0


async def test_group_is_recreated_when_destroyed(make_bus, r: redis.Redis) -> None:
    bus = make_bus()
    done: list[int] = []
    bus.subscribe("task.created")(lambda data: done.append(data["n"]))
    async with consuming(bus):
        await bus.publish("task.created", {"n": 1})
        await wait_for(lambda: done == [1] and pending(r) == 0)
        r.xgroup_destroy(STREAM, "g")
        await bus.publish("task.created", {"n": 2})
        await wait_for(lambda: 2 in done, what="consuming again after NOGROUP")


async def test_failure_logs_carry_event_and_correlation_ids(make_bus, r, caplog) -> None:
    bus = make_bus(max_deliveries=1)

    @bus.subscribe("task.created")
    async def broken(data: dict) -> None:
        raise RuntimeError("broken")

    event_id = await bus.publish("task.created", {}, correlation_id="corr-1")
    with caplog.at_level("WARNING", logger="streams_admin.bus"):
        async with consuming(bus):
            await wait_for(lambda: r.exists(DEADLETTER))
    failed = [rec for rec in caplog.records if rec.getMessage().startswith("handler failed")]
    assert failed and failed[0].event_id == event_id and failed[0].correlation_id == "corr-1"
