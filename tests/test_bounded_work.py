"""Expensive Redis work stays bounded: trim and set-ID previews on a big stream never hold
Redis long (checked with Redis's own SLOWLOG, not a timer) and say "≥" where they stopped;
on small streams they are exact. Concurrent overview requests share one computation."""

from __future__ import annotations

import http.cookiejar
import random
import re
import threading
import time
from collections.abc import Callable
from typing import NamedTuple
from urllib.parse import urlencode
from urllib.request import HTTPCookieProcessor, Request, build_opener

import pytest
import redis
from django.urls import reverse

from streams_admin.operations.groups import preview_set_id
from streams_admin.operations.streams import preview_trim
from streams_admin.values import id_key
from tests.browser.conftest import dashboard  # noqa: F401  (fixture: Daphne)
from tests.html import table

pytestmark = pytest.mark.django_db

BIG = 200_000
SLOW_US = 100_000  # SLOWLOG records any command that held Redis 100 ms (the bound)
FILL = """
for i = 1, tonumber(ARGV[1]) do
  redis.call("XADD", KEYS[1], "*", "n", tostring(i), "data", '{"task_id": "t"}')
end
"""


def big_stream(r: redis.Redis) -> str:
    """BIG entries in one stream, a group that read the first 1,000 (pending), and a group
    that read none; SLOWLOG records anything slower than SLOW_US. The middle entry's ID."""
    for _ in range(BIG // 50_000):
        r.eval(FILL, 1, "big", 50_000)
    r.xgroup_create("big", "early", id="0")
    r.xreadgroup("early", "c", {"big": ">"}, count=1000)
    r.xgroup_create("big", "idle", id="0")
    r.config_set("slowlog-log-slower-than", SLOW_US)
    return r.xrange("big", count=BIG // 2)[-1][0].decode()


def without_holding_redis(r: redis.Redis, get: Callable[[], bytes]) -> str:
    """The page from a request during which no Redis command took SLOW_US or more.

    SLOWLOG times the wall clock: on a machine shared by many test runs, Redis may wait for a
    core in the middle of any command, so a request gets three tries. A preview that counts
    in one call (as it did: hundreds of ms for 100,000 entries) is slow every time."""
    slow: list[bytes] = []
    for _ in range(3):
        r.slowlog_reset()
        page = get()
        slow = [row["command"][:120] for row in r.slowlog_get(100)]
        if not slow:
            return page.decode()
    raise AssertionError(f"every try held Redis {SLOW_US // 1000} ms or more: {slow}")


def test_trim_preview_on_a_big_stream_is_budgeted_and_says_at_least(admin_client, r) -> None:
    middle = big_stream(r)
    url = reverse("streams_admin:trim", args=[b"big"])
    page = without_holding_redis(r, lambda: admin_client.get(
        url + f"?strategy=minid&threshold={middle}").content)
    removed = re.search(r"<strong>([^<]*)</strong> of 200000 entries would go", page)
    assert removed and removed.group(1).startswith("≥ ")
    assert 0 < int(removed.group(1)[2:]) < BIG // 2  # a true lower bound
    assert 'id="trim-budget"' in page and "counting stopped after 100000 entries" in page
    assert "still needed by a group" in page  # the early group's pending entries go
    # MAXLEN: the number removed comes from XLEN, exact however long the stream.
    page = without_holding_redis(r, lambda: admin_client.get(
        url + "?strategy=maxlen&threshold=150000").content)
    assert "<strong>50000</strong> of 200000 entries would go" in page


def test_set_id_preview_on_a_big_stream_is_budgeted_and_says_at_least(admin_client, r) -> None:
    middle = big_stream(r)
    url = reverse("streams_admin:set-id", args=[b"big", b"idle"])
    page = without_holding_redis(r, lambda: admin_client.get(
        url + f"?position={middle}").content)
    lag = re.search(r"lag <strong>([^<]*)</strong>", page)
    assert lag and lag.group(1).startswith("≥ ") and 0 < int(lag.group(1)[2:]) <= BIG // 2
    assert "lag <strong>200000</strong>" in admin_client.get(url + "?position=0").content.decode()


# -- small streams: exact, and every "≥" a true lower bound ------------------------------


def scenario(r: redis.Redis, seed: int) -> list[str]:
    """300 entries, some deleted; groups behind, caught up, never read, rewound below their
    pending entries, and moved without ENTRIESREAD (Redis cannot give their lag)."""
    rng = random.Random(seed)
    ids = [r.xadd("s", {"n": str(n)}).decode() for n in range(300)]
    r.xgroup_create("s", "behind", id="0")
    r.xreadgroup("behind", "c", {"s": ">"}, count=120)
    r.xack("s", "behind", *rng.sample(ids[:120], 40))
    r.xgroup_create("s", "done", id="0")
    r.xreadgroup("done", "c", {"s": ">"}, count=300)
    r.xack("s", "done", *ids[:290])
    r.xgroup_create("s", "never", id="0")
    r.xgroup_create("s", "rewound", id="0")
    r.xreadgroup("rewound", "c", {"s": ">"}, count=200)
    r.xgroup_setid("s", "rewound", ids[50])
    r.xgroup_create("s", "moved", id=ids[rng.randrange(300)])
    r.xdel("s", *rng.sample(ids[100:250], 15))
    return ids


def truth_trim(r: redis.Redis, strategy: str, threshold: str) -> dict[str, object]:
    ids = [i.decode() for i, _ in r.xrange("s")]
    if strategy == "maxlen":
        removed = ids[:max(0, len(ids) - int(threshold))]
    else:
        removed = [i for i in ids if id_key(i) < id_key(threshold)]

    def goes(entry_id: str) -> bool:  # pending entries may be deleted ones: compare IDs
        if strategy == "maxlen":
            return bool(removed) and id_key(entry_id) <= id_key(removed[-1])
        return id_key(entry_id) < id_key(threshold)

    groups = {}
    if removed:
        for g in r.xinfo_groups("s"):
            pending = [p["message_id"].decode()
                       for p in r.xpending_range("s", g["name"], "-", "+", 10_000)]
            last = id_key(g["last-delivered-id"].decode())
            groups[g["name"]] = (sum(1 for p in pending if goes(p)),
                                 sum(1 for i in removed if id_key(i) > last))
    return {"removed": len(removed), "groups": groups}


class Figure(NamedTuple):
    value: int
    at_least: bool


def check(figure: Figure, truth: int, budgeted: bool) -> None:
    if figure.at_least:
        assert budgeted and figure.value <= truth
    else:
        assert figure.value == truth


@pytest.mark.parametrize("budget", [None, 40])
@pytest.mark.parametrize("seed", [1, 2])
def test_previews_on_small_streams_match_a_full_count(r, settings, budget, seed) -> None:
    ids = scenario(r, seed)
    settings.STREAMS_ADMIN = {"PREVIEW_BUDGET": budget or 100_000, "PREVIEW_STEP": 7}
    present = [i.decode() for i, _ in r.xrange("s")]
    between = f"{id_key(present[140])[0]}-{id_key(present[140])[1] + 1}"  # no such entry
    cases = [("maxlen", n) for n in ("0", "1", "40", "150", "284", "285", "500")]
    cases += [("minid", t) for t in (ids[0], ids[3], ids[130], between, present[-1], "9-0",
                                     f"{id_key(present[-1])[0] + 1}-0")]
    for strategy, threshold in cases:
        preview = preview_trim(b"s", strategy, threshold, False)
        truth = truth_trim(r, strategy, threshold)
        check(preview.removed, truth["removed"], budget is not None)
        assert {g.group for g in preview.groups} == set(truth["groups"])
        for g in preview.groups:
            pending, undelivered = truth["groups"][g.group]
            check(g.pending, pending, budget is not None)
            check(g.undelivered, undelivered, budget is not None)
    for position in ("0", "$", ids[0], ids[1], ids[120], between, present[-1], ids[200]):
        preview = preview_set_id(b"s", position)
        after = sum(1 for i in present if position != "$" and id_key(i) > id_key(position))
        check(Figure(preview.lag, preview.at_least), after, budget is not None)
    assert r.xlen("s") == len(present)  # a preview changes nothing


def test_a_trim_whose_risk_is_only_a_lower_bound_is_still_refused(admin_client, r, settings):
    ids = scenario(r, 3)
    settings.STREAMS_ADMIN = {"PREVIEW_BUDGET": 10, "PREVIEW_STEP": 3}
    url = reverse("streams_admin:trim", args=[b"s"])
    answer = admin_client.post(url, {"strategy": "minid", "threshold": ids[280],
                                     "confirm": "s"}, follow=True).content.decode()
    assert "Refused: at least" in answer and r.xlen("s") == 285


# -- the overview: one computation for many viewers --------------------------------------


def log_in(base: str, username: str, password: str):
    jar = http.cookiejar.CookieJar()
    opener = build_opener(HTTPCookieProcessor(jar))
    page = opener.open(f"{base}/login/", timeout=30).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token, "no CSRF token on the login page"
    body = urlencode({"username": username, "password": password,
                      "csrfmiddlewaretoken": token.group(1)}).encode()
    opener.open(Request(f"{base}/login/", data=body, headers={"Referer": f"{base}/login/"}),
                timeout=30).read()
    return opener


def computations(r: redis.Redis) -> int:
    """INFO calls so far: an overview computation makes one (for the server's facts); a
    request that shares another's makes none."""
    return r.info("commandstats")["cmdstat_info"]["calls"]


def test_concurrent_overview_requests_share_one_computation(r, dashboard) -> None:  # noqa: F811
    # The browser suite's Daphne reuses nothing (OVERVIEW_FRESHNESS 0): only requests that
    # arrive while a computation is in flight share it. Redis is paused while the 20 arrive,
    # so the first computation is still in flight when the last comes, however slow the
    # machine (without the pause a slow one made 4: requests that came after it ended).
    pipe = r.pipeline(transaction=False)
    for n in range(2000):
        pipe.xadd(f"ov:{n:04d}", {"n": str(n)})
    pipe.execute()
    opener = log_in(dashboard.url, dashboard.username, dashboard.password)
    assert b"ov:0000" in opener.open(f"{dashboard.url}/?q=ov:0000", timeout=30).read()
    clients = 20
    start, pages = threading.Barrier(clients), []

    def view() -> None:
        start.wait()
        pages.append(opener.open(f"{dashboard.url}/?sort=length&desc=1", timeout=60).read())

    threads = [threading.Thread(target=view) for _ in range(clients)]
    before = computations(r)
    r.client_pause(1500)  # every client's commands wait 1.5 s, the dashboard's and ours
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    made = computations(r) - before - 1  # less this test's own first INFO
    assert len(pages) == clients and all(b"2000 streams" in p for p in pages)
    assert made <= 2  # one (two should the first start before the pause); without single
    # flight, 20
    assert all(re.search(rb"as of <span[^>]*>\d\d:\d\d:\d\d</span>", p) for p in pages)


def as_of(page: bytes) -> str:
    found = re.search(rb"as of <span[^>]*>([\d:]+)</span>", page)
    assert found, "the overview does not say when it looked"
    return found.group(1).decode()


def test_an_overview_serves_for_its_freshness_then_looks_again(viewer_client, r, settings):
    settings.STREAMS_ADMIN = {"OVERVIEW_FRESHNESS": 600}
    r.xadd("first", {"a": "1"})
    page = viewer_client.get("/").content
    r.xadd("later", {"a": "1"})  # by someone else: this process does not know
    again = viewer_client.get("/").content
    assert [row[0] for row in table(again)] == ["first"] and as_of(again) == as_of(page)
    settings.STREAMS_ADMIN = {"OVERVIEW_FRESHNESS": 0.2}
    deadline = time.monotonic() + 30
    while len(table(again)) < 2 and time.monotonic() < deadline:
        again = viewer_client.get("/").content
    assert [row[0] for row in table(again)] == ["first", "later"]


def test_a_change_made_here_shows_on_the_next_overview_at_once(admin_client, r) -> None:
    r.xadd("keep", {"a": "1"})
    r.xadd("gone", {"a": "1"})
    assert b"gone" in admin_client.get("/").content
    after = admin_client.post(reverse("streams_admin:delete-stream", args=[b"gone"]),
                              {"confirm": "gone"}, follow=True)
    assert after.request["PATH_INFO"] == "/"
    assert [row[0] for row in table(after.content)] == ["keep"]
