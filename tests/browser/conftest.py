"""The real server under Daphne and a real Chromium, shared by the browser tests of a session."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests import daphne
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
USERNAME, PASSWORD = "operator", "browser-test-password"


@dataclass(frozen=True)
class Dashboard:
    url: str
    username: str
    password: str


@pytest.fixture(scope="session")
def dashboard(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[Dashboard]:
    """Daphne serving dashboard.asgi on a free port, pointed at the suite's redis-server."""
    with serve(redis_server.url, tmp_path_factory.mktemp("dashboard")) as served:
        yield served


@contextlib.contextmanager
def serve(redis_url: str, tmp: Path) -> Iterator[Dashboard]:
    """Daphne serving dashboard.asgi on a free port, pointed at redis_url (a server, or any
    node of a cluster), with its own database in tmp."""
    env = {**os.environ, "SECRET_KEY": "test", "REDIS_URL": redis_url,
           "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}",
           "DJANGO_SUPERUSER_USERNAME": USERNAME, "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
           "DJANGO_SETTINGS_MODULE": "dashboard.settings",
           # Tests change Redis directly and look at once: no overview reused across them
           # (requests at the same moment still share one computation).
           "STREAMS_ADMIN_OVERVIEW_FRESHNESS": "0"}
    env.pop("DEBUG", None)
    daphne.manage(env, "migrate", "--noinput")
    daphne.manage(env, "ensure_login")
    log = tmp / "daphne.log"
    process, port = daphne.spawn(env, log)
    try:
        yield Dashboard(daphne.wait_for(process, port, log), USERNAME, PASSWORD)
    finally:
        daphne.stop(process)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Sync API: it refuses to run inside an event loop, so browser tests stay plain sync
    # functions, and the module scope stops it before any later async test starts.
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
