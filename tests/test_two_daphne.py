"""Two real Daphne processes side by side, as behind a proxy: one database, one Redis (a
standalone server or the test cluster). A login through one works on the other, a tail runs
on each, and what an operator does through one shows on the other at once: nothing one
process needs lives only in another's memory.

The PostgreSQL case needs the local PostgreSQL (127.0.0.1:5432, trust auth, as on the
project's machines; POSTGRES_ADMIN_URL names another): it fails, loudly, when none answers.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.parse import urlencode
from urllib.request import (
    HTTPCookieProcessor,
    HTTPRedirectHandler,
    OpenerDirector,
    Request,
    build_opener,
)

import pytest
import redis
from django.urls import reverse
from websockets.asyncio.client import connect

from tests import daphne
from tests.cluster_server import RedisCluster
from tests.html import table
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]
USERNAME, PASSWORD = "admin", "two-daphne-password"
FAILURE_LIMIT = 3  # failed logins before a lockout, for the processes under test


@dataclass(frozen=True)
class Pair:
    a: str  # base URL of process A
    b: str  # ... and of process B
    redis: redis.Redis | redis.RedisCluster


def _redis_url(request: pytest.FixtureRequest, kind: str) -> str:
    if kind == "standalone":
        server: RedisServer = request.getfixturevalue("redis_server")
        if server.process is None:  # a test of Redis going away left it stopped
            server.start()
        return server.url
    cluster: RedisCluster = request.getfixturevalue("redis_cluster")
    cluster.wait_ok()  # a failover test may have left it settling
    return cluster.url


# Each pair costs two Daphne processes and a migrated database: two pairs cover both kinds
# of Redis and both databases.
@pytest.fixture(scope="module", params=[("standalone", "sqlite"), ("cluster", "postgresql")],
                ids="-".join)
def daphnes(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[str, str, str]]:
    """(URL of A, URL of B, REDIS_URL): two Daphne processes on one database and one Redis."""
    kind, database = request.param
    tmp = tmp_path_factory.mktemp("two-daphne")
    url = (f"sqlite:///{tmp / 'db.sqlite3'}" if database == "sqlite"
           else request.getfixturevalue("postgres_url"))
    redis_url = _redis_url(request, kind)
    env = {**os.environ, "SECRET_KEY": "two-daphne", "REDIS_URL": redis_url,
           "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "dashboard.settings",
           "DJANGO_SUPERUSER_USERNAME": USERNAME, "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
           "LOGIN_FAILURE_LIMIT": str(FAILURE_LIMIT), "LOG_LEVEL": "WARNING",
           # Far longer than the default 2 s: a process that kept serving an overview from
           # before a change made through the other would show it here, whatever the timing.
           "STREAMS_ADMIN_OVERVIEW_FRESHNESS": "600"}
    env.pop("DEBUG", None)
    daphne.manage(env, "migrate", "--noinput")
    daphne.manage(env, "ensure_login")
    logs = [tmp / "a.log", tmp / "b.log"]
    started = [daphne.spawn(env, log) for log in logs]  # both at once: seconds each to start
    try:
        a, b = (daphne.wait_for(process, port, log)
                for (process, port), log in zip(started, logs, strict=True))
        yield a, b, redis_url
    finally:
        for process, _ in started:
            daphne.stop(process)


@pytest.fixture
def pair(daphnes: tuple[str, str, str]) -> Iterator[Pair]:
    """The two processes, and a client on their emptied Redis."""
    a, b, redis_url = daphnes
    client = _client(redis_url)
    if isinstance(client, redis.RedisCluster):
        client.flushall(target_nodes=redis.RedisCluster.PRIMARIES)
    else:
        client.flushall()
    yield Pair(a, b, client)
    client.close()


def _client(url: str) -> redis.Redis | redis.RedisCluster:
    """A client for url, whichever it names (the app detects a cluster the same way)."""
    probe = redis.Redis.from_url(url)
    try:
        clustered = probe.info("cluster").get("cluster_enabled") == 1
    finally:
        probe.close()
    return redis.RedisCluster.from_url(url) if clustered else redis.Redis.from_url(url)


class _NoRedirect(HTTPRedirectHandler):
    """Hand back a redirect as it is (the next request may go to the other process)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Browser:
    """Cookies and forms as a browser keeps them. Cookies are per host, not per port, so the
    session cookie set by A goes to B as it would through one proxy."""

    def __init__(self) -> None:
        self.jar = CookieJar()
        self.opener: OpenerDirector = build_opener(HTTPCookieProcessor(self.jar), _NoRedirect)

    def get(self, url: str) -> tuple[int, str, str]:
        """(status, Location, body)."""
        return self._open(Request(url))

    def post(self, url: str, fields: dict[str, str | list[str]],
             token_from: str) -> tuple[int, str, str]:
        """POST a form with the CSRF token of the page at token_from, as that page would."""
        page = self.get(token_from)[2]
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token, f"no CSRF token on {token_from}"
        body = urlencode({**fields, "csrfmiddlewaretoken": token.group(1)}, doseq=True)
        return self._open(Request(url, data=body.encode(), headers={"Referer": token_from}))

    def _open(self, request: Request) -> tuple[int, str, str]:
        try:
            with self.opener.open(request, timeout=60) as response:
                return response.status, "", response.read().decode()
        except HTTPError as exc:
            return exc.code, exc.headers.get("Location", ""), exc.read().decode()

    def log_in(self, base: str, username: str = USERNAME, password: str = PASSWORD) -> int:
        """The status: 302 logged in, 200 the form again, 429 locked out."""
        return self.post(f"{base}/login/", {"username": username, "password": password},
                         token_from=f"{base}/login/")[0]

    @property
    def session(self) -> str:
        return next(c.value for c in self.jar if c.name == "sessionid")


