"""Redis Cluster beside one server, side by side in one run (issue 11's performance targets).

Starts its own redis-server and its own cluster (3 primaries + 3 replicas, tests/), then:

1. Overview of N streams (10,000): the same one-entry streams (every tenth with a group
   holding one pending entry) on the cluster and on the server; the overview page through
   Django's test client in this process (as bench/pages.py measures pages), the two setups
   alternating. Round trips = redis-py socket writes during the request (one per command or
   pipeline, every node); commands = INFO commandstats deltas of the primaries (the probe's
   own INFO left out), the replicas' apart. OVERVIEW_FRESHNESS is 0: each request computes.
   Targets: round trips cluster / server <= 3; time ratio <= 3 (median of per-round ratios).
2. Bus end to end (bench/bus.py's way: 64 callers publish, one consumer in a group counts
   them): in one process as bench/bus.py's `bus_e2e`; then the publisher in its own process
   and 1 worker process on the server, 1 on the cluster, 3 on the cluster (one group).
   Target: cluster / server, one worker, >= 0.7 (median of per-round ratios).
3. Firehose: 6 streams (2 on each primary), `--rate` events/s in all for `--seconds`, `--viewers`
   websockets of `/ws/tail/?pattern=...` through a real Daphne (fresh per run), publisher and
   viewers in their own processes (bench/tail.py's way: `published_at` in each entry, the
   viewer notes when the frame came). Runs alternate server, cluster, cluster, server...
   Target: p99 XADD-to-frame on the cluster <= 250 ms (median over its runs).

    .venv/bin/python bench/cluster.py                 # the issue's figures (~4 min)
    .venv/bin/python bench/cluster.py --parts firehose --firehose-runs 1 --seconds 5

Timings are noisy (2 cores shared): ratios are printed against the targets, never asserted.
Exit status 1 only when a run could not be set up or delivered wrongly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import tail as tailbench  # noqa: E402
from bench.dashboard_client import http_login  # noqa: E402

USERNAME, PASSWORD = "bench", "bench-cluster-password"
verdicts: list[tuple[str, str, str, bool | None]] = []  # what, figures, ratio, met
errors: list[str] = []


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@dataclass
class Setup:
    name: str  # "server" or "cluster"
    url: str
    primaries: list[str]  # node URLs
    replicas: list[str]

    def writer(self) -> redis.Redis:
        if self.name == "cluster":
            return redis.RedisCluster.from_url(self.url)  # type: ignore[return-value]
        return redis.Redis.from_url(self.url)

    def flush(self) -> None:
        for url in self.primaries:
            with redis.Redis.from_url(url) as r:
                r.flushall()


def setups(server: Any, cluster: Any) -> list[Setup]:
    primaries, replicas = [], []
    for node in cluster.nodes:
        with redis.Redis.from_url(node.url) as r:
            role = r.info("replication")["role"]
        (primaries if role == "master" else replicas).append(node.url)
    return [Setup("server", server.url, [server.url], []),
            Setup("cluster", cluster.url, primaries, replicas)]


class Probe:
    """Commands run on some nodes (INFO commandstats), on one connection per node."""

    def __init__(self, urls: list[str]) -> None:
        self.nodes = [redis.Redis.from_url(url) for url in urls]

    def calls(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for r in self.nodes:
            for name, stats in r.info("commandstats").items():
                total[name.removeprefix("cmdstat_")] += stats["calls"]
        return total

    def since(self, before: Counter[str]) -> Counter[str]:
        """Commands since `before` was taken, without that snapshot's INFO on each node and
        the replication stream's REPLCONF ACKs (a replica's, every second)."""
        delta = self.calls() - before
        delta["info"] -= len(self.nodes)
        delta.pop("replconf", None)
        return +delta

    def close(self) -> None:
        for r in self.nodes:
            r.close()


def calls(urls: list[str]) -> Counter[str]:
    """Commands run so far on these nodes, by name (a new connection per node)."""
    probe = Probe(urls)
    try:
        return probe.calls()
    finally:
        probe.close()


def per_round_ratio(tops: list[float], bottoms: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(tops, bottoms, strict=True))


# --- 1. overview -----------------------------------------------------------------------------


def overview_part(both: list[Setup], streams: int, rounds: int) -> None:
    os.environ["STREAMS_ADMIN_OVERVIEW_FRESHNESS"] = "0"  # every request computes
    from bench.dashboard_client import django_client
    from bench.pages import RoundTrips, many_streams

    for setup in both:
        setup.flush()  # what the other parts left would be on the page
        t0 = time.perf_counter()
        with setup.writer() as w:
            many_streams(w, streams)
        log(f"overview: {streams:,} streams on the {setup.name} in "
            f"{time.perf_counter() - t0:.1f} s")
    client, _ = django_client(both[0].url)
    from django.conf import settings

    from streams_admin import overview as overview_model
    from streams_admin import streams as streams_model

    links = re.compile(r'href="/streams/(bench:ov:\d+)/"')
    RoundTrips.install()
    probes = {setup.name: (Probe(setup.primaries), Probe(setup.replicas)) for setup in both}

    def page() -> int:
        response = client.get("/")
        if response.status_code != 200:
            raise RuntimeError(f"/ answered {response.status_code}")
        return len(set(links.findall(response.content.decode())))

    def read_model() -> int:
        return len(overview_model.overview(streams_model.server()).streams)

    samples: dict[tuple[str, str], list[tuple[float, int, Counter[str], Counter[str], int]]] = {}
    for n in range(2 + rounds):  # 2 warm-up rounds: connections, slot map, templates
        for what, do in (("page", page), ("read model", read_model)):
            for setup in (both if n % 2 else both[::-1]):
                settings.REDIS_URL = setup.url  # read at every call; clients cached per URL
                on_primaries, on_replicas = probes[setup.name]
                before_p, before_r = on_primaries.calls(), on_replicas.calls()
                with RoundTrips.counting() as trips:
                    t0 = time.perf_counter()
                    rows = do()
                    seconds = time.perf_counter() - t0
                    count = trips()
                primaries = on_primaries.since(before_p)
                replicas = on_replicas.since(before_r)
                if rows != 50:
                    raise RuntimeError(f"{what} on the {setup.name} showed {rows} streams")
                if n >= 2:
                    samples.setdefault((what, setup.name), []).append(
                        (seconds, count, primaries, replicas, rows))
    overview_report(samples, streams, rounds)


def overview_report(samples: dict, streams: int, rounds: int) -> None:
    print(f"\n## 1. Overview, {streams:,} streams, page of 50 ({rounds} rounds, alternating; "
          "medians)\n")
    print("| | setup | median ms | round trips | commands, primaries | SCAN | "
          "replicas' commands |")
    print("|---|---|---:|---:|---:|---:|---|")
    for (what, name), runs in samples.items():
        trips = {r[1] for r in runs}
        cmds = runs[-1][2]
        replicas = ", ".join(f"{k} {v}" for k, v in sorted(runs[-1][3].items()) if v) or "-"
        print(f"| {what} | {name} | {statistics.median(r[0] for r in runs) * 1000:,.1f} | "
              f"{'/'.join(map(str, sorted(trips)))} | {cmds.total():,} | {cmds['scan']} | "
              f"{replicas} |")
        others = ", ".join(f"{k} {v:,}" for k, v in sorted(cmds.items()) if v)
        print(f"|   | ({name}'s commands on primaries: {others}) | | | | | |")
    for what in ("page", "read model"):
        server, cluster = samples[(what, "server")], samples[(what, "cluster")]
        trips = max(r[1] for r in cluster) / max(r[1] for r in server)
        time_ratio = per_round_ratio([r[0] for r in cluster], [r[0] for r in server])
        figures = f"{max(r[1] for r in cluster)} / {max(r[1] for r in server)}"
        verdicts.append((f"overview {what}: round trips cluster / server ≤ 3", figures,
                         f"{trips:.2f}", trips <= 3))
        ms = (f"{statistics.median(r[0] for r in cluster) * 1000:,.0f} / "
              f"{statistics.median(r[0] for r in server) * 1000:,.0f} ms")
        verdicts.append((f"overview {what}: time cluster / server ≤ 3", ms,
                         f"{time_ratio:.2f}", time_ratio <= 3))


# --- 2. bus ----------------------------------------------------------------------------------


def _worker(url: str, n: int, name: str, handled: Any, ended: Any) -> None:
    from bench.bus import new_bus

    async def run() -> None:
        bus = new_bus(url)

        @bus.subscribe("bench.e2e")
        async def handle(data: dict) -> None:
            with handled.get_lock():
                handled.value += 1
                if handled.value == n:
                    ended.value = time.perf_counter()

        consumer = asyncio.create_task(bus.start_consumer("bench", name))
        while not ended.value:
            await asyncio.sleep(0.05)
        await bus.stop_consumer()
        await consumer
        await bus.aclose()

    asyncio.run(run())


def workers_end_to_end(url: str, n: int, workers: int) -> float:
    """events/s: the publisher in its own process, `workers` worker processes in one group;
    from the first publish to the last event handled."""
    from bench.bus import publisher_process

    context = multiprocessing.get_context("fork")
    handled, ended = context.Value("q", 0), context.Value("d", 0.0)
    procs = [context.Process(target=_worker, args=(url, n, f"w{i}", handled, ended))
             for i in range(workers)]
    for proc in procs:
        proc.start()
    time.sleep(1.0)  # each has made the group (id 0: nothing is missed) and is reading
    publisher, started = publisher_process("bus", url, n)
    publisher.join()
    deadline = time.monotonic() + 120
    while not ended.value:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{handled.value} of {n} events handled after 120 s")
        time.sleep(0.02)
    for proc in procs:
        proc.join(30)
    return n / (ended.value - started.value)


def bus_part(both: list[Setup], n: int, rounds: int) -> None:
    from bench.bus import CALLERS, bus_end_to_end

    n -= n % CALLERS
    server, cluster = both
    steps = [
        ("in one process, server", server, lambda: asyncio.run(bus_end_to_end(server.url, n))),
        ("in one process, cluster", cluster,
         lambda: asyncio.run(bus_end_to_end(cluster.url, n))),
        ("1 worker process, server", server, lambda: workers_end_to_end(server.url, n, 1)),
        ("1 worker process, cluster", cluster, lambda: workers_end_to_end(cluster.url, n, 1)),
        ("3 worker processes, cluster", cluster,
         lambda: workers_end_to_end(cluster.url, n, 3)),
    ]
    samples: dict[str, list[float]] = {name: [] for name, _, _ in steps}
    for round_ in range(rounds):
        order = steps if round_ % 2 == 0 else steps[1::-1] + steps[3:1:-1] + steps[4:]
        for name, setup, step in order:
            setup.flush()
            samples[name].append(step())
        log("bus round " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in samples.items()))
    print(f"\n## 2. Bus end to end, {n:,} events per run ({rounds} rounds, medians)\n")
    print("| run | events/s |\n|---|---:|")
    for name, values in samples.items():
        print(f"| {name} | {statistics.median(values):,.0f} |")
    for top, bottom, what in (
            ("in one process, cluster", "in one process, server", "one process"),
            ("1 worker process, cluster", "1 worker process, server", "1 worker process")):
        x = per_round_ratio(samples[top], samples[bottom])
        verdicts.append((f"bus end to end, {what}: cluster / server ≥ 0.7",
                         f"{statistics.median(samples[top]):,.0f} / "
                         f"{statistics.median(samples[bottom]):,.0f} /s", f"{x:.2f}", x >= 0.7))
    x = per_round_ratio(samples["3 worker processes, cluster"],
                        samples["1 worker process, cluster"])
    verdicts.append(("(information) bus, 3 workers / 1 worker on the cluster", "",
                     f"{x:.2f}", None))


# --- 3. firehose -----------------------------------------------------------------------------

# A firehose row: its ID and its stream's link; published_at as bench/tail.py finds it.
SEEDED_AT = 1_000_000_000.0  # the seed entries' published_at: long before any run
ROW_RE = re.compile(rb'data-id=\\"(\d+)-(\d+)\\"><td class=\\"key small\\"><a href=\\"'
                    rb'/streams/([^"\\]+)/\\"')


def publisher(cfg: dict[str, Any]) -> None:
    """XADD at cfg["rate"]/s in all, round robin over cfg["keys"], for cfg["seconds"]: every
    10 ms one pipeline of what is due (on a cluster, redis-py sends it to each node)."""
    r = (redis.RedisCluster.from_url(cfg["redis_url"]) if cfg["cluster"]
         else redis.Redis.from_url(cfg["redis_url"]))
    keys, rate, seconds = cfg["keys"], cfg["rate"], cfg["seconds"]
    total = int(rate * seconds)
    sent = late = after_warmup = 0
    start_wall = time.time()
    warm_until = start_wall + cfg["warmup"]
    print(json.dumps({"start": start_wall, "warm_until": warm_until}), flush=True)
    cpu0 = time.process_time()
    start = next_tick = time.monotonic()
    while sent < total:
        elapsed = time.monotonic() - start
        due = total - sent if elapsed >= seconds else min(total, int(rate * elapsed)) - sent
        if due > 0:
            pipe = r.pipeline(transaction=False)
            stamp = time.time()
            published = f"{stamp:.6f}"
            timestamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(stamp))
            for n in range(sent, sent + due):
                pipe.xadd(keys[n % len(keys)], {
                    "event_id": str(uuid.uuid4()), "event_type": "bench.tick",
                    "timestamp": timestamp, "data": json.dumps({"n": n}),
                    "published_at": published})
            pipe.execute()
            sent += due
            if stamp >= warm_until:
                after_warmup += due
        next_tick += tailbench.TICK
        pause = next_tick - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        else:
            late += 1
            next_tick = time.monotonic()
    print(json.dumps({"sent": sent, "after_warmup": after_warmup, "late_ticks": late,
                      "duration": time.monotonic() - start,
                      "cpu": time.process_time() - cpu0}), flush=True)


@dataclass
class Watch:
    lat: list[float]  # ms, entries published after warm-up
    fresh: int = 0  # entries published by this run's publisher
    messages: int = 0  # entries messages
    skipped: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    closed: str = ""


async def viewers(cfg: dict[str, Any]) -> None:
    """cfg["viewers"] firehose sockets, each acking every frame at once (as tail.js does)."""
    from websockets.asyncio.client import connect

    kwargs = dict(origin=cfg["origin"], additional_headers={"Cookie":
                  f"sessionid={cfg['session']}"}, compression=None, max_size=None,
                  ping_interval=None, open_timeout=60, close_timeout=2)
    order: dict[str, Any] = {}
    got_order = asyncio.Event()
    watches = [Watch([]) for _ in range(cfg["viewers"])]
    caught_up = asyncio.Event()

    def check_done() -> None:
        if got_order.is_set() and all(w.fresh + w.skipped >= order["sent"] or w.closed
                                      for w in watches):
            caught_up.set()

    async def watch(ws: Any, w: Watch) -> None:
        last: dict[bytes, tuple[int, int]] = {}
        try:
            while True:
                data = await ws.recv(decode=False)
                now = time.time()
                head = tailbench.HEAD_RE.match(data)
                kind = head.group(1) if head else json.loads(data)["type"].encode()
                if kind == b"entries":
                    await ws.send(f'{{"ack": {int(head.group(2))}}}')
                    w.messages += 1
                    rows, pubs = ROW_RE.findall(data), tailbench.PUB_RE.findall(data)
                    if len(rows) != len(pubs):
                        raise RuntimeError(f"{len(rows)} rows but {len(pubs)} published_at")
                    for (ms, seq, token), pub in zip(rows, pubs, strict=True):
                        entry = (int(ms), int(seq))
                        before = last.get(token, (0, 0))
                        w.duplicates += entry == before
                        w.out_of_order += entry < before
                        last[token] = max(before, entry)
                        t = float(pub)
                        if t > SEEDED_AT:  # published by this run's publisher
                            w.fresh += 1
                            if t >= cfg.get("warm_until", float("inf")):
                                w.lat.append((now - t) * 1000)
                elif kind == b"skipped":
                    w.skipped += int(head.group(3))
                elif kind == b"error":
                    raise RuntimeError(data.decode()[:200])
                check_done()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            w.closed = f"{type(exc).__name__}: {exc}"[:200]
            check_done()

    sockets = await asyncio.gather(*(connect(cfg["url"], **kwargs) for _ in watches))
    tasks = [asyncio.create_task(watch(ws, w)) for ws, w in zip(sockets, watches, strict=True)]
    print("READY", flush=True)
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    cfg.update(json.loads(await reader.readline()))  # start, warm_until: before publishing
    print("GO", flush=True)
    order.update(json.loads(await reader.readline()))  # sent, after_warmup, drain
    got_order.set()
    check_done()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(caught_up.wait(), order["drain"])
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    lat = sorted(x for w in watches for x in w.lat)
    missing = order["after_warmup"] * len(watches) - len(lat)
    print(json.dumps({
        "p50": tailbench.percentile(lat, 0.50, missing),
        "p99": tailbench.percentile(lat, 0.99, missing), "max": lat[-1] if lat else None,
        "missing": missing, "received": len(lat),
        "skipped": sum(w.skipped for w in watches),
        "messages": sum(w.messages for w in watches) / len(watches),
        "duplicates": sum(w.duplicates for w in watches),
        "out_of_order": sum(w.out_of_order for w in watches),
        "closed": [w.closed for w in watches if w.closed],
    }), flush=True)


def pick_keys(cluster: Setup, count: int) -> list[str]:
    """`count` stream names spread evenly over the primaries (2 on each of 3 for 6)."""
    with redis.RedisCluster.from_url(cluster.url) as rc:
        chosen: dict[str, list[str]] = {}
        for i in range(10_000):
            key = f"bench:fh:{i}"
            node = rc.get_node_from_key(key).name
            if len(chosen.setdefault(node, [])) < -(-count // len(cluster.primaries)):
                chosen[node].append(key)
            if sum(map(len, chosen.values())) >= count and len(chosen) >= min(
                    count, len(cluster.primaries)):
                break
    ordered = [keys[i] for i in range(max(map(len, chosen.values())))
               for keys in chosen.values() if i < len(keys)]  # round robin over the primaries
    return ordered[:count]


class Firehose:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
        self.env = {**os.environ, "SECRET_KEY": "bench-cluster",
                    "DATABASE_URL": f"sqlite:///{self.tmp / 'db.sqlite3'}",
                    "DJANGO_SUPERUSER_USERNAME": USERNAME, "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
                    "DJANGO_SETTINGS_MODULE": "dashboard.settings", "LOG_LEVEL": "WARNING"}
        self.env.pop("DEBUG", None)
        self.session = ""
        for command in (["migrate", "--noinput"], ["ensure_login"]):
            subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=self.env,
                           check=True, capture_output=True, timeout=120)

    def start_daphne(self, setup: Setup, label: str) -> tuple[subprocess.Popen[bytes], int, Path]:
        bench = tailbench.Bench.__new__(tailbench.Bench)  # its start_daphne, our env
        bench.args = argparse.Namespace(profile=self.args.profile)
        bench.tmp, bench.env = self.tmp, {**self.env, "REDIS_URL": setup.url}
        return bench.start_daphne(label)

    def run(self, setup: Setup, keys: list[str], label: str) -> dict[str, Any]:
        args = self.args
        setup.flush()
        with setup.writer() as w:
            for key in keys:  # the firehose's SCAN finds them as its viewers join
                w.xadd(key, {"seed": "before the viewers", "published_at": f"{SEEDED_AT:.6f}"})
        daphne, port, logfile = self.start_daphne(setup, label)
        procs: list[subprocess.Popen[str]] = []
        try:
            base = f"http://127.0.0.1:{port}"
            self.session = self.session or http_login(base, USERNAME, PASSWORD)[1]
            cfg = {"url": f"ws://127.0.0.1:{port}/ws/tail/?pattern={quote('bench:fh:*')}",
                   "origin": base, "session": self.session, "viewers": args.viewers}
            clients = subprocess.Popen([sys.executable, __file__, "_viewers", json.dumps(cfg)],
                                       cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       text=True)
            procs.append(clients)
            if (ready := clients.stdout.readline().strip()) != "READY":
                raise RuntimeError(f"viewers did not connect: {ready!r}")
            time.sleep(1.5)  # every firehose has scanned and joined its 6 streams
            before = calls(setup.primaries)
            cpu0 = {"daphne": tailbench.cpu_seconds(daphne.pid),
                    "viewers": tailbench.cpu_seconds(clients.pid)}
            pub_cfg = {"redis_url": setup.url, "cluster": setup.name == "cluster",
                       "keys": keys, "rate": args.rate, "seconds": args.seconds,
                       "warmup": args.warmup}
            pub = subprocess.Popen([sys.executable, __file__, "_publisher",
                                    json.dumps(pub_cfg)],
                                   cwd=ROOT, stdout=subprocess.PIPE, text=True)
            procs.append(pub)
            clients.stdin.write(pub.stdout.readline())
            clients.stdin.flush()
            published = json.loads(pub.stdout.readline())
            cpu = {name: (tailbench.cpu_seconds(pid) - cpu0[name]) / published["duration"]
                   for name, pid in (("daphne", daphne.pid), ("viewers", clients.pid))}
            after = calls(setup.primaries)
            clients.stdin.write(json.dumps({**published, "drain": args.drain}) + "\n")
            clients.stdin.flush()
            clients.stdout.readline()  # GO
            result = json.loads(clients.stdout.readline() or "null")
            clients.wait(60)
            if result is None:
                raise RuntimeError("the viewers gave no result")
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
            daphne.terminate()
            daphne.wait(15)
        delta = after - before
        result.update(published=published, cpu=cpu, xread=delta["xread"],
                      log=tailbench.log_problems(logfile.read_text(errors="replace"))[:5])
        if result["duplicates"] or result["out_of_order"] or result["closed"]:
            errors.append(f"firehose {label}: {result['duplicates']} duplicates, "
                          f"{result['out_of_order']} out of order, closed: {result['closed']}")
        return result


def firehose_part(both: list[Setup], args: argparse.Namespace) -> None:
    keys = pick_keys(both[1], args.firehose_streams)
    with redis.RedisCluster.from_url(both[1].url) as rc:
        where = Counter(rc.get_node_from_key(key).name for key in keys)
    log(f"firehose: {keys} on {dict(where)}")
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    bench = Firehose(args)
    results: dict[str, list[dict[str, Any]]] = {"server": [], "cluster": []}
    for i in range(args.firehose_runs):
        for setup in (both if i % 2 == 0 else both[::-1]):
            label = f"{setup.name}-{i + 1}"
            log(f"firehose run {label}: {args.viewers} viewers, {args.rate}/s over "
                f"{len(keys)} streams, {args.seconds:g} s")
            res = bench.run(setup, keys, label)
            results[setup.name].append(res)
            log(f"  p50 {tailbench.fmt_ms(res['p50'])} p99 {tailbench.fmt_ms(res['p99'])} ms, "
                f"Daphne CPU {res['cpu']['daphne']:.0%}, load {load_average()}")
    print(f"\n## 3. Firehose: {len(keys)} streams ({len(where)} primaries), {args.rate:,}/s in "
          f"all for {args.seconds:g} s (first {args.warmup:g} s left out), {args.viewers} "
          f"viewers, one Daphne\n")
    print("| run | p50 ms | p99 ms | max ms | missing | skipped | messages/s a viewer | "
          "XREAD calls | CPU Daphne | CPU viewers | publisher late ticks |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, runs in results.items():
        for i, res in enumerate(runs, 1):
            print(f"| {name} #{i} | {tailbench.fmt_ms(res['p50'])} | "
                  f"{tailbench.fmt_ms(res['p99'])} | {tailbench.fmt_ms(res['max'])} | "
                  f"{res['missing']:,} | {res['skipped']:,} | "
                  f"{res['messages'] / res['published']['duration']:,.0f} | {res['xread']:,} | "
                  f"{res['cpu']['daphne']:.0%} | {res['cpu']['viewers']:.0%} | "
                  f"{res['published']['late_ticks']} |")
            for line in res["log"]:
                print(f"|   | Daphne's log: {line[:150]} |||||||||")
    p99 = {name: statistics.median(r["p99"] for r in runs) for name, runs in results.items()}
    verdicts.append(("firehose p99 on the cluster ≤ 250 ms (median of runs)",
                     f"{tailbench.fmt_ms(p99['cluster'])} ms (server "
                     f"{tailbench.fmt_ms(p99['server'])})",
                     f"{tailbench.ratio(p99['cluster'], p99['server']):.2f}x server",
                     p99["cluster"] <= 250))


# --- main ------------------------------------------------------------------------------------


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "_publisher":
        publisher(json.loads(sys.argv[2]))
        return 0
    if len(sys.argv) > 2 and sys.argv[1] == "_viewers":
        asyncio.run(viewers(json.loads(sys.argv[2])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="overview,bus,firehose")
    parser.add_argument("--streams", type=int, default=10_000, help="overview (10,000)")
    parser.add_argument("--rounds", type=int, default=5, help="overview rounds (5)")
    parser.add_argument("--events", type=int, default=25_600, help="bus events a run")
    parser.add_argument("--bus-rounds", type=int, default=3)
    parser.add_argument("--rate", type=int, default=2000, help="firehose events/s (2,000)")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--drain", type=float, default=10)
    parser.add_argument("--viewers", type=int, default=20)
    parser.add_argument("--firehose-streams", type=int, default=6, help="spread over the primaries")
    parser.add_argument("--firehose-runs", type=int, default=2, help="runs of each setup")
    parser.add_argument("--replicas", type=int, default=1,
                        help="replicas per primary (1): 0 shows what replication costs here, "
                             "where every redis-server shares the same cores")
    parser.add_argument("--profile", metavar="DIR",
                        help="run each firehose run's Daphne under cProfile, its log kept, in DIR")
    args = parser.parse_args()
    from tests.cluster_server import RedisCluster
    from tests.redis_server import RedisServer

    parts = args.parts.split(",")
    started = time.monotonic()
    load_before = load_average()
    server, cluster = RedisServer().start(), RedisCluster(replicas=args.replicas).start()
    # Like for like: the one server gets as many replicas as each primary (each write is
    # replicated on both sides, by processes on the same cores).
    replicas = [RedisServer().start() for _ in range(args.replicas)]
    for replica in replicas:
        redis.Redis(port=replica.port).replicaof("127.0.0.1", server.port)
    try:
        info = redis.Redis.from_url(server.url).info("server")
        print(f"# Redis Cluster (3 primaries + {3 * args.replicas} replicas) beside one "
              f"redis-server {info['redis_version']} (+ {args.replicas} replicas), "
              f"{os.cpu_count()} cores, load average {load_before}")
        both = setups(server, cluster)
        if "firehose" in parts:
            firehose_part(both, args)
        if "bus" in parts:
            bus_part(both, args.events, args.bus_rounds)
        if "overview" in parts:
            overview_part(both, args.streams, args.rounds)
    finally:
        for node in (server, *replicas):
            node.stop()
        cluster.stop()
    print("\n## Against the targets\n")
    w0 = max(len(v[0]) for v in verdicts) if verdicts else 0
    w1 = max(len(v[1]) for v in verdicts) if verdicts else 0
    for what, figures, rel, ok in verdicts:
        verdict = "n/a" if ok is None else "PASS" if ok else "FAIL"
        print(f"  {what.ljust(w0)}  {figures.rjust(w1)}  {rel:>14}  {verdict}")
    for error in errors:
        print(f"ERROR: {error}")
    print(f"\nLoad average before {load_before}, after {load_average()}; "
          f"{time.monotonic() - started:.0f} s.")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
