"""The README's first command: ./bin/dashboard with no Redis at REDIS_URL starts its own
redis-server, loads the demo streams, serves the dashboard, and stops everything on exit."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import redis

from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent


def test_bin_dashboard_runs_on_a_private_redis_and_cleans_up(tmp_path: Path) -> None:
    port, nobody = free_port(), free_port()  # nothing answers on `nobody`
    env = {**os.environ, "REDIS_URL": f"redis://127.0.0.1:{nobody}/0", "PORT": str(port),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
           "DJANGO_SUPERUSER_USERNAME": "admin", "DJANGO_SUPERUSER_PASSWORD": "pw"}
    env.pop("DJANGO_SETTINGS_MODULE", None)  # the dashboard's own settings, not the tests'
    log = tmp_path / "dashboard.log"
    with log.open("wb") as out:
        process = subprocess.Popen([ROOT / "bin" / "dashboard"], cwd=ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    private = None
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=2) as page:
                    assert page.status == 200 and b"Log in" in page.read()
                    break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.3)
        output = log.read_text()
        found = re.search(r"started a private redis-server at (redis://\S+)", output)
        assert found, output
        private = redis.Redis.from_url(found.group(1))
        streams = list(private.scan_iter(_type="stream"))
        assert len(streams) >= 7 and b"agent:stream:task.created" in streams
        assert f"Streams Admin: http://127.0.0.1:{port}/" in output
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
    with_redis_gone = time.monotonic() + 10
    while True:  # the private redis-server went with it
        try:
            private.ping()
        except redis.ConnectionError:
            break
        assert time.monotonic() < with_redis_gone, "the private redis-server is still running"
        time.sleep(0.2)
