"""A 10 MB entry under a real Daphne: what 8 viewers at once cost in memory and bytes.

DESIGN.md: "What a page, a frame or a message carries is bounded in fields and bytes whatever
Redis holds; a whole value is a download, not HTML." Target: Daphne's RSS grows by at most
200 MB while 8 clients at once open the entry page of an entry holding a 10 MB binary value,
its "show all" (?full=1), or download that value; and the stream page of 10 such entries.

A private redis-server holds a 1 KB entry, a 10 MB one and a stream of ten 10 MB ones; Daphne
serves the dashboard. For each URL, 8 threads request it at once and read the whole response;
a sampler reads Daphne's VmRSS (/proc/<pid>/status) every 10 ms. Printed: response size, wall
time of the 8, RSS before, peak and after (as deltas), and each against the 1 KB entry's page.

    .venv/bin/python bench/big_entry.py [--before DIR] [--clients 8]

--before DIR runs the same requests against another checkout of the app first (e.g. one
made by `git archive <commit> | tar -x -C DIR`), side by side in the same run. Exit status 1
when a peak passes the target or a download is not the exact bytes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.error import HTTPError

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.dashboard_client import http_login  # noqa: E402
from tests.redis_server import RedisServer, free_port  # noqa: E402

USERNAME, PASSWORD = "bench", "bench-big-entry"
MB = 1 << 20
TARGET_MB = 200
BIG = os.urandom(10 * MB)
PAGE_ENTRIES = 10


@dataclass(frozen=True)
class Result:
    label: str
    status: int
    size: int  # bytes of one response
    seconds: float  # wall time for all the clients
    before: float  # MB
    peak: float  # MB over `before`
    after: float  # MB over `before`, once all answered


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Sampler:
    """Daphne's highest RSS while requests run (sampled every 10 ms)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.01)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb(self.pid))


class Daphne:
    def __init__(self, root: Path, redis_url: str, tmp: Path) -> None:
        self.env = {**os.environ, "SECRET_KEY": "bench-big-entry", "REDIS_URL": redis_url,
                    "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}",
                    "DJANGO_SUPERUSER_USERNAME": USERNAME, "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
                    "DJANGO_SETTINGS_MODULE": "dashboard.settings", "LOG_LEVEL": "WARNING",
                    "PYTHONDONTWRITEBYTECODE": "1"}
        self.env.pop("DEBUG", None)
        self.root, self.port = root, free_port()
        for args in (("migrate", "--noinput"), ("ensure_login",)):
            subprocess.run([sys.executable, "manage.py", *args], cwd=root, env=self.env,
                           check=True, capture_output=True, timeout=120)
        self.log = (tmp / "daphne.log").open("wb")
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "daphne"), "-v", "0", "-b", "127.0.0.1",
             "-p", str(self.port), "dashboard.asgi:application"],
            cwd=root, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{self.port}"
        self._wait()
        self.opener = self._login()

    def _wait(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise RuntimeError("daphne exited")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _login(self):  # noqa: ANN202 (urllib's OpenerDirector)
        return http_login(self.base, USERNAME, PASSWORD)[0]

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with self.opener.open(self.base + path, timeout=170) as response:
                return response.status, response.read()
        except HTTPError as exc:
            return exc.code, exc.read()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.log.close()


def at_once(daphne: Daphne, label: str, path: str, clients: int,
            expect: bytes | None = None) -> Result:
    print(f"  {label} …", file=sys.stderr, flush=True)
    daphne.get(path)  # warm: imports, templates, the Lua scripts
    time.sleep(0.3)
    before = rss_mb(daphne.process.pid)
    start = time.perf_counter()
    with Sampler(daphne.process.pid) as sampler, ThreadPoolExecutor(clients) as pool:
        replies = list(pool.map(daphne.get, [path] * clients))
    seconds = time.perf_counter() - start
    status, body = replies[0]
    if expect is not None and status == 200 and any(b != expect for _, b in replies):
        failures.append(f"{label}: a download is not the value's exact bytes")
    time.sleep(0.3)
    after = rss_mb(daphne.process.pid) - before
    return Result(label, status, len(body), seconds, before, sampler.peak - before, after)


failures: list[str] = []


def measure(name: str, root: Path, r: redis.Redis, url: str, clients: int) -> list[Result]:
    small_id = r.xrange("bench:small")[0][0].decode()
    big_id = r.xrange("bench:big")[0][0].decode()
    small = f"/streams/bench:small/entries/{small_id}/"
    big = f"/streams/bench:big/entries/{big_id}/"
    with tempfile.TemporaryDirectory(prefix="bench-big-entry-") as tmp:
        daphne = Daphne(root, url, Path(tmp))
        try:
            print(f"\n{name}: Daphne from {root}, {clients} clients at once")
            results = [at_once(daphne, "1 KB entry page", small, clients),
                       at_once(daphne, "10 MB entry page", big, clients),
                       at_once(daphne, "10 MB ?full=1", big + "?full=1", clients),
                       at_once(daphne, "10 MB download", big + "fields/1/download/", clients,
                               expect=BIG),
                       at_once(daphne, "page of 10 x 10 MB", "/streams/bench:page/", clients)]
        finally:
            daphne.stop()
    report(results)
    return results


def report(results: list[Result]) -> None:
    print(f"{'request':<19} {'status':>6} {'response':>12} {'wall s':>7} {'RSS before':>10}"
          f" {'peak +MB':>9} {'after +MB':>9}")
    for res in results:
        print(f"{res.label:<19} {res.status:>6} {res.size:>12,} {res.seconds:>7.2f}"
              f" {res.before:>10.0f} {res.peak:>9.0f} {res.after:>9.0f}")
    small = results[0]
    for res in results[1:]:
        print(f"  {res.label} / 1 KB entry page: response {res.size / small.size:.1f}x,"
              f" wall {res.seconds / small.seconds:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="another checkout to run first")
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    server = RedisServer().start()
    try:
        r = redis.Redis.from_url(server.url)
        r.xadd("bench:small", {"name": "report.txt", "payload": os.urandom(512).hex()})
        r.xadd("bench:big", {"name": "report.bin", "payload": BIG})
        for n in range(PAGE_ENTRIES):  # a stream page of them: its rows show 200 bytes of each
            r.xadd("bench:page", {"name": f"report{n}.bin", "payload": BIG})
        if args.before:
            measure("before", args.before, r, server.url, args.clients)
        results = measure("this checkout", ROOT, r, server.url, args.clients)
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)
    for res in results[1:]:
        if res.peak > TARGET_MB:
            failures.append(f"{res.label}: Daphne's RSS peaked {res.peak:.0f} MB over its start")
    print(f"\ntarget: peak <= +{TARGET_MB} MB for each 10 MB request set")
    for failure in failures:
        print("FAIL", failure)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
