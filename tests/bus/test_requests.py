"""Request/response: replies to the requester's own stream; time-outs leave nothing."""

from __future__ import annotations

import asyncio

import pytest
import redis

from streams_admin.bus import Envelope
from tests.bus.conftest import consuming, wait_for


async def test_request_gets_the_handlers_return_value(make_bus, r: redis.Redis) -> None:
    bus = make_bus()

    @bus.subscribe("document.process")
    async def process(data: dict, envelope: Envelope) -> dict:
        return {"doc_id": data["doc_id"], "status": "success"}

    async with consuming(bus):
        response = await bus.request("document.process", {"doc_id": "456"}, timeout=10)
    assert response == {"doc_id": "456", "status": "success"}
    assert r.keys("agent:stream:response:*") == []


async def test_reply_is_an_envelope_with_an_expiry(make_bus, r: redis.Redis) -> None:
    bus = make_bus(response_ttl_s=60)

    @bus.subscribe("document.process")
    async def process(data: dict) -> dict:
        return {"ok": True}

    r.xadd("agent:stream:document.process", {
        "event_id": "c-1", "event_type": "document.process", "timestamp": "t",
        "data": '{"response_stream": "agent:stream:response:c-1"}'})
    async with consuming(bus):
        reply = await asyncio.to_thread(r.xread, {"agent:stream:response:c-1": "0"},
                                        block=10_000)
    [(_, [(_, fields)])] = reply
    assert fields[b"data"] == b'{"ok":true}' and fields[b"correlation_id"] == b"c-1"
    assert fields[b"event_type"] == b"response:c-1"
    assert 0 < r.ttl("agent:stream:response:c-1") <= 60


async def test_timeout_returns_none_and_leaves_no_keys(make_bus, r: redis.Redis) -> None:
    bus = make_bus()
    assert await bus.request("nobody.listens", {"x": 1}, timeout=0.2) is None
    assert r.keys("agent:stream:response:*") == []


async def test_concurrent_requests_each_get_their_own_reply(make_bus, r: redis.Redis) -> None:
    bus = make_bus(max_in_flight=16)

    @bus.subscribe("math.square")
    async def square(data: dict) -> dict:
        await asyncio.sleep(0.01 * (data["n"] % 3))  # replies come back out of order
        return {"square": data["n"] ** 2}

    async with consuming(bus):
        replies = await asyncio.gather(
            *(bus.request("math.square", {"n": n}, timeout=10) for n in range(40)))
    assert replies == [{"square": n * n} for n in range(40)]
    assert r.keys("agent:stream:response:*") == []


async def test_no_reply_outside_response_streams(make_bus, r: redis.Redis) -> None:
    bus = make_bus()
    handled: list[int] = []

    @bus.subscribe("document.process")
    async def process(data: dict) -> dict:
        handled.append(1)
        return {"ok": True}

    await bus.publish("document.process", {"response_stream": "users:admin"})
    async with consuming(bus):
        await wait_for(lambda: handled)
    assert not r.exists("users:admin")


async def test_a_reply_that_is_not_json_is_dead_lettered(make_bus, r: redis.Redis) -> None:
    bus = make_bus()

    @bus.subscribe("document.process")
    async def process(data: dict) -> object:
        return {1, 2}  # a set: not JSON

    async with consuming(bus):
        assert await bus.request("document.process", {}, timeout=0.5) is None
        await wait_for(lambda: r.exists("agent:stream:deadletter:document.process"))
    [(_, dead)] = r.xrange("agent:stream:deadletter:document.process")
    assert dead[b"reason"] == b"fatal" and dead[b"error"].startswith(b"TypeError")


def blocked_in_xread(r: redis.Redis) -> bool:
    return any(c["cmd"] == "xread" and "b" in c["flags"] for c in r.client_list())


def response_streams(r: redis.Redis) -> list[bytes]:
    return list(r.scan_iter(match="agent:stream:response:*", count=1000))


async def test_a_burst_of_requests_queues_for_a_few_connections(make_bus, r) -> None:
    requester, responder = make_bus(request_connections=4), make_bus(max_in_flight=32)

    @responder.subscribe("math.square")
    async def square(data: dict) -> dict:
        return {"square": data["n"] ** 2}

    async with consuming(responder):
        replies = await asyncio.gather(
            *(requester.request("math.square", {"n": n}, timeout=30) for n in range(200)))
    assert replies == [{"square": n * n} for n in range(200)]
    assert response_streams(r) == []
    # A handful of connections served 200 callers: the requester's 4 for replies and 1 for
    # publishing, the responder's few, this test's own (it was one per caller before).
    assert len(r.client_list()) <= 12


async def test_a_burst_without_responder_times_out_cleanly(make_bus, r) -> None:
    requester = make_bus(request_connections=4)
    replies = await asyncio.gather(
        *(requester.request("nobody.listens", {"n": n}, timeout=0.5) for n in range(200)))
    assert replies == [None] * 200
    assert response_streams(r) == []
    assert r.xlen("agent:stream:nobody.listens") == 200


async def test_cancelled_request_deletes_its_reply(make_bus, r: redis.Redis) -> None:
    requester, responder = make_bus(request_connections=1), make_bus()
    responder.subscribe("echo")(lambda data: {"n": data.get("n")})
    # The only reply connection waits for a reply that never comes:
    stuck = asyncio.create_task(requester.request("nobody.listens", {}, timeout=60))
    await wait_for(lambda: blocked_in_xread(r), what="the reply connection taken")
    async with consuming(responder):
        waiting = asyncio.create_task(requester.request("echo", {"n": 1}, timeout=60))
        # Its reply arrived, while it still waits for a connection to read it:
        await wait_for(lambda: response_streams(r), what="the reply stream")
        assert not waiting.done()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert response_streams(r) == []
    stuck.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stuck
    assert response_streams(r) == []


async def test_request_that_times_out_waiting_for_a_connection_still_reads_its_reply(
        make_bus, r: redis.Redis) -> None:
    requester, responder = make_bus(request_connections=1), make_bus()
    responder.subscribe("echo")(lambda data: {"n": data.get("n")})
    stuck = asyncio.create_task(requester.request("nobody.listens", {}, timeout=60))
    await wait_for(lambda: blocked_in_xread(r), what="the reply connection taken")
    async with consuming(responder):
        assert await requester.request("echo", {"n": 1}, timeout=1) == {"n": 1}
    stuck.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stuck
    assert response_streams(r) == []


async def test_request_failing_in_redis_deletes_its_response_stream(make_bus, r) -> None:
    requester, responder = make_bus(request_connections=1), make_bus()

    @responder.subscribe("document.process")
    async def broken(data: dict) -> None:  # a responder that writes garbage where the reply goes
        await responder.client().set(data["response_stream"], b"not a stream")

    # The only reply connection is busy for a second, so the garbage is there before the XREAD.
    stuck = asyncio.create_task(requester.request("nobody.listens", {}, timeout=1))
    await wait_for(lambda: blocked_in_xread(r), what="the reply connection taken")
    async with consuming(responder):
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            await requester.request("document.process", {}, timeout=10)
    assert await stuck is None
    assert response_streams(r) == []
