"""Live tail connections: how many Redis connections one Daphne process holds to tail many
streams, and whether every stream still delivers.

Real Daphne (started fresh for each run, so each is measured alone), a private redis-server,
real websocket clients (`websockets`, from requirements-bench.txt) in this process. Runs:

    one        1 socket tailing 1 stream (the reference)
    streams    N sockets, each tailing its own stream (N = --streams, 150)
    firehose   F firehose sockets (--firehoses, 150), alternating between two patterns that
               cover the same N streams (half each: a firehose follows at most 100)

Per run, once every socket said "live": the Redis connections (CLIENT LIST) named by the tail
(streams-admin:tail*) and all of Daphne's (every client but this script's probe, which is how
a version without names is counted); then one XADD per stream, and how many sockets and
streams delivered it within --deadline seconds, and how fast. The connections are counted
again after the deliveries and the larger count is kept.

    .venv/bin/python bench/tail_connections.py                     # 150 streams, 150 firehoses
    .venv/bin/python bench/tail_connections.py --streams 40 --firehoses 20    # quick check

Target: all streams deliver with <= 10 tailing connections, whatever N. Exit status 1 if a
socket failed or a stream did not deliver.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
_spec = importlib.util.spec_from_file_location("bench_tail", ROOT / "bench" / "tail.py")
bench_tail = sys.modules["bench_tail"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_tail)  # its Bench starts redis-server and Daphne, logs in

PROBE = "bench-probe"
ENTRY_LINK = re.compile(r'/streams/([^/"]+)/entries/(\d+-\d+)/')
TAIL_NAMES = ("streams-admin:tail",)  # the hub's control and read connections start so


@dataclass
class Plan:
    name: str
    queries: list[str]  # one websocket per query
    wants: list[set[str]]  # the streams each socket must deliver


@dataclass
class Result:
    plan: Plan
    live: int = 0
    failures: list[str] = field(default_factory=list)
    tail_connections: int = 0
    daphne_connections: int = 0
    delivered_sockets: int = 0
    delivered_streams: int = 0
    streams: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, publish to arrival
    problems: list[str] = field(default_factory=list)


def stream_names(n: int) -> list[str]:
    return [f"conn:{'ab'[i % 2]}:{i:04d}" for i in range(n)]


def plans(args: argparse.Namespace) -> list[Plan]:
    keys = stream_names(args.streams)
    halves = {p: {k for k in keys if k.startswith(p[:-1])} for p in ("conn:a:*", "conn:b:*")}
    firehoses = [("conn:a:*", "conn:b:*")[i % 2] for i in range(args.firehoses)]
    return [
        Plan("one", [f"key={quote(keys[0], safe='')}"], [{keys[0]}]),
        Plan("streams", [f"key={quote(k, safe='')}" for k in keys], [{k} for k in keys]),
        Plan("firehose", [f"pattern={quote(p, safe='')}" for p in firehoses],
             [halves[p] for p in firehoses]),
    ]


def count_connections(r: Any) -> tuple[int, int]:
    """(connections named by the tail, all connections but the probe's)."""
    clients = [c for c in r.client_list() if c.get("name") != PROBE]
    return sum(1 for c in clients if c.get("name", "").startswith(TAIL_NAMES)), len(clients)


async def watch(ws: Any, wants: set[str], ids: dict[str, str], published: asyncio.Event,
                sent_at: list[float], arrivals: dict[str, float], live: asyncio.Event,
                failures: list[str]) -> None:
    """Read one socket: ack entries like tail.js, note when each wanted stream's entry came."""
    try:
        async for text in ws:
            message = json.loads(text)
            if message["type"] == "live":
                live.set()
            elif message["type"] == "entries":
                await ws.send(json.dumps({"ack": message["seq"]}))
                for row in message["rows"]:
                    # Streams written in one pipeline get the same IDs: the link says whose.
                    found = ENTRY_LINK.search(row)
                    key = unquote(found[1]) if found else ""
                    if (published.is_set() and key in wants and ids.get(key) == found[2]
                            and key not in arrivals):
                        arrivals[key] = time.monotonic() - sent_at[0]
                if len(arrivals) == len(wants):
                    return
            elif message["type"] in ("error", "reconnecting"):
                failures.append(f"{message['type']}: {message.get('message') or message}")
                if message["type"] == "error":
                    return
    except Exception as exc:  # a closed socket: say how
        failures.append(f"{type(exc).__name__}: {exc}"[:200])


async def run(bench: Any, plan: Plan, session: str, port: int, args: argparse.Namespace,
              r: Any) -> Result:
    from websockets.asyncio.client import connect

    result = Result(plan, streams=len(set().union(*plan.wants)))
    kwargs = dict(origin=f"http://127.0.0.1:{port}", compression=None, max_size=None,
                  additional_headers={"Cookie": f"sessionid={session}"}, open_timeout=60,
                  ping_interval=None)
    base = f"ws://127.0.0.1:{port}/ws/tail/?"
    sockets, tasks, lives = [], [], []
    ids: dict[str, str] = {}
    published, sent_at = asyncio.Event(), [0.0]
    arrivals: list[dict[str, float]] = []
    async with connect(base + "key=warm-up&from=0", **kwargs) as ws:
        # A fresh Daphne's first row costs ~0.1-0.3 s (imports, URLconf): not what is measured.
        while json.loads(await ws.recv())["type"] != "entries":
            pass
    for start in range(0, len(plan.queries), 50):  # 50 handshakes at a time
        batch = plan.queries[start:start + 50]
        sockets += await asyncio.gather(*(connect(base + q, **kwargs) for q in batch))
    for ws, wants in zip(sockets, plan.wants, strict=True):
        lives.append(asyncio.Event())
        arrivals.append({})
        tasks.append(asyncio.create_task(watch(ws, wants, ids, published, sent_at,
                                               arrivals[-1], lives[-1], result.failures)))
    deadline = time.monotonic() + args.deadline
    while time.monotonic() < deadline and not all(e.is_set() for e in lives):
        await asyncio.sleep(0.05)
    result.live = sum(e.is_set() for e in lives)
    await asyncio.sleep(0.5)  # the readers settle (a firehose rescans)
    tail, daphne = await asyncio.to_thread(count_connections, r)
    pipe = r.pipeline(transaction=False)
    keys = sorted(set().union(*plan.wants))
    for key in keys:
        pipe.xadd(key, {"n": "published"})
    sent_at[0] = time.monotonic()
    ids.update(zip(keys, (i.decode() for i in await asyncio.to_thread(pipe.execute)),
                   strict=True))
    published.set()
    _, pending = await asyncio.wait(tasks, timeout=args.deadline)
    more_tail, more_daphne = await asyncio.to_thread(count_connections, r)
    result.tail_connections, result.daphne_connections = max(tail, more_tail), max(daphne,
                                                                                   more_daphne)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    got: dict[str, int] = {}
    for wants, arrived in zip(plan.wants, arrivals, strict=True):
        result.delivered_sockets += len(arrived) == len(wants)
        result.latencies += arrived.values()
        for key in arrived:
            got[key] = got.get(key, 0) + 1
    viewers = {k: sum(k in w for w in plan.wants) for k in keys}
    result.delivered_streams = sum(got.get(k, 0) == viewers[k] for k in keys)
    return result


def measure(bench: Any, plan: Plan, args: argparse.Namespace, r: Any) -> Result:
    r.flushall()
    pipe = r.pipeline(transaction=False)
    pipe.xadd("warm-up", {"n": "a row to render before measuring"})
    for key in stream_names(args.streams):
        pipe.xadd(key, {"n": "seed"})
    pipe.execute()
    daphne, port, logfile = bench.start_daphne(plan.name)
    try:
        if not bench.session:
            bench.session = bench.login(port)
        result = asyncio.run(run(bench, plan, bench.session, port, args, r))
    finally:
        daphne.terminate()
        daphne.wait(15)
    result.problems = bench_tail.log_problems(logfile.read_text(errors="replace"))[:5]
    return result


def report(results: list[Result], seconds: float) -> list[str]:
    errors = []
    print(f"\nLive tail connections ({seconds:.0f} s in all)\n")
    print("| run | sockets | streams | live | sockets delivered | streams delivered "
          "| tail connections | Daphne's connections | delivery p50 / max ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for res in results:
        lat = sorted(res.latencies) or [float("nan")]
        print(f"| {res.plan.name} | {len(res.plan.queries)} | {res.streams} | {res.live} "
              f"| {res.delivered_sockets} | {res.delivered_streams} / {res.streams} "
              f"| {res.tail_connections} | {res.daphne_connections} "
              f"| {statistics.median(lat) * 1000:.0f} / {lat[-1] * 1000:.0f} |")
        if res.delivered_streams < res.streams or res.failures:
            errors.append(f"{res.plan.name}: {res.delivered_streams}/{res.streams} streams "
                          f"delivered; {len(res.failures)} socket failures "
                          f"{sorted(set(res.failures))[:3]}")
        errors += [f"{res.plan.name}: daphne log: {p}" for p in res.problems]
    one = results[0]
    print()
    for res in results[1:]:
        print(f"- {res.plan.name} / one: tail connections {res.tail_connections} / "
              f"{one.tail_connections} = {res.tail_connections / max(1, one.tail_connections):.1f}x"
              f", Daphne's {res.daphne_connections} / {one.daphne_connections} = "
              f"{res.daphne_connections / max(1, one.daphne_connections):.1f}x, for "
              f"{res.streams}x the streams (target: all deliver, <= 10 tail connections: "
              f"{'met' if res.tail_connections <= 10 and not errors else 'NOT met'})")
    for error in errors:
        print(f"ERROR {error}")
    return errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=150, help="streams (150)")
    parser.add_argument("--firehoses", type=int, default=150, help="firehose sockets (150)")
    parser.add_argument("--deadline", type=float, default=20,
                        help="seconds for the sockets to go live, and to deliver (20)")
    parser.add_argument("--runs", default="one,streams,firehose", help="which runs")
    args = parser.parse_args()
    import redis

    started = time.monotonic()
    bench = bench_tail.Bench(argparse.Namespace(profile=None))
    results = []
    try:
        bench.manage("migrate", "--noinput")
        bench.manage("ensure_login")
        r = redis.Redis.from_url(bench.redis_server.url, client_name=PROBE)
        for plan in plans(args):
            if plan.name in args.runs.split(","):
                bench_tail.log(f"run {plan.name}: {len(plan.queries)} sockets")
                results.append(measure(bench, plan, args, r))
        r.close()
    finally:
        bench.close()
    return 1 if report(results, time.monotonic() - started) else 0


if __name__ == "__main__":
    sys.exit(main())
