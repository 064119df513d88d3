"""Expensive Redis work stays bounded: the overview under many viewers, previews on a big stream.

One private redis-server, one real Daphne process (as a deployment runs it), side by side in
one run:

1. Throughput: 1,000 streams, each with a group (every tenth holding a pending entry).
   CLIENTS concurrent clients fetch the overview, REQUESTS requests each; then the same
   clients fetch the login page (a small sync view on the same Daphne), alternately, ROUNDS
   times. Prints requests/s of both and the ratio overview / login (target >= 0.5).
2. Redis stays responsive: a 1,000,000-entry stream with two groups. A separate process
   PINGs Redis every 10 ms on its own connection while the dashboard answers trim previews
   (MINID in the middle, MAXLEN half) and a set-ID preview; prints the PING latency (max and
   p99, target max <= 100 ms) and each preview's response time. For comparison, the same
   PING probe during one unbounded counting script (what a preview ran before) and during
   the trim itself (XTRIM MAXLEN 500,000 through the dashboard).

    .venv/bin/python bench/hardening.py [--clients 50] [--requests 10] [--rounds 2]

Exit status 1 when a target is missed. Timings are noisy on a shared machine; the ratio is
measured side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from urllib.request import Request

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.dashboard_client import http_login, start_daphne  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

USERNAME, PASSWORD = "bench", "bench-hardening-password"
BIG, GROUP = "bench:big", "workers"
FILL = """
for i = 1, tonumber(ARGV[1]) do
  redis.call("XADD", KEYS[1], "*", "event_type", "task.created", "n", tostring(i),
             "data", '{"task_id": "t", "priority": "high"}')
