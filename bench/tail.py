"""Live tail under load: real Daphne, real websocket clients, runs side by side in one go.

A publisher process XADDs envelope-shaped events at a fixed rate (pipelined batches every
10 ms) into one stream; a client process holds N websocket viewers of `/ws/tail/` on one
Daphne process (started fresh for each run, so each is measured alone). Runs:

    50 viewers | 1 viewer | then --pairs times: 49 viewers, and 49 viewers + 1 stalled
    (connects, never reads/acks), alternating which goes first (ABBA...)

The stalled-client target compares two p99s that each vary by about +-30% from run to run
(2 cores shared by Daphne, the clients, the publisher and Redis), so one run of each cannot
tell a 20% effect from noise. The pairs run back to back, their order alternates so that a
drift in the machine's speed favours neither, and the verdict is on the median of the pairs'
ratios.

Per run it reports:

- XADD-to-frame latency: each entry carries `published_at` = time.time() taken just before
  its pipeline is sent; a viewer notes time.time() when the frame holding it arrives.
  Entries a viewer never got (dropped as "skipped", or not there `--drain` seconds after the
  publisher stopped) count as infinitely late ("never"). Entries of the first `--warmup`
  seconds are left out of the percentiles.
- Redis work: `INFO commandstats` deltas (XREAD calls; other commands but the publisher's
  XADDs) over the publishing window.
- Daphne's RSS (/proc/<pid>/status, every second): after warm-up vs end of publishing.
- CPU of each process (daphne, clients, publisher, redis-server, everything else on the
  host) over the publishing window, and the client process's event-loop lag, to show
  whether the clients (or a neighbour) rather than Daphne were the bottleneck.
- Whether the stream's reader stops once every viewer has left (XREADs in the 2 s after).
- Before the runs, the CPU cost per row of rendering it (once) and of sending it to one viewer,
  measured alone: the ceiling one Daphne process can reach, whatever the sockets do.

Needs `websockets` (the client library) on top of requirements.txt.

    .venv/bin/python bench/tail.py                       # issue's figures: 2,000/s, 20 s, 50
    .venv/bin/python bench/tail.py --seconds 5 --viewers 10 --pairs 1  # quick check
    .venv/bin/python bench/tail.py --runs fewer,stalled --py-spy /tmp/spy  # where CPU goes

Timings are noisy (2 cores shared by everything): ratios are printed against the targets,
never asserted. Exit status 1 only for wrong deliveries (duplicates, out of order, entries
neither delivered nor reported skipped) or a run that could not be set up.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.dashboard_client import http_login  # noqa: E402

USERNAME, PASSWORD = "bench", "bench-tail-password"
TICK = 0.010  # publisher batch interval
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Parsing the server's frames without json.loads (50 viewers x ~1 MB/s each would make the
# client process the bottleneck). The server writes json.dumps' default separators.
HEAD_RE = re.compile(rb'^\{"type": "(\w+)"(?:, "seq": (\d+))?(?:, "count": (\d+))?')
TAIL_RE = re.compile(rb'"last_id": "(\d+-\d+)", "read": (\d+)\}$')
ID_RE = re.compile(rb'data-id=\\"(\d+)-(\d+)\\"')
# published_at's value: the only <span class="mono"> holding a number (fast: literal prefix)
PUB_RE = re.compile(rb'mono\\">(\d{10}\.\d{6})<')


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- publisher process ---------------------------------------------------------------------


def publisher(cfg: dict[str, Any]) -> None:
    """XADD at cfg["rate"]/s for cfg["seconds"]: every 10 ms, one pipeline of what is due."""
    import redis

    r = redis.Redis.from_url(cfg["redis_url"])
    key, rate, seconds = cfg["key"], cfg["rate"], cfg["seconds"]
    total = int(rate * seconds)
    sent = batches = late = max_batch = after_warmup = 0
    last_id = ""
    start_wall = time.time()
    warm_until = start_wall + cfg["warmup"]
    print(json.dumps({"start": start_wall, "warm_until": warm_until}), flush=True)
    cpu0 = time.process_time()
    start = next_tick = time.monotonic()
    while sent < total:
        elapsed = time.monotonic() - start
        due = min(total, int(rate * elapsed)) - sent
        if elapsed >= seconds:
            due = total - sent  # the last tick's share: exactly rate * seconds in all
        if due > 0:
            pipe = r.pipeline(transaction=False)
            stamp = time.time()  # taken just before the pipeline goes out
            published = f"{stamp:.6f}"
            timestamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(stamp))
            for n in range(sent, sent + due):
                pipe.xadd(key, {
                    "event_id": str(uuid.uuid4()), "event_type": "bench.tick",
                    "timestamp": timestamp,
                    "data": json.dumps({"n": n, "source": "bench/tail.py"}),
                    "published_at": published,
                })
            last_id = pipe.execute()[-1].decode()
            sent += due
            batches += 1
            max_batch = max(max_batch, due)
            if stamp >= warm_until:
                after_warmup += due
        next_tick += TICK
        pause = next_tick - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        else:
            late += 1
            next_tick = time.monotonic()
    print(json.dumps({"sent": sent, "after_warmup": after_warmup, "last_id": last_id,
                      "duration": time.monotonic() - start, "batches": batches,
                      "max_batch": max_batch, "late_ticks": late,
                      "cpu": time.process_time() - cpu0}), flush=True)


# --- client process ------------------------------------------------------------------------


def id_tuple(text: bytes | str) -> tuple[int, int]:
    if isinstance(text, bytes):
        text = text.decode()
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


@dataclass
class ViewerStats:
    pub: array.array = field(default_factory=lambda: array.array("d"))
    lat: array.array = field(default_factory=lambda: array.array("d"))
    arrivals: list[tuple[float, int]] = field(default_factory=list)  # (time, entries)
    frames: int = 0
    entries: int = 0
    skipped: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    last: tuple[int, int] = (0, 0)
    last_id: tuple[int, int] = (0, 0)  # frames' last_id
    bytes: int = 0
    closed: str = ""
    done: bool = False  # has the publisher's last entry (or gave up: socket closed)


async def clients(cfg: dict[str, Any]) -> None:
    """N normal viewers (ack each frame at once, like tail.js) and S stalled ones."""
    from websockets.asyncio.client import connect

    headers = {"Cookie": f"sessionid={cfg['session']}"}
    kwargs = dict(origin=cfg["origin"], additional_headers=headers, compression=None,
                  max_size=None, ping_interval=None, open_timeout=60, close_timeout=2)
    target: tuple[int, int] = (2**63, 0)
    caught_up = asyncio.Event()
    normal = [ViewerStats() for _ in range(cfg["normal"])]

    def mark_done(st: ViewerStats) -> None:
        st.done = True
        if all(v.done for v in normal):
            caught_up.set()

    async def run_normal(ws: Any, st: ViewerStats) -> None:
        try:
            while True:
                data = await ws.recv(decode=False)
                now = time.time()
                st.bytes += len(data)
                head = HEAD_RE.match(data)
                kind = head.group(1) if head else json.loads(data)["type"].encode()
                if kind == b"entries":
                    seq = int(head.group(2)) if head else json.loads(data)["seq"]
                    await ws.send(f'{{"ack": {seq}}}')
                    st.frames += 1
                    ids = ID_RE.findall(data)
                    pubs = PUB_RE.findall(data)
                    if len(pubs) != len(ids):
                        raise RuntimeError(f"{len(ids)} rows but {len(pubs)} published_at")
                    for ms, sq in ids:
                        entry = (int(ms), int(sq))
                        if entry == st.last:
                            st.duplicates += 1
                        elif entry < st.last:
                            st.out_of_order += 1
                        st.last = max(st.last, entry)
                    st.entries += len(ids)
                    st.arrivals.append((now, len(ids)))
                    for p in pubs:
                        t = float(p)
                        st.pub.append(t)
                        st.lat.append(now - t)
                    tail = TAIL_RE.search(data, len(data) - 80)
                    if tail:
                        st.last_id = max(st.last_id, id_tuple(tail.group(1)))
                elif kind == b"skipped":
                    st.skipped += int(head.group(3)) if head else json.loads(data)["count"]
                elif kind == b"error":
                    st.closed = data.decode()[:200]
                    return
                if not st.done and st.last_id >= target:
                    mark_done(st)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a closed socket ends this viewer; say how
            st.closed = f"{type(exc).__name__}: {exc}"[:200]
            mark_done(st)

    async def loop_lag(samples: list[float]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.1)
            samples.append(loop.time() - before - 0.1)

    sockets = await asyncio.gather(*(connect(cfg["url"], **kwargs)
                                     for _ in range(cfg["normal"])))
    stalled = [await connect(cfg["url"], max_queue=1, **kwargs)
               for _ in range(cfg["stalled"])]
    tasks = [asyncio.create_task(run_normal(ws, st))
             for ws, st in zip(sockets, normal, strict=True)]
    lags: list[float] = []
    lag_task = asyncio.create_task(loop_lag(lags))
    print("READY", flush=True)

    # Wait for the orchestrator: the publisher's last ID, and the deadline to wait for it.
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    line = await reader.readline()
    order = json.loads(line)
    lags_publishing = list(lags)
    target = id_tuple(order["last_id"])
    for st in normal:  # viewers that already have it
        if not st.done and st.last_id >= target:
            mark_done(st)
    if not normal:
        caught_up.set()
    drain_started = time.monotonic()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(caught_up.wait(), order["drain"])
    drain_seconds = time.monotonic() - drain_started
    lag_task.cancel()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)

    # The stalled viewers now read what the server kept for them: the frames in flight,
    # then the skipped marker for what its bounded queue dropped, then the rest.
    stalled_stats = []
    for ws in stalled:
        st = ViewerStats()
        try:
            while True:
                data = await asyncio.wait_for(ws.recv(decode=False), 5)
                st.bytes += len(data)
                msg = json.loads(data)
                if msg["type"] == "entries":
                    await ws.send(json.dumps({"ack": msg["seq"]}))
                    st.frames += 1
                    st.entries += len(msg["rows"])
                elif msg["type"] == "skipped":
                    st.skipped += msg["count"]
        except (TimeoutError, Exception) as exc:
            if not isinstance(exc, TimeoutError):
                st.closed = f"{type(exc).__name__}: {exc}"[:200]
        stalled_stats.append({"frames_after_wake": st.frames, "entries_after_wake": st.entries,
                              "skipped": st.skipped, "closed": st.closed, "bytes": st.bytes})
    await asyncio.gather(*(ws.close() for ws in stalled), return_exceptions=True)

    warm_until = order["warm_until"]
    lat_ms: list[float] = []
    per_viewer_p99: list[float] = []
    expected = order["after_warmup"]
    result_viewers = []
    for st in normal:
        mine = [lat * 1000 for pub, lat in zip(st.pub, st.lat, strict=True) if pub >= warm_until]
        missing = max(0, expected - len(mine))
        mine.sort()
        per_viewer_p99.append(percentile(mine, 0.99, missing))
        lat_ms += mine
        result_viewers.append({
            "frames": st.frames, "entries": st.entries, "after_warmup": len(mine),
            "skipped": st.skipped, "duplicates": st.duplicates,
            "out_of_order": st.out_of_order, "bytes": st.bytes, "closed": st.closed,
            "caught_up": st.last_id >= target,
        })
    lat_ms.sort()
    missing_total = expected * len(normal) - len(lat_ms)
    lags_ms = sorted(x * 1000 for x in lags_publishing) or [0.0]
    bins: dict[int, int] = {}  # entries received by all normal viewers, by 0.1 s
    for st in normal:
        for when, n in st.arrivals:
            tenth = int((when - order["start"]) * 10)
            bins[tenth] = bins.get(tenth, 0) + n
    print(json.dumps({
        "p50": percentile(lat_ms, 0.50, missing_total),
        "p99": percentile(lat_ms, 0.99, missing_total),
        "max": lat_ms[-1] if lat_ms else None,
        "received_after_warmup": len(lat_ms), "missing_after_warmup": missing_total,
        "per_viewer_p99_median": statistics.median(per_viewer_p99) if per_viewer_p99 else None,
        "per_viewer_p99_max": max(per_viewer_p99) if per_viewer_p99 else None,
        "viewers": result_viewers, "stalled": stalled_stats,
        "drain_seconds": drain_seconds,
        "loop_lag_p99_ms": lags_ms[int(0.99 * (len(lags_ms) - 1))],
        "loop_lag_max_ms": lags_ms[-1],
        "received_by_tenth": [bins.get(i, 0) for i in range(max(bins, default=-1) + 1)],
    }), flush=True)


def percentile(sorted_values: list[float], q: float, missing: int = 0) -> float:
    """q-quantile of values plus `missing` infinitely late ones (inf when they reach it)."""
    n = len(sorted_values) + missing
    if n == 0:
        return float("nan")
    rank = int(q * (n - 1))
    return sorted_values[rank] if rank < len(sorted_values) else float("inf")


# --- orchestrator --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def host_cpu() -> tuple[float, float, float]:
    """Seconds of CPU time, all cores: (busy, steal, total) since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq
    return busy / CLK_TCK, steal / CLK_TCK, (busy + idle + iowait + steal) / CLK_TCK


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def commandstats(r: Any) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(stats["calls"])
            for name, stats in r.info("commandstats").items()}


