"""Benchmark the event bus against FastStream 0.7 and raw redis-py, side by side, one run.

    pip install -r requirements-bench.txt
    python bench/bus.py [--events 50000] [--fs-events 5000]

Starts its own redis-server on a free port. Every figure uses the same payload.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client import CollectorRegistry  # noqa: E402

from streams_admin.bus import EventBus  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

PAYLOAD = {"task_id": "task-123", "priority": "high", "payload": {"n": 1, "tags": ["a", "b"]}}
CALLERS = 64


def envelope() -> dict[str, str]:
    return {"event_id": str(uuid.uuid4()), "event_type": "bench.raw",
            "timestamp": datetime.now(UTC).isoformat(), "data": json.dumps(PAYLOAD)}


def flush(url: str) -> None:
    with redis.Redis.from_url(url) as r:
        r.flushall()


async def callers(n: int, publish: Callable[[], Awaitable[object]]) -> float:
    """n publishes from CALLERS concurrent callers; events per second."""
    per_caller = n // CALLERS

    async def caller() -> None:
        for _ in range(per_caller):
            await publish()

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(CALLERS)))
    return per_caller * CALLERS / (time.perf_counter() - started)


# -- raw redis-py anchors -------------------------------------------------------------

def raw_unpipelined(url: str, n: int) -> float:
    with redis.Redis.from_url(url) as r:
        started = time.perf_counter()
        for _ in range(n):
            r.xadd("bench:raw1", envelope())
        return n / (time.perf_counter() - started)


def raw_pipelined(url: str, n: int, batch: int = 500) -> float:
    with redis.Redis.from_url(url) as r:
        started = time.perf_counter()
        for _ in range(n // batch):
            pipe = r.pipeline(transaction=False)
            for _ in range(batch):
                pipe.xadd("bench:raw", envelope())
            pipe.execute()
        return n // batch * batch / (time.perf_counter() - started)


def raw_read_ack(url: str, batch: int = 500) -> float:
    with redis.Redis.from_url(url) as r:
        r.xgroup_create("bench:raw", "g", id="0")
        done, started = 0, time.perf_counter()
        while reply := r.xreadgroup("g", "c", {"bench:raw": ">"}, count=batch):
            ids = [entry_id for entry_id, fields in reply[0][1] if json.loads(fields[b"data"])]
            r.xack("bench:raw", "g", *ids)
            done += len(ids)
        return done / (time.perf_counter() - started)


# -- a publisher in its own process (as services run in production) ------------------

def _publisher_process(kind: str, url: str, n: int, started: Any) -> None:
    async def run() -> None:
        if kind == "bus":
            bus = new_bus(url)
            publish: Callable[[], Awaitable[object]] = lambda: bus.publish(  # noqa: E731
                "bench.e2e", PAYLOAD)
        else:
            from faststream.redis import RedisBroker

            broker = RedisBroker(url, logger=None)
            await broker.connect()
            publish = lambda: broker.publish(PAYLOAD, stream="fs.e2e")  # noqa: E731
        started.value = time.perf_counter()
        await callers(n, publish)

    asyncio.run(run())


def publisher_process(kind: str, url: str, n: int) -> tuple[Any, Any]:
    started = multiprocessing.Value("d", 0.0)
    process = multiprocessing.get_context("fork").Process(
        target=_publisher_process, args=(kind, url, n, started))
    process.start()
    return process, started


async def publish_elsewhere(kind: str, url: str, n: int, finished: asyncio.Event) -> float:
    """Publish from another process; seconds from its first publish to the last handled."""
    process, started = publisher_process(kind, url, n)
    await finished.wait()
    ended = time.perf_counter()  # perf_counter is system-wide (CLOCK_MONOTONIC) on Linux
    await asyncio.to_thread(process.join)
    return ended - started.value


# -- the bus --------------------------------------------------------------------------

def new_bus(url: str) -> EventBus:
    return EventBus(url, registry=CollectorRegistry(), max_in_flight=512)


async def bus_publish(url: str, n: int) -> float:
    bus = new_bus(url)
    rate = await callers(n, lambda: bus.publish("bench.pub", PAYLOAD))
    await bus.aclose()
    return rate


async def bus_end_to_end(url: str, n: int, split: bool = False) -> float:
    bus = new_bus(url)
    handled = 0
    finished = asyncio.Event()

    @bus.subscribe("bench.e2e")
    async def handle(data: dict) -> None:
        nonlocal handled
        handled += 1
        if handled == n:
            finished.set()

    consumer = asyncio.create_task(bus.start_consumer("bench", "c1"))
    await asyncio.sleep(0.2)
    if split:
        rate = n / await publish_elsewhere("bus", url, n, finished)
    else:
        started = time.perf_counter()
        await callers(n, lambda: bus.publish("bench.e2e", PAYLOAD))
        await finished.wait()
        rate = n / (time.perf_counter() - started)
    await bus.stop_consumer()
    await consumer
    await bus.aclose()
    return rate


async def bus_round_trips(url: str, n: int) -> list[float]:
    bus = new_bus(url)

    @bus.subscribe("bench.rpc")
    async def respond(data: dict) -> dict:
        return {"ok": data["task_id"]}

    consumer = asyncio.create_task(bus.start_consumer("bench", "responder"))
    await bus.request("bench.rpc", PAYLOAD, timeout=10)  # warm up
    times = []
    for _ in range(n):
        started = time.perf_counter()
        assert await bus.request("bench.rpc", PAYLOAD, timeout=10) == {"ok": "task-123"}
        times.append(time.perf_counter() - started)
    await bus.stop_consumer()
    await consumer
    await bus.aclose()
    return times


async def bare_round_trips(url: str, n: int) -> list[float]:
    """The floor: XADD a request, a bare responder XREADs and XADDs, XREAD BLOCK the reply."""
    requester, responder = aioredis.Redis.from_url(url), aioredis.Redis.from_url(url)

    async def respond() -> None:
        last = "$"
        while True:
            reply = await responder.xread({"bench:rpc": last}, block=0)
            for entry_id, fields in reply[0][1]:
                last = entry_id
                await responder.xadd(fields[b"reply"], {"data": fields[b"data"]})

    task = asyncio.create_task(respond())
    await asyncio.sleep(0.1)
    times = []
    for i in range(n + 1):
        started = time.perf_counter()
        stream = f"bench:reply:{i}"
        await requester.xadd("bench:rpc", {"reply": stream, "data": json.dumps(PAYLOAD)})
        await requester.xread({stream: "0"}, count=1, block=10_000)
        await requester.delete(stream)
        times.append(time.perf_counter() - started)
    task.cancel()
    await requester.aclose()
    return times[1:]


# -- FastStream -----------------------------------------------------------------------

async def faststream_publish(url: str, n: int) -> float:
    from faststream.redis import RedisBroker

    broker = RedisBroker(url, logger=None)
    await broker.connect()
    rate = await callers(n, lambda: broker.publish(PAYLOAD, stream="fs.pub"))
    await broker.stop()
    return rate


async def faststream_end_to_end(url: str, n: int, split: bool = False) -> float:
    from faststream.redis import RedisBroker, StreamSub

    broker = RedisBroker(url, logger=None)
    handled = 0
    finished = asyncio.Event()

    @broker.subscriber(stream=StreamSub("fs.e2e", group="bench", consumer="c1"))
    async def handle(data: dict) -> None:
        nonlocal handled
        handled += 1
        if handled == n:
            finished.set()

    await broker.start()
    await asyncio.sleep(0.2)
    if split:
        rate = n / await publish_elsewhere("faststream", url, n, finished)
    else:
        started = time.perf_counter()
        await callers(n, lambda: broker.publish(PAYLOAD, stream="fs.e2e"))
        await finished.wait()
        rate = n / (time.perf_counter() - started)
    await broker.stop()
    return rate


# -- report ---------------------------------------------------------------------------

RATIOS = {
    "publish_vs_fs": ("bus_publish", "fs_publish"),
    "publish_vs_raw": ("bus_publish", "raw_pipelined"),
    "e2e_vs_fs": ("bus_e2e", "fs_e2e"),
    "e2e_split_vs_fs": ("bus_e2e_split", "fs_e2e_split"),
}


def percentile(times: list[float], p: float) -> float:
    return statistics.quantiles(times, n=100)[int(p) - 1] * 1000


async def measure(url: str, n: int, fs_n: int, rpc_n: int, rounds: int) -> dict[str, float]:
    """Every step once per round, rounds interleaved; medians (the machine is shared)."""
    steps: list[tuple[str, Callable[[], Awaitable[float]] | Callable[[], float]]] = [
        ("raw_unpipelined", lambda: raw_unpipelined(url, n // 4)),
        ("fs_publish", lambda: faststream_publish(url, fs_n)),
        ("bus_publish", lambda: bus_publish(url, n)),
        ("raw_pipelined", lambda: raw_pipelined(url, n)),
        ("raw_read_ack", lambda: raw_read_ack(url)),
        ("fs_e2e", lambda: faststream_end_to_end(url, fs_n)),
        ("bus_e2e", lambda: bus_end_to_end(url, n)),
        ("fs_e2e_split", lambda: faststream_end_to_end(url, fs_n, split=True)),
        ("bus_e2e_split", lambda: bus_end_to_end(url, n, split=True)),
    ]
    samples: dict[str, list[float]] = {name: [] for name, _ in steps}
    for round_ in range(1, rounds + 1):
        for name, step in steps:
            if name != "raw_read_ack":  # it reads what raw_pipelined wrote
                flush(url)
            value = step()
            samples[name].append(await value if isinstance(value, Awaitable) else value)
        print(f"round {round_}: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in samples.items()),
              flush=True)
    results = {name: statistics.median(values) for name, values in samples.items()}
    # Ratios within each round (the pair ran back to back), then their median: the machine's
    # load changes between rounds more than between neighbouring steps.
    for ratio, (top, bottom) in RATIOS.items():
        results[ratio] = statistics.median(
            a / b for a, b in zip(samples[top], samples[bottom], strict=True))
    rtts: dict[str, list[float]] = {"bare": [], "bus": []}
    for _ in range(rounds):
        for name, rtt in (("bare", bare_round_trips), ("bus", bus_round_trips)):
            flush(url)
            rtts[name] += await rtt(url, rpc_n)
    for name, times in rtts.items():
        results[f"{name}_p50"] = percentile(times, 50)
        results[f"{name}_p99"] = percentile(times, 99)
    return results


def report(x: dict[str, float], n: int, fs_n: int, rpc_n: int, rounds: int) -> str:
    return "\n".join([
        "| measure | events/s | ratio |", "|---|---:|---|",
        f"| raw redis-py XADD, unpipelined | {x['raw_unpipelined']:,.0f} | |",
        f"| raw redis-py XADD, pipelines of 500 | {x['raw_pipelined']:,.0f} | |",
        f"| raw redis-py XREADGROUP+XACK, batches of 500 | {x['raw_read_ack']:,.0f} | |",
        f"| FastStream publish, {CALLERS} callers | {x['fs_publish']:,.0f} | |",
        f"| **bus publish, {CALLERS} callers** | {x['bus_publish']:,.0f} | "
        f"{x['publish_vs_fs']:.1f}x FastStream (>= 5x), "
        f"{x['publish_vs_raw']:.2f}x raw pipelined (>= 0.5x) |",
        f"| FastStream end to end, group | {x['fs_e2e']:,.0f} | |",
        f"| **bus end to end, group** | {x['bus_e2e']:,.0f} | "
        f"{x['e2e_vs_fs']:.1f}x FastStream (>= 10x) |",
        f"| FastStream end to end, publisher in its own process | {x['fs_e2e_split']:,.0f} | |",
        f"| **bus end to end, publisher in its own process** | {x['bus_e2e_split']:,.0f} | "
        f"{x['e2e_split_vs_fs']:.1f}x FastStream (>= 10x) |",
        "", "| request/response round trip | p50 ms | p99 ms |", "|---|---:|---:|",
        f"| bare redis-py XADD + XREAD BLOCK | {x['bare_p50']:.3f} | {x['bare_p99']:.3f} |",
        f"| bus.request → bus responder | {x['bus_p50']:.3f} | {x['bus_p99']:.3f} |",
        "", f"(medians of {rounds} interleaved rounds, ratios: median of each round's ratio; "
        f"{n:,} events per bus/raw run, "
        f"{fs_n:,} per FastStream run; request round trips: {rpc_n:,} per round, pooled; "
        f"payload {json.dumps(PAYLOAD)})",
    ])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=25_600)
    parser.add_argument("--fs-events", type=int, default=3_200)
    parser.add_argument("--requests", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    # Whole rounds of CALLERS publishes, so the end-to-end runs know when they are done.
    args.events -= args.events % CALLERS
    args.fs_events -= args.fs_events % CALLERS
    server = RedisServer().start()
    try:
        results = asyncio.run(measure(server.url, args.events, args.fs_events, args.requests,
                                      args.rounds))
    finally:
        server.stop()
    print()
    print(report(results, args.events, args.fs_events, args.requests, args.rounds))


if __name__ == "__main__":
    main()