def logged_in(pair: Pair) -> Browser:
    browser = Browser()
    assert browser.log_in(pair.a) == 302
    return browser


def test_a_login_through_one_process_works_on_the_other(pair: Pair) -> None:
    pair.redis.xadd("orders", {"event_type": "order.placed", "n": "1"})
    browser = logged_in(pair)
    status, _, overview = browser.get(f"{pair.b}/")
    assert status == 200 and "orders" in [row[0] for row in table(overview)]
    assert f'<span class="user">{USERNAME}' in overview  # the header names who is logged in
    status, _, stream = browser.get(pair.b + reverse("streams_admin:stream", args=[b"orders"]))
    assert status == 200 and "order.placed" in stream
    # Logging out through B ends the session on A too: it lives in the database.
    assert browser.post(f"{pair.b}/logout/", {}, token_from=f"{pair.b}/")[0] == 302
    status, location, _ = browser.get(f"{pair.a}/")
    assert status == 302 and location.startswith("/login/")


def test_failed_logins_through_both_processes_count_together(pair: Pair) -> None:
    guesser = Browser()
    bases = [pair.a, pair.b] * FAILURE_LIMIT
    for base in bases[:FAILURE_LIMIT - 1]:
        assert guesser.log_in(base, "someone", "wrong") == 200  # the form again, with an error
    # The count is in the database: the last try allowed locks the pair out on both.
    assert guesser.log_in(bases[FAILURE_LIMIT - 1], "someone", "wrong") == 429
    assert guesser.log_in(bases[FAILURE_LIMIT], "someone", "wrong") == 429


async def _tail(base: str, session: str, key: str) -> Any:
    """A live tail as the page opens it: the page's own Origin, the session cookie."""
    ws = await connect(f"{base.replace('http', 'ws', 1)}/ws/tail/?key={key}",
                       origin=base, additional_headers={"Cookie": f"sessionid={session}"},
                       open_timeout=30)
    first = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert first["type"] == "live", first
    return ws


async def _next_entry_ids(ws: Any) -> list[str]:
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if message["type"] == "entries":
            await ws.send(json.dumps({"ack": message["seq"]}))
            return re.findall(r'data-id="([^"]+)"', "".join(message["rows"]))
        assert message["type"] == "ping", message


async def test_a_tail_on_each_process_gets_every_entry(pair: Pair) -> None:
    pair.redis.xadd("orders", {"n": "0"})
    session = logged_in(pair).session
    on_a, on_b = await _tail(pair.a, session, "orders"), await _tail(pair.b, session, "orders")
    try:
        new_id = pair.redis.xadd("orders", {"n": "1"}).decode()
        assert await _next_entry_ids(on_a) == [new_id]
        assert await _next_entry_ids(on_b) == [new_id]
    finally:
        await on_a.close()
        await on_b.close()


def test_an_action_through_one_process_shows_on_the_other_at_once(pair: Pair) -> None:
    r = pair.redis
    ids = [r.xadd("orders", {"n": str(n)}).decode() for n in range(3)]
    r.xgroup_create("orders", "billing", id="0")
    r.xreadgroup("billing", "worker-1", {"orders": ">"})
    r.xadd("doomed", {"n": "1"})
    browser = logged_in(pair)
    group = reverse("streams_admin:group", args=[b"orders", b"billing"])
    _, _, before = browser.get(pair.b + group)
    assert all(entry_id in before for entry_id in ids)
    # B computes this overview now and would serve it for 600 s (a page of its own: another
    # test's overview may be held since, and changes made around the dashboard do not count).
    by_length = f"{pair.b}/?sort=length"
    assert [row[0] for row in table(browser.get(by_length)[2])] == ["doomed", "orders"]

    # Forms rendered by B, submitted to A: the CSRF token is in a cookie, not in memory.
    ack = reverse("streams_admin:ack", args=[b"orders", b"billing"])
    assert browser.post(pair.a + ack, {"ids": [ids[0]]}, token_from=pair.b + group)[0] == 302
    _, _, after = browser.get(pair.b + group)
    assert ids[0] not in after and ids[1] in after

    delete = reverse("streams_admin:delete-stream", args=[b"doomed"])
    status, location, _ = browser.post(pair.a + delete, {"confirm": "doomed"},
                                       token_from=pair.b + delete)
    assert (status, location) == (302, "/")
    _, _, overview = browser.get(pair.b + location)  # the redirect, answered by the other
    assert [row[0] for row in table(overview)] == ["orders"]
    # The message saying so, set by A, shown by B: it travels in a signed cookie.
    assert "Deleted the stream and its 1 entry." in overview
    assert [row[0] for row in table(browser.get(by_length)[2])] == ["orders"]
