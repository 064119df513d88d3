"""Expensive Redis work stays bounded: trim and set-ID previews on a big stream never hold
Redis long (checked with Redis's own SLOWLOG, not a timer) and say "≥" where they stopped;
on small streams they are exact. Concurrent overview requests share one computation."""

from __future__ import annotations

import http.cookiejar
import random
import re
import threading
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


def big_stream(r: redis.Redis, settings) -> list[str]:
    """BIG entries in one stream, a group that read the first 1,000 (pending), and a group
    that read none; then an empty SLOWLOG that records anything slower than SLOW_US.

    Calls stop after 2 ms here (5 ms by default): SLOWLOG times the wall clock, and on a
    machine shared by many test runs Redis may wait for a core in the middle of a call. A
    preview as it was (one script counting everything) takes hundreds of ms even alone."""
    settings.STREAMS_ADMIN = {"PREVIEW_STEP": 2000, "PREVIEW_STEP_MS": 2}
    for _ in range(BIG // 50_000):
        r.eval(FILL, 1, "big", 50_000)
    r.xgroup_create("big", "early", id="0")
    r.xreadgroup("early", "c", {"big": ">"}, count=1000)
    r.xgroup_create("big", "idle", id="0")
    middle = r.xrange("big", count=BIG // 2)[-1][0].decode()
    r.config_set("slowlog-log-slower-than", SLOW_US)
    r.slowlog_reset()
    return [middle]


def slow_commands(r: redis.Redis) -> list[bytes]:
    return [row["command"][:120] for row in r.slowlog_get(100)]


def test_trim_preview_on_a_big_stream_is_budgeted_and_says_at_least(admin_client, r,
                                                                     settings) -> None:
    middle, = big_stream(r, settings)
    url = reverse("streams_admin:trim", args=[b"big"])
    page = admin_client.get(url + f"?strategy=minid&threshold={middle}").content.decode()
    assert slow_commands(r) == []
    removed = re.search(r"<strong>([^<]*)</strong> of 200000 entries would go", page)
    assert removed and removed.group(1).startswith("≥ ")
    assert 0 < int(removed.group(1)[2:]) < BIG // 2  # a true lower bound
    assert 'id="trim-budget"' in page and "counting stopped after 100000 entries" in page
    assert "still needed by a group" in page  # the early group's pending entries go
    # MAXLEN: the number removed comes from XLEN, exact however long the stream.
    page = admin_client.get(url + "?strategy=maxlen&threshold=150000").content.decode()
    assert "<strong>50000</strong> of 200000 entries would go" in page
    assert slow_commands(r) == []


def test_set_id_preview_on_a_big_stream_is_budgeted_and_says_at_least(admin_client, r,
                                                                       settings) -> None:
    middle, = big_stream(r, settings)
    url = reverse("streams_admin:set-id", args=[b"big", b"idle"])
    page = admin_client.get(url + f"?position={middle}").content.decode()
    assert slow_commands(r) == []
    lag = re.search(r"lag <strong>([^<]*)</strong>", page)
    assert lag and lag.group(1).startswith("≥ ") and 0 < int(lag.group(1)[2:]) <= BIG // 2
    assert "lag <strong>200000</strong>" in admin_client.get(url + "?position=0").content.decode()
    assert slow_commands(r) == []


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


def summary_calls(r: redis.Redis) -> int:
    """Calls of the overview's summaries script: one per 500 streams per computation."""
    stats = r.info("commandstats")
    return sum(stats.get(name, {}).get("calls", 0) for name in ("cmdstat_eval", "cmdstat_evalsha"))


def test_concurrent_overview_requests_share_one_computation(r, dashboard) -> None:  # noqa: F811
    for n in range(300):
        r.xadd(f"ov:{n:03d}", {"n": str(n)})
    opener = log_in(dashboard.url, dashboard.username, dashboard.password)
    assert b"ov:000" in opener.open(f"{dashboard.url}/?q=ov:000", timeout=30).read()
    before, clients = summary_calls(r), 20
    start, pages = threading.Barrier(clients), []

    def view() -> None:
        start.wait()
        pages.append(opener.open(f"{dashboard.url}/?sort=length&desc=1", timeout=60).read())

    threads = [threading.Thread(target=view) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert len(pages) == clients and all(b"300 streams" in p for p in pages)
    # Freshness is 2 s: on a slow machine a late request may start a second computation;
    # before single flight each of the 20 requests made its own.
    assert summary_calls(r) - before <= 3
    assert all(re.search(rb"as of <span[^>]*>\d\d:\d\d:\d\d</span>", p) for p in pages)


def test_a_change_made_here_shows_on_the_next_overview_at_once(admin_client, r) -> None:
    r.xadd("keep", {"a": "1"})
    r.xadd("gone", {"a": "1"})
    assert b"gone" in admin_client.get("/").content
    after = admin_client.post(reverse("streams_admin:delete-stream", args=[b"gone"]),
                              {"confirm": "gone"}, follow=True)
    assert after.request["PATH_INFO"] == "/"
    assert [row[0] for row in table(after.content)] == ["keep"]