class Sampler(threading.Thread):
    """Every second: Daphne's RSS and CPU seconds, and Redis's XREAD calls so far."""

    def __init__(self, pid: int, redis_url: str) -> None:
        import redis

        super().__init__(daemon=True)
        self.pid = pid
        self.r = redis.Redis.from_url(redis_url)
        self.samples: list[tuple[float, float]] = []
        self.timeline: list[tuple[float, float, int]] = []  # (time, cpu seconds, XREADs)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            now = time.time()
            self.samples.append((now, rss_mb(self.pid)))
            self.timeline.append((now, cpu_seconds(self.pid),
                                  commandstats(self.r).get("xread", 0)))
            self.stopped.wait(1.0)
        self.r.close()

    def at(self, when: float) -> float:
        """The sample nearest to `when`."""
        return min(self.samples, key=lambda s: abs(s[0] - when))[1]

    def slope(self, start: float, end: float) -> float:
        """MB per second, least squares over samples between start and end."""
        points = [(t, m) for t, m in self.samples if start <= t <= end]
        if len(points) < 3:
            return float("nan")
        return statistics.linear_regression([t for t, _ in points],
                                            [m for _, m in points]).slope


@dataclass
class Run:
    role: str  # "all", "one", "fewer", "stalled": what the target lines compare
    name: str
    normal: int
    stalled: int
    pair: int = 0  # fewer/stalled runs: which pair (1, 2, ...)
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:  # unique per run: file names
        return f"{self.role}-{self.pair}" if self.pair else self.role


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        import redis

        from tests.redis_server import RedisServer

        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-tail-"))
        self.redis_server = RedisServer().start()
        self.r = redis.Redis.from_url(self.redis_server.url)
        self.env = {**os.environ, "SECRET_KEY": "bench-tail", "REDIS_URL": self.redis_server.url,
                    "DATABASE_URL": f"sqlite:///{self.tmp / 'db.sqlite3'}",
                    "DJANGO_SUPERUSER_USERNAME": USERNAME,
                    "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
                    "DJANGO_SETTINGS_MODULE": "dashboard.settings", "LOG_LEVEL": "WARNING"}
        self.env.pop("DEBUG", None)
        self.session = ""
        self.errors: list[str] = []

    def close(self) -> None:
        self.redis_server.stop()
        shutil.rmtree(self.redis_server.dir, ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def manage(self, *args: str) -> None:
        subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env,
                       check=True, capture_output=True, timeout=120)

    def render_cost(self) -> tuple[float, float]:
        """ms of CPU per row: to render it and encode it as JSON (once per entry,
        streams_admin.consumers.encoded_row), and to put it in one viewer's message (the
        message text around the frame's rows, joined once per frame, then UTF-8 as Daphne does;
        once per entry and viewer)."""
        code = (
            "import django, json, time, uuid; django.setup()\n"
            "from streams_admin.consumers import encoded_row\n"
            "from streams_admin.tail import Frame\n"
            "from streams_admin.values import parse_entry\n"
            "def item(i):\n"
            "    return [f'{1764000000000 + i}-0'.encode(),"
            " [b'event_id', str(uuid.uuid4()).encode(),"
            " b'event_type', b'bench.tick', b'timestamp', b'2026-11-28T10:00:00+00:00',"
            " b'data', json.dumps({'n': i, 'source': 'bench/tail.py'}).encode(),"
            " b'published_at', f'{time.time():.6f}'.encode()]]\n"
            "items = [item(i) for i in range(2000)]\n"
            "encoded_row(b'bench:tail', parse_entry(items[0]))\n"
            "t = time.perf_counter()\n"
            "rows = [encoded_row(b'bench:tail', parse_entry(it)) for it in items]\n"
            "render = (time.perf_counter() - t) / len(items) * 1000\n"
            "entries = [parse_entry(it) for it in items]\n"
            "frames = [Frame.of(tuple(entries[i:i + 100]), tuple(rows[i:i + 100]), '1-0', 100)"
            " for i in range(0, len(rows), 100)]\n"
            "t = time.perf_counter()\n"
            "for seq, frame in enumerate(frames):\n"
            "    (f'{{\"type\": \"entries\", \"seq\": {seq}, \"rows\": [{frame.joined}], '"
            " f'\"last_id\": \"1-0\", \"read\": 100}}').encode()\n"
            "print(render, (time.perf_counter() - t) / len(items) * 1000)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=self.env, check=True,
                             capture_output=True, text=True, timeout=120)
        render, send = map(float, out.stdout.split())
        return render, send

    def start_daphne(self, name: str) -> tuple[subprocess.Popen[bytes], int, Path]:
        port = free_port()
        logfile = self.tmp / f"daphne-{name}.log"
        profile = []
        if self.args.profile:
            logfile = Path(self.args.profile) / f"daphne-{name}.log"
            profile = [sys.executable, "-m", "cProfile", "-o",
                       str(Path(self.args.profile) / f"daphne-{name}.prof")]
        with logfile.open("wb") as out:
            process = subprocess.Popen(
                [*profile, str(Path(sys.executable).parent / "daphne"), "-v", "0",
                 "-b", "127.0.0.1", "-p", str(port), "dashboard.asgi:application"],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"daphne exited: {logfile.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"daphne did not answer: {logfile.read_text()}") from None
                time.sleep(0.05)
        return process, port, logfile

    def login(self, port: int) -> str:
        return http_login(f"http://127.0.0.1:{port}", USERNAME, PASSWORD)[1]

    def run(self, run: Run) -> None:
        args = self.args
        key = f"bench:tail:{run.role}"
        self.r.delete(key)
        self.r.xadd(key, {"seed": "an entry before the viewers come"})
        daphne, port, logfile = self.start_daphne(run.label)
        sampler = Sampler(daphne.pid, self.redis_server.url)
        sampler.start()
        procs: list[subprocess.Popen[str]] = []
        try:
            if not self.session:
                self.session = self.login(port)
            cfg = {"url": f"ws://127.0.0.1:{port}/ws/tail/?key={quote(key, safe='')}",
                   "origin": f"http://127.0.0.1:{port}", "session": self.session,
                   "normal": run.normal, "stalled": run.stalled}
            profile = []
            if args.profile:
                profile = ["-m", "cProfile", "-o",
                           str(Path(args.profile) / f"clients-{run.label}.prof")]
            viewers = subprocess.Popen([sys.executable, *profile, __file__, "_clients",
                                        json.dumps(cfg)],
                                       cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       text=True)
            procs.append(viewers)
            ready = viewers.stdout.readline().strip()
            if ready != "READY":
                raise RuntimeError(f"clients did not connect: {ready!r}")
            time.sleep(1.0)  # every consumer joins the hub (its reader starts at the seed)
            idle_rss = rss_mb(daphne.pid)
            before = commandstats(self.r)
            pids = {"daphne": daphne.pid, "clients": viewers.pid,
                    "redis": self.redis_server.process.pid}
            cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
            host0 = host_cpu()
            pub_cfg = {"redis_url": self.redis_server.url, "key": key, "rate": args.rate,
                       "seconds": args.seconds, "warmup": args.warmup}
            pub = subprocess.Popen([sys.executable, __file__, "_publisher", json.dumps(pub_cfg)],
                                   cwd=ROOT, stdout=subprocess.PIPE, text=True)
            procs.append(pub)
            t0 = time.monotonic()
            started = json.loads(pub.stdout.readline())
            if args.py_spy:  # sample Daphne while the publisher runs
                spy = subprocess.Popen(
                    [str(Path(sys.executable).parent / "py-spy"), "record", "--nonblocking",
                     "--format", "raw", "-p", str(daphne.pid), "-d", str(int(args.seconds)),
                     "-o", str(Path(args.py_spy) / f"daphne-{run.label}.txt")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                procs.append(spy)
            published = json.loads(pub.stdout.readline())
            window = time.monotonic() - t0
            cpu = {name: (cpu_seconds(pid) - cpu0[name]) / window
                   for name, pid in pids.items()}
            cpu["publisher"] = published["cpu"] / published["duration"]
            host1 = host_cpu()
            cpu["host"] = (host1[0] - host0[0]) / window  # in cores
            cpu["steal"] = (host1[1] - host0[1]) / max(0.001, host1[2] - host0[2])
            cpu["others"] = cpu["host"] - sum(cpu[k] for k in pids) - cpu["publisher"]
            pub.wait(30)
            if args.py_spy:
                spy.wait(30)
            after = commandstats(self.r)
            end_wall = time.time()
            end_rss = rss_mb(daphne.pid)
            viewers.stdin.write(json.dumps({
                "last_id": published["last_id"], "drain": args.drain,
                "warm_until": started["warm_until"], "start": started["start"],
                "after_warmup": published["after_warmup"]}) + "\n")
            viewers.stdin.flush()
            out = viewers.stdout.readline()
            viewers.wait(60)
            if not out:
                raise RuntimeError("the client process gave no result")
            result = json.loads(out)
            drained_rss = rss_mb(daphne.pid)
            whole = commandstats(self.r)
            # Every viewer has gone: the stream's reader should have stopped with the last.
            time.sleep(1.0)
            left0 = commandstats(self.r).get("xread", 0)
            time.sleep(2.0)
            left_xread = commandstats(self.r).get("xread", 0) - left0
            left_blocked = sum(1 for c in self.r.client_list() if c.get("cmd") == "xread")
        finally:
            sampler.stopped.set()
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
            daphne.terminate()
            try:
                daphne.wait(15)
            except subprocess.TimeoutExpired:
                daphne.kill()
                daphne.wait(5)
            self.r.delete(key)
        delta = {name: after.get(name, 0) - before.get(name, 0) for name in after}
        problems = log_problems(logfile.read_text(errors="replace"))
        warm_wall = started["warm_until"]
        result.update(
            published=published, cpu=cpu, idle_rss=idle_rss,
            warm_rss=sampler.at(warm_wall), end_rss=end_rss, drained_rss=drained_rss,
            max_rss=max(m for _, m in sampler.samples),
            rss_slope=sampler.slope(warm_wall, end_wall),
            xread=delta.get("xread", 0), xadd=delta.get("xadd", 0),
            xread_whole=whole.get("xread", 0) - before.get("xread", 0) - 0,
            timeline=[(round(t - started["start"], 1), round(c, 2), x)
                      for t, c, x in sampler.timeline],
            other_commands={k: v for k, v in delta.items()
                            if v and k not in {"xread", "xadd", "info", "hello"}},
            daphne_log=problems[:10], window=window,
            left_xread=left_xread, left_blocked=left_blocked,
        )
        run.result = result
        self.check(run)

    def check(self, run: Run) -> None:
        res = run.result
        sent = res["published"]["sent"]
        for i, v in enumerate(res["viewers"]):
            where = f"{run.name}, viewer {i}"
            if v["duplicates"] or v["out_of_order"]:
                self.errors.append(f"{where}: {v['duplicates']} duplicates, "
                                   f"{v['out_of_order']} out of order")
            if v["caught_up"] and v["entries"] + v["skipped"] != sent:
                self.errors.append(f"{where}: {v['entries']} received + {v['skipped']} "
                                   f"skipped != {sent} published")
            if v["closed"]:
                self.errors.append(f"{where}: socket ended: {v['closed']}")


def log_problems(text: str) -> list[str]:
    """Daphne's tracebacks and error lines, each distinct one once, with its count."""
    seen: dict[str, int] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("Traceback"):
            block = [line]
            i += 1
            while i < len(lines) and (lines[i].startswith((" ", "\t")) or not block[-1:]
                                      or lines[i].startswith(("During handling", "The above"))
                                      or lines[i] == ""):
                block.append(lines[i])
                i += 1
            if i < len(lines):
                block.append(lines[i])  # the exception itself
                i += 1
            # The exception and the app's own frames, innermost last, on one line.
            frames = [f"{m[1]}:{m[2]} {m[3]}" for m in
                      (re.search(r'File ".*/(streams_admin/[^"]+)", line (\d+), in (\S+)', b)
                       for b in block) if m]
            summary = f"{block[-1]} (in {' > '.join(frames) or 'library code'})"
            seen[summary] = seen.get(summary, 0) + 1
            continue
        if "destroyed but it is pending" in line and i + 1 < len(lines):
            task = re.sub(r"Task-\d+", "Task-N", lines[i + 1])
            line = f"{line} {task}"
            i += 1
        if any(word in line for word in ("ERROR", "Error", "WARNING", "destroyed")):
            seen[line] = seen.get(line, 0) + 1
        i += 1
    return [f"({count}x) {block}" for block, count in seen.items()]


def fmt_ms(value: float | None) -> str:
    if value is None or value != value:
        return "-"
    return "never" if value == float("inf") else f"{value:,.0f}"


def got_per_second(res: dict[str, Any], seconds: float) -> float:
    """Entries one (average) viewer received per second while the publisher ran."""
    tenths = round(seconds * 10)
    return sum(res["received_by_tenth"][:tenths]) / max(1, len(res["viewers"])) / seconds


def ratio(a: float, b: float) -> float:
    if not b or b != b or a != a:
        return float("nan")
    if a == float("inf") or b == float("inf"):
        return float("inf") if a != b else float("nan")
    return a / b


def stalled_pairs(runs: list[Run]) -> list[tuple[Run, Run]]:
    """(without, with the stalled viewer) for each pair that ran both."""
    fewer = {run.pair: run for run in runs if run.role == "fewer"}
    return [(fewer[run.pair], run) for run in runs
            if run.role == "stalled" and run.pair in fewer]


def median_ratio(pairs: list[tuple[float, float]]) -> float:
    return statistics.median(ratio(a, b) for a, b in pairs) if pairs else float("nan")


def report(bench: Bench, runs: list[Run], costs: tuple[float, float], total: float) -> None:
    args = bench.args
    print()
    print(f"Live tail: {args.rate:,}/s for {args.seconds:g} s (warm-up {args.warmup:g} s "
          f"left out), one Daphne process per run, {os.cpu_count()} cores; "
          f"drain ≤ {args.drain:g} s")
    render_ms, send_ms = costs
    print(f"CPU per row, measured alone before the runs: render + JSON {render_ms:.3f} ms (once "
          f"per entry), message + UTF-8 {send_ms:.4f} ms (once per entry and viewer).")
    for viewers in sorted({run.normal + run.stalled for run in runs}):
        per_row = render_ms + viewers * send_ms
        print(f"  {viewers:>3} viewers: {per_row:.3f} ms/row = at most {1000 / per_row:,.0f} "
              f"entries/s for one Daphne process on a whole core (no sockets counted)")
    print()
    header = ("run", "sent/s", "got/s", "p50 ms", "p99 ms", "max ms", "missing", "skipped",
              "XREAD", "ent/XREAD", "RSS warm", "RSS end", "MB/s", "CPU daphne",
              "clients", "pub", "redis", "others", "steal", "loop lag")
    rows = []
    for run in runs:
        res = run.result
        pub = res["published"]
        per_viewer = sum(v["entries"] for v in res["viewers"]) / max(1, run.normal)
        got = got_per_second(res, args.seconds)
        rows.append((
            run.name, f"{pub['sent'] / pub['duration']:,.0f}", f"{got:,.0f}",
            fmt_ms(res["p50"]), fmt_ms(res["p99"]), fmt_ms(res["max"]),
            f"{res['missing_after_warmup'] / max(1, pub['after_warmup'] * run.normal):.1%}",
            f"{sum(v['skipped'] for v in res['viewers']):,}",
            f"{res['xread']:,}", f"{per_viewer / max(1, res['xread_whole']):.0f}",
            f"{res['warm_rss']:.0f}", f"{res['end_rss']:.0f}", f"{res['rss_slope']:+.2f}",
            f"{res['cpu']['daphne']:.0%}", f"{res['cpu']['clients']:.0%}",
            f"{res['cpu']['publisher']:.0%}", f"{res['cpu']['redis']:.0%}",
            f"{res['cpu']['others']:.0%}", f"{res['cpu']['steal']:.0%}",
            f"{res['loop_lag_p99_ms']:.0f}",
        ))
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    print()
    for line in (
        "got/s: entries one viewer received per second while the publisher ran.",
        "p50/p99/max: XADD to frame, entries after warm-up; missing ones count as never.",
        "missing: entries after warm-up a viewer never got (skipped, or not there "
        f"{args.drain:g} s after the publisher stopped).",
        "XREAD: calls while the publisher ran; ent/XREAD: entries one viewer received / "
        "XREAD calls, publishing and drain.",
        "RSS in MB, Daphne's; MB/s: its slope after warm-up.",
        "CPU: share of one core over the publishing window; others: every other process "
        "on the host (this script included); steal: share of the host's time the "
        "hypervisor took.",
        "loop lag: p99 ms of the client process's event-loop delay (high = the clients, "
        "not Daphne, were late).",
    ):
        print(f"  {line}")
    by = {run.role: run.result for run in runs}  # all, one: the only run of each
    names = {run.role: run.name for run in runs}
    print()
    print("Against the targets:")
    lines = []
    if "all" in by:
        p99 = by["all"]["p99"]
        lines.append((f"XADD-to-frame p99, {names['all']} ≤ 250 ms", f"{fmt_ms(p99)} ms",
                      f"{ratio(p99, 250):.2f}x target", p99 <= 250))
    if "all" in by and "one" in by:
        x = ratio(by["all"]["xread"], by["one"]["xread"])
        lines.append((f"XREAD calls, {names['all']} / {names['one']} ≤ 1.2",
                      f"{by['all']['xread']:,} / {by['one']['xread']:,}", f"{x:.2f}", x <= 1.2))
    for run in runs:
        res = run.result
        growth = res["end_rss"] - res["warm_rss"]
        flat = growth <= 0.1 * res["warm_rss"]
        lines.append((f"RSS flat after warm-up, {run.name} (growth ≤ 10%)",
                      f"{res['warm_rss']:.0f} → {res['end_rss']:.0f} MB",
                      f"{ratio(res['end_rss'], res['warm_rss']):.2f}", flat))
    left = [run for run in runs if run.result["left_xread"]]
    lines.append(("(extra) the reader stops once every viewer has left",
                  f"still reading in {len(left)} of {len(runs)} runs", "", not left))
    pairs = stalled_pairs(runs)
    if pairs:
        for i, (without, stalled) in enumerate(pairs, 1):
            a, b = stalled.result["p99"], without.result["p99"]
            lines.append((f"  pair {i}: p99 with 1 stalled / without",
                          f"{fmt_ms(a)} / {fmt_ms(b)} ms", f"{ratio(a, b):.2f}", None))
        x = median_ratio([(s.result["p99"], w.result["p99"]) for w, s in pairs])
        verdict: bool | None = x <= 1.2
        if x != x:
            verdict = None  # runs lost entries: p99 cannot tell them apart
        n = without.normal
        lines.append((f"p99, {n} viewers + 1 stalled / {n} viewers ≤ 1.2 (median of "
                      f"{len(pairs)} pairs)", "", f"{x:.2f}", verdict))
        g = median_ratio([(got_per_second(s.result, args.seconds),
                           got_per_second(w.result, args.seconds)) for w, s in pairs])
        lines.append(("  (information) got/s per viewer, with stalled / without (median)",
                      "", f"{g:.2f}", None))
        c = median_ratio([(s.result["cpu"]["daphne"], w.result["cpu"]["daphne"])
                          for w, s in pairs])
        lines.append(("  (information) Daphne CPU, with stalled / without (median)",
                      "", f"{c:.2f}", None))
    w0 = max(len(line[0]) for line in lines)
    w1 = max(len(line[1]) for line in lines)
    for what, figures, rel, ok in lines:
        verdict = "n/a" if ok is None else "PASS" if ok else "FAIL"
        print(f"  {what.ljust(w0)}  {figures.rjust(w1)}  {rel:>16}  {verdict}")
    print()
    for run in runs:
        res = run.result
        pub = res["published"]
        print(f"{run.name}: published {pub['sent']:,} in {pub['duration']:.2f} s "
              f"({pub['batches']} batches, largest {pub['max_batch']}, "
              f"{pub['late_ticks']} late ticks); XADD calls {res['xadd']:,}; other commands "
              f"{res['other_commands'] or '-'}; RSS idle {res['idle_rss']:.0f}, max "
              f"{res['max_rss']:.0f}, after drain {res['drained_rss']:.0f} MB; drain "
              f"{res['drain_seconds']:.1f} s; per-viewer p99 median "
              f"{fmt_ms(res['per_viewer_p99_median'])}, max {fmt_ms(res['per_viewer_p99_max'])} "
              f"ms; client loop lag max {res['loop_lag_max_ms']:.0f} ms; after every viewer "
              f"left: {res['left_xread']} XREAD in 2 s, {res['left_blocked']} connection(s) in "
              f"XREAD")
        for stalled in res["stalled"]:
            print(f"  stalled viewer, once it read: {stalled['frames_after_wake']} frames "
                  f"({stalled['entries_after_wake']:,} entries), skipped marker "
                  f"{stalled['skipped']:,} entries, {stalled['bytes'] / 1e6:.1f} MB")
        if args.timeline:
            print("      s  XREAD/s  daphne CPU  received/s by one viewer")
            received = res["received_by_tenth"]
            for (t, cpu, xread), (t1, cpu1, xread1) in zip(res["timeline"], res["timeline"][1:],
                                                         strict=False):
                if t1 < 0:
                    continue
                got = sum(received[max(0, round(t * 10)):max(0, round(t1 * 10))])
                print(f"  {t1:>5.1f}  {(xread1 - xread) / (t1 - t):>7.1f}  "
                      f"{(cpu1 - cpu) / (t1 - t):>10.0%}  {got / run.normal / (t1 - t):>8,.0f}")
        if res["daphne_log"]:
            print("  Daphne's log:", *res["daphne_log"], sep="\n    ")
    if bench.errors:
        print("\nDelivery errors:", *bench.errors, sep="\n  ")
    print(f"\nTotal {total:.0f} s.")


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "_publisher":
        publisher(json.loads(sys.argv[2]))
        return 0
    if len(sys.argv) > 2 and sys.argv[1] == "_clients":
        asyncio.run(clients(json.loads(sys.argv[2])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=2000, help="events/s (2000)")
    parser.add_argument("--seconds", type=float, default=20, help="publishing time (20)")
    parser.add_argument("--viewers", type=int, default=50, help="viewers of the big run (50)")
    parser.add_argument("--warmup", type=float, default=3,
                        help="first seconds left out of latency and memory figures (3)")
    parser.add_argument("--drain", type=float, default=10,
                        help="seconds to wait for the last entry after publishing (10)")
    parser.add_argument("--runs", default="all,one,fewer,stalled",
                        help="which runs, comma-separated (all,one,fewer,stalled)")
    parser.add_argument("--pairs", type=int, default=3,
                        help="how many times to run fewer and stalled, alternating (3)")
    parser.add_argument("--py-spy", metavar="DIR",
                        help="record Daphne with py-spy (raw stacks) while publishing, in DIR")
    parser.add_argument("--timeline", action="store_true",
                        help="print XREADs, Daphne CPU and entries received second by second")
    parser.add_argument("--profile", metavar="DIR",
                        help="run Daphne and the clients under cProfile, and keep Daphne's "
                             "logs, in DIR")
    args = parser.parse_args()
    if args.py_spy:
        if not (Path(sys.executable).parent / "py-spy").exists():
            parser.error("--py-spy needs py-spy in the venv: .venv/bin/pip install py-spy")
        Path(args.py_spy).mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    n = args.viewers
    runs = [Run("all", f"{n} viewers", n, 0), Run("one", "1 viewer", 1, 0)]
    for pair in range(1, args.pairs + 1):
        two = [Run("fewer", f"{n - 1} viewers #{pair}", n - 1, 0, pair),
               Run("stalled", f"{n - 1} viewers + 1 stalled #{pair}", n - 1, 1, pair)]
        runs += two if pair % 2 else two[::-1]
    wanted = args.runs.split(",")
    runs = [run for run in runs if run.role in wanted]
    bench = Bench(args)
    try:
        log(f"setting up (redis-server on {bench.redis_server.port}, {bench.tmp})")
        bench.manage("migrate", "--noinput")
        bench.manage("ensure_login")
        costs = bench.render_cost()
        for run in runs:
            log(f"run {run.name}: {run.normal} viewers + {run.stalled} stalled, "
                f"{args.rate}/s for {args.seconds:g} s")
            bench.run(run)
            log(f"  p50 {fmt_ms(run.result['p50'])} ms, p99 {fmt_ms(run.result['p99'])} ms, "
                f"XREAD {run.result['xread']}, RSS {run.result['warm_rss']:.0f} → "
                f"{run.result['end_rss']:.0f} MB")
    finally:
        bench.close()
    report(bench, runs, costs, time.monotonic() - started)
    return 1 if bench.errors else 0


if __name__ == "__main__":
    sys.exit(main())