end
"""
# What a preview did before: count a range inside one script, up to 1,000,000 entries.
UNBOUNDED = """
local count, start = 0, "-"
while count < 1000000 do
  local batch = redis.call("XRANGE", KEYS[1], start, "+", "COUNT", 1000)
  count = count + #batch
  if #batch < 1000 then return count end
  start = "(" .. batch[#batch][1]
end
return count
"""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- setup -------------------------------------------------------------------------------


def seed_streams(r: redis.Redis, count: int) -> None:
    pipe = r.pipeline(transaction=False)
    for i in range(count):
        key = f"bench:ov:{i:04d}"
        for n in range(5):
            pipe.xadd(key, {"event_type": "task.created", "n": str(n)})
        pipe.xgroup_create(key, GROUP, id="0")
        if i % 10 == 0:
            pipe.xreadgroup(GROUP, "worker-1", {key: ">"}, count=1)
    pipe.execute()


def seed_big(r: redis.Redis, entries: int) -> None:
    for _ in range(entries // 100_000):
        r.eval(FILL, 1, BIG, 100_000)
    r.xgroup_create(BIG, GROUP, id="0")
    r.xreadgroup(GROUP, "worker-1", {BIG: ">"}, count=5000)  # 5,000 pending at the start
    r.xgroup_create(BIG, "late", id="0")




def login(base: str) -> tuple[Any, str]:
    """(an opener that keeps the session's cookies, the session ID)."""
    return http_login(base, USERNAME, PASSWORD)


# --- HTTP load ---------------------------------------------------------------------------


async def get(port: int, path: str, cookie: str) -> tuple[int, bytes]:
    """One GET on a fresh connection (Connection: close), the whole answer read."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    if cookie:
        head += f"Cookie: sessionid={cookie}\r\n"
    writer.write((head + "\r\n").encode())
    answer = await reader.read()
    writer.close()
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    return status, answer


async def load(port: int, path: str, cookie: str, clients: int, requests: int,
               must: bytes) -> tuple[float, list[float]]:
    """clients concurrent clients, `requests` each, one after another: (req/s, latencies)."""
    latencies: list[float] = []

    async def client() -> None:
        for _ in range(requests):
            t0 = time.perf_counter()
            status, body = await get(port, path, cookie)
            latencies.append(time.perf_counter() - t0)
            if status != 200 or must not in body:
                raise RuntimeError(f"{path} answered {status}: {body[:300]!r}")

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return clients * requests / (time.perf_counter() - started), latencies


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


async def sample_threads(pid: int, seen: list[int]) -> None:
    """Daphne runs each request's sync view in a thread of its own (Django opens a
    ThreadSensitiveContext per request): the thread count shows it."""
    while True:
        seen.append(threads_of(pid))
        await asyncio.sleep(0.05)


async def load_and_threads(pid: int, *args: Any) -> tuple[float, list[float], int]:
    seen: list[int] = []
    sampler = asyncio.create_task(sample_threads(pid, seen))
    rate, latencies = await load(*args)
    sampler.cancel()
    return rate, latencies, max(seen, default=0)


def throughput(port: int, pid: int, cookie: str, args: argparse.Namespace) -> list[str]:
    runs: dict[str, list[tuple[float, list[float]]]] = {"overview": [], "login": []}
    cases = {"overview": ("/?sort=lag&desc=1", cookie, b"1000 streams"),
             "login": ("/login/", "", b"csrfmiddlewaretoken")}
    asyncio.run(load(port, "/", cookie, 5, 2, b"streams"))  # warm up both
    asyncio.run(load(port, "/login/", "", 5, 2, b"csrf"))
    threads = 0
    for n in range(args.rounds):
        for name in (("overview", "login") if n % 2 == 0 else ("login", "overview")):
            path, session, must = cases[name]
            rate, lat, most = asyncio.run(load_and_threads(
                pid, port, path, session, args.clients, args.requests, must))
            runs[name].append((rate, lat))
            threads = max(threads, most)
            log(f"  {name}: {rate:.1f} req/s, p50 {statistics.median(lat) * 1000:.0f} ms")
    print(f"\n== 1. Overview of 1,000 streams vs login page, {args.clients} concurrent clients, "
          f"{args.requests} requests each, x{args.rounds} alternating ==")
    rates = {}
    for name, results in runs.items():
        rates[name] = statistics.mean(rate for rate, _ in results)
        lat = sorted(x for _, lats in results for x in lats)
        print(f"  {name:9} {rates[name]:7.1f} req/s   p50 {statistics.median(lat) * 1000:6.0f} ms"
              f"   p99 {lat[int(len(lat) * 0.99) - 1] * 1000:6.0f} ms")
    ratio = rates["overview"] / rates["login"]
    print(f"  ratio overview / login: {ratio:.2f} (target >= 0.5)")
    print(f"  Daphne's threads at most: {threads} (views run concurrently, one thread each)")
    return [] if ratio >= 0.5 else [f"overview / login throughput {ratio:.2f} < 0.5"]


# --- PING latency during previews --------------------------------------------------------


def pinger(url: str, stop: Any, out: Any) -> None:
    """PING every 10 ms on its own connection, in its own process: (sent at, seconds)."""
    r = redis.Redis.from_url(url, socket_timeout=60)  # the unbounded script takes seconds
    samples = []
    while not stop.is_set():
        t0 = time.perf_counter()
        r.ping()
        samples.append((time.time(), time.perf_counter() - t0))
        time.sleep(max(0.0, 0.01 - (time.perf_counter() - t0)))
    out.put(samples)


class Pings:
    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> Pings:
        self.stop, self.queue = multiprocessing.Event(), multiprocessing.Queue()
        self.process = multiprocessing.Process(target=pinger,
                                               args=(self.url, self.stop, self.queue))
        self.process.start()
        time.sleep(0.3)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.1)
        self.stop.set()
        self.samples = [s for _, s in self.queue.get(timeout=30)]
        self.process.join(10)

    def line(self, name: str) -> tuple[str, float]:
        lat = sorted(self.samples)
        worst, p99 = lat[-1] * 1000, lat[int(len(lat) * 0.99) - 1] * 1000
        return (f"  {name:52} PING max {worst:7.1f} ms  p99 {p99:6.1f} ms  "
                f"({len(lat)} pings)"), worst


def timed_get(port: int, path: str, cookie: str, must: str) -> float:
    t0 = time.perf_counter()
    status, body = asyncio.run(get(port, path, cookie))
    if status != 200 or must.encode() not in body:
        raise RuntimeError(f"{path} answered {status}: {body[-600:]!r}")
    return time.perf_counter() - t0


def previews(port: int, cookie: str, url: str, r: redis.Redis) -> list[str]:
    middle = r.xrange(BIG, count=500_000)[-1][0].decode()
    trim = f"/streams/{BIG}/trim/"
    setid = f"/streams/{BIG}/groups/late/set-id/"
    cases = {
        "trim preview MINID (middle of 1,000,000)":
            (f"{trim}?strategy=minid&threshold={middle}", 'id="trim-preview"'),
        "trim preview MAXLEN 500,000": (f"{trim}?strategy=maxlen&threshold=500000",
                                        'id="trim-preview"'),
        "set-ID preview (middle)": (f"{setid}?position={middle}", 'id="setid-preview"'),
    }
    print("\n== 2. PING latency while previews run on a 1,000,000-entry stream ==")
    failures, times = [], {name: [] for name in cases}
    with Longest(r) as longest, Pings(url) as pings:
        time.sleep(2)
    print(pings.line("idle (nothing else asked of Redis), 2 s")[0])
    print(f"    {longest.text()}")
    with Longest(r) as longest, Pings(url) as pings:
        for _ in range(3):
            for name, (path, must) in cases.items():
                times[name].append(timed_get(port, path, cookie, must))
    text, worst = pings.line("during 9 previews (3 of each)")
    print(f"{text}\n    {longest.text()}")
    for name, took in times.items():
        print(f"    {name:48} {statistics.median(took) * 1000:7.0f} ms a request (median)")
    page = asyncio.run(get(port, cases["trim preview MINID (middle of 1,000,000)"][0],
                           cookie))[1].decode()
    shown = re.search(r"<strong>([^<]*)</strong> of (\d+) entries would go", page)
    print(f"    the MINID preview says: {shown.group(1) if shown else '?'} of "
          f"{shown.group(2) if shown else '?'} entries would go")
    if worst > 100:
        failures.append(f"PING max {worst:.0f} ms during previews > 100 ms")
    if longest.ms > 100:
        failures.append(f"a Redis command ran {longest.ms:.0f} ms during previews > 100 ms")
    with Longest(r) as longest, Pings(url) as pings:
        redis.Redis.from_url(url, socket_timeout=60).eval(UNBOUNDED, 1, BIG)
    print(pings.line("before: one unbounded count script (1,000,000)")[0])
    print(f"    {longest.text()}")
    with Longest(r) as longest, Pings(url) as pings:
        trimmed = trim_through_dashboard(port)
    text, worst = pings.line("the trim itself (XTRIM MAXLEN 500,000, override)")
    print(f"{text}\n    {longest.text()}\n    {trimmed}")
    return failures


def trim_through_dashboard(port: int) -> str:
    base = f"http://127.0.0.1:{port}"
    opener, _ = login(base)
    path = f"/streams/{BIG}/trim/?strategy=maxlen&threshold=500000"
    page = opener.open(base + path, timeout=60).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    if token is None:
        raise RuntimeError("no CSRF token on the trim page")
    body = urlencode({"strategy": "maxlen", "threshold": "500000", "override": "1",
                      "confirm": BIG, "csrfmiddlewaretoken": token.group(1)}).encode()
    t0 = time.perf_counter()
    answer = opener.open(Request(base + f"/streams/{BIG}/trim/", data=body,
                                 headers={"Referer": base + path}), timeout=60).read().decode()
    took = (time.perf_counter() - t0) * 1000
    said = re.search(r"Trimmed [\d,]+ entries|Refused[^<]*", answer)
    return f"{said.group(0) if said else 'no Trimmed message'}: POST and redirect {took:.0f} ms"


class Longest:
    """What Redis itself ran meanwhile (SLOWLOG of every command): the longest command, and
    the spread of the scripts' durations. SLOWLOG times the wall clock, so on a busy machine
    a call that waited for a core looks long too; the median shows the work itself."""

    def __init__(self, r: redis.Redis) -> None:
        self.r = r

    def __enter__(self) -> Longest:
        self.r.config_set("slowlog-log-slower-than", 0)
        self.r.config_set("slowlog-max-len", 100_000)
        self.r.slowlog_reset()
        return self

    def __exit__(self, *exc: object) -> None:
        rows = [row for row in self.r.slowlog_get(100_000)
                if not row["command"].startswith((b"SLOWLOG", b"CONFIG"))]
        worst = max(rows, key=lambda row: row["duration"], default=None)
        self.ms = worst["duration"] / 1000 if worst else 0.0
        self.command = worst["command"][:40].decode(errors="replace") if worst else "-"
        self.scripts = sorted(row["duration"] / 1000 for row in rows
                              if row["command"].startswith((b"EVAL", b"EVALSHA")))

    def text(self) -> str:
        line = f"longest Redis command {self.ms:7.1f} ms ({self.command.splitlines()[0]})"
        if self.scripts:
            n = len(self.scripts)
            line += (f"; scripts: {n} calls, median {statistics.median(self.scripts):.1f} ms, "
                     f"p99 {self.scripts[max(0, int(n * 0.99) - 1)]:.1f} ms")
        return line


# --- main --------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=10, help="per client per round (10)")
    parser.add_argument("--rounds", type=int, default=2, help="of each page, alternating (2)")
    args = parser.parse_args()
    started, load_start = time.monotonic(), os.getloadavg()[0]
    server, tmp = RedisServer().start(), Path(tempfile.mkdtemp(prefix="bench-hardening-"))
    env = {**os.environ, "SECRET_KEY": "bench-hardening", "REDIS_URL": server.url,
           "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}", "LOG_LEVEL": "WARNING",
           "DJANGO_SUPERUSER_USERNAME": USERNAME, "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
           "DJANGO_SETTINGS_MODULE": "dashboard.settings"}
    env.pop("DEBUG", None)
    daphne = None
    try:
        r = redis.Redis.from_url(server.url)
        log(f"seeding (redis-server on {server.port})")
        seed_streams(r, 1000)
        for command in (("migrate", "--noinput"), ("ensure_login",)):
            subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env,
                           check=True, capture_output=True, timeout=120)
        daphne, port = start_daphne(env, tmp / "daphne.log")
        _, cookie = login(f"http://127.0.0.1:{port}")
        failures = throughput(port, daphne.pid, cookie, args)
        log("seeding 1,000,000 entries")
        seed_big(r, 1_000_000)
        failures += previews(port, cookie, server.url, r)
    finally:
        if daphne is not None:
            daphne.terminate()
            daphne.wait(15)
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nTotal {time.monotonic() - started:.0f} s. Load average (1 min) at the start "
          f"{load_start:.1f}, at the end {os.getloadavg()[0]:.1f}, on {os.cpu_count()} cores.")
    for failure in failures:
        print("MISSED:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
