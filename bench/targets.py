"""Switching targets: does a dashboard serving two Redis targets reconnect as it switches?

Real Daphne, two private redis-servers as targets "a" and "b" (a TOML file named by
STREAMS_ADMIN_TARGETS), a logged-in urllib client. Page views alternate between the two
targets (overview, stream page, group page: a switch on every request), first one at a time,
then from --threads clients at once. On each server, printed every --every views:

    held     clients in CLIENT LIST, this script's own probe left out (the dashboard's)
    opened   connections the server accepted since the start (INFO total_connections_received)

    .venv/bin/python bench/targets.py                 # 400 views, then 8 x 100 at once
    .venv/bin/python bench/targets.py --views 100 --threads 4 --per-thread 25

Target: switching opens no connection once each target's pool is warm (opened flat while
views alternate one at a time, and in a second round at once), and held per target stays
within the requests served at once (a page view holds one connection of its target's pool
while it runs; sync views run on Daphne's few threads). Exit status 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from bench.dashboard_client import http_login, start_daphne  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

USERNAME, PASSWORD = "bench", "bench-targets-pw"
PROBE = "bench-probe"
PAGES = ("", "streams/orders/", "streams/orders/groups/ship/")


def seed(r: redis.Redis) -> None:
    for i in range(200):
        r.xadd("orders", {"n": str(i)})
    r.xgroup_create("orders", "ship", id="0")
    r.xreadgroup("ship", "c1", {"orders": ">"}, count=50)
    for i in range(20):
        r.xadd(f"other:{i}", {"n": "1"})


def counts(probes: dict[str, redis.Redis], start: dict[str, int]) -> dict[str, tuple[int, int]]:
    """{target: (held, opened since start)}."""
    out = {}
    for name, r in probes.items():
        held = sum(1 for c in r.client_list() if c["name"] != PROBE)
        out[name] = (held, int(r.info("stats")["total_connections_received"]) - start[name])
    return out




def view(opener: Any, base: str, i: int) -> None:
    target = "ab"[i % 2]
    with opener.open(f"{base}/t/{target}/{PAGES[(i // 2) % len(PAGES)]}", timeout=30) as page:
        if page.status != 200:
            raise RuntimeError(f"{page.url}: {page.status}")
        page.read()


def show(label: str, row: dict[str, tuple[int, int]]) -> None:
    print(f"{label:>26}  " + "  ".join(f"{name}: held {held:2d} opened {opened:3d}"
                                       for name, (held, opened) in row.items()), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--views", type=int, default=400)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--per-thread", type=int, default=100)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-targets-"))
    servers = {name: RedisServer().start() for name in "ab"}
    daphne = None
    try:
        probes = {n: redis.Redis.from_url(s.url, client_name=PROBE) for n, s in servers.items()}
        for r in probes.values():
            seed(r)
        config = tmp / "targets.toml"
        config.write_text("".join(f'[targets.{n}]\nurl = "{s.url}"\n' for n, s in servers.items()))
        env = {**os.environ, "SECRET_KEY": "bench-targets", "STREAMS_ADMIN_TARGETS": str(config),
               "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}", "LOG_LEVEL": "WARNING",
               "DJANGO_SUPERUSER_USERNAME": USERNAME, "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
               "DJANGO_SUPERUSER_EMAIL": "bench@example.com",
               "DJANGO_SETTINGS_MODULE": "dashboard.settings"}
        env.pop("DEBUG", None)
        for command in (["migrate"], ["createsuperuser", "--noinput"]):
            subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env,
                           check=True, capture_output=True, timeout=120)
        daphne, port = start_daphne(env, tmp / "daphne.log")
        base = f"http://127.0.0.1:{port}"
        opener, _ = http_login(base, USERNAME, PASSWORD)
        start = {n: int(r.info("stats")["total_connections_received"]) for n, r in probes.items()}
        rows = []
        print(f"{args.views} page views, switching target on each ({', '.join(PAGES)})")
        for i in range(args.views):
            view(opener, base, i)
            if (i + 1) % args.every == 0:
                rows.append(counts(probes, start))
                show(f"after {i + 1} views", rows[-1])
        openers = [http_login(base, USERNAME, PASSWORD)[0] for _ in range(args.threads)]

        def client(k: int) -> None:
            for i in range(args.per_thread):
                view(openers[k], base, i + k)

        for _ in range(2):  # the second round finds each target's pool warm
            began = time.monotonic()
            with ThreadPoolExecutor(args.threads) as pool:
                list(pool.map(client, range(args.threads)))
            rate = args.threads * args.per_thread / (time.monotonic() - began)
            rows.append(counts(probes, start))
            show(f"+ {args.threads} x {args.per_thread} at once ({rate:.0f}/s)", rows[-1])
        calm = {n: rows[len(rows) - 3][n][1] - rows[0][n][1] for n in probes}
        again = {n: rows[-1][n][1] - rows[-2][n][1] for n in probes}
        worst = max(held for row in rows for held, _ in row.values())
        print(f"opened while switching one at a time, after the first {args.every}: {calm}; "
              f"in the second round at once: {again}; most held per target: {worst} "
              f"(<= {args.threads} clients at once)")
        ok = not any(calm.values()) and not any(again.values()) and worst <= args.threads
        return 0 if ok else 1
    finally:
        if daphne is not None:
            daphne.terminate()
            daphne.wait(10)
        for server in servers.values():
            server.stop()
            shutil.rmtree(server.dir, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
