"""Each screen against a scenario built here: the numbers shown are the ones Redis reports."""

from __future__ import annotations

import json
import re

import pytest
import redis
from django.urls import reverse

from streams_admin.streams import server
from tests.html import link, table
from tests.redis_server import group_lag, needs_lag


def envelope(event_type: str, data: dict) -> dict[str, str]:
    return {"event_id": f"id-{data.get('n', 0)}", "event_type": event_type,
            "timestamp": "2026-11-28T10:00:00+00:00", "data": json.dumps(data)}


@pytest.fixture
def r(any_redis: redis.Redis) -> redis.Redis:
    """Every screen test runs on a standalone server and on a cluster."""
    return any_redis


@pytest.fixture
def scenario(r: redis.Redis) -> redis.Redis:
    """orders: 30 entries; group "ship" read 10, acked 4; "audit" read nothing."""
    for n in range(30):
        r.xadd("orders", envelope("order.placed", {"n": n}), id=f"{1_700_000_000_000 + n}-0")
    r.xgroup_create("orders", "ship", id="0")
    r.xgroup_create("orders", "audit", id="0")
    r.xreadgroup("ship", "worker-a", {"orders": ">"}, count=6)
    r.xreadgroup("ship", "worker-b", {"orders": ">"}, count=4)
    pending = [row["message_id"] for row in r.xpending_range("orders", "ship", "-", "+", 4)]
    r.xack("orders", "ship", *pending)
    r.xadd("plain", {"a": "1"})
    return r


def test_overview_shows_what_xinfo_says(viewer_client, scenario: redis.Redis) -> None:
    rows = {row[0]: row for row in table(viewer_client.get("/").content)}
    assert set(rows) == {"orders", "plain"}
    groups = scenario.xinfo_groups("orders")
    lags = {g["name"]: group_lag(scenario, "orders", g["name"]) for g in groups}
    counted = "" if server().has_lag else " counted"  # Redis 6.2 reports no lag
    # name, length, rate (filled in live), groups, pending, worst lag
    assert rows["orders"][1:6] == [
        str(scenario.xlen("orders")), "–", "2",
        str(sum(g["pending"] for g in groups)), str(max(lags.values())) + counted,
    ]
    assert rows["orders"][1:6] == ["30", "–", "2", "6", "30" + counted]
    assert rows["plain"][1:5] == ["1", "–", "0", "0"]


def test_overview_sorts_filters_and_pages(viewer_client, r: redis.Redis, settings) -> None:
    for n in range(7):
        for _ in range(n + 1):
            r.xadd(f"s{n}", {"f": "v"})
    r.set("not-a-stream", "x")
    settings.STREAMS_ADMIN = {"OVERVIEW_PAGE_SIZE": 3}
    by_length = table(viewer_client.get("/?sort=length&desc=1").content)
    assert [row[0] for row in by_length] == ["s6", "s5", "s4"]
    page3 = viewer_client.get("/?sort=length&desc=1&page=3").content
    assert [row[0] for row in table(page3)] == ["s0"]
    assert b"Page 3 of 3" in page3
    filtered = table(viewer_client.get("/?q=S3").content)
    assert [row[0] for row in filtered] == ["s3"]


def test_overview_health_summary_names_the_problems(viewer_client, r, settings) -> None:
    settings.STREAMS_ADMIN = {"LAG_THRESHOLD": 5, "POISON_DELIVERIES": 3}
    for _ in range(10):
        r.xadd("jobs", {"f": "v"})
    r.xgroup_create("jobs", "slow", id="0")
    r.xreadgroup("slow", "c1", {"jobs": ">"}, count=1)
    stuck = r.xrange("jobs", count=1)[0][0]
    r.xclaim("jobs", "slow", "c1", 0, [stuck], retrycount=4)
    page = viewer_client.get("/").content.decode()
    # Redis 6.2 reports no lag: the summary, which counts none, cannot name the group
    assert ("9 entries not yet delivered" in page) == server().has_lag
    entry_url = reverse("streams_admin:entry", args=[b"jobs", stuck.decode()])
    assert link(page, stuck.decode()) == entry_url  # the poison entry, one click away
    assert "delivered 4 times" in page


def test_stream_page_lists_entries_newest_first_with_envelope(viewer_client, scenario) -> None:
    url = reverse("streams_admin:stream", args=[b"orders"])
    response = viewer_client.get(url + "?size=20")
    groups, entries = table(response.content, 0), table(response.content, 1)
    assert [g[0] for g in groups] == ["audit", "ship"]
    ship = next(g for g in groups if g[0] == "ship")
    assert ship[1:3] == ["2", "6"]
    assert ship[4:6] == (["10", "20"] if server().has_lag else ["n/a", "20 counted"])
    assert len(entries) == 20
    assert entries[0][0] == "1700000000029-0" and entries[19][0] == "1700000000010-0"
    assert "order.placed" in entries[0][2] and "id-29" in entries[0][2]
    assert '"n": 29' in entries[0][3]


def test_stream_paging_by_id_has_no_gap_and_no_duplicate(viewer_client, scenario) -> None:
    url = reverse("streams_admin:stream", args=[b"orders"])
    seen: list[str] = []
    page = viewer_client.get(url + "?size=20").content
    while True:
        seen += [row[0] for row in table(page, 1)]
        try:
            page = viewer_client.get(url + link(page, "Older →")).content
        except AssertionError:
            break
    assert seen == [f"{1_700_000_000_000 + n}-0" for n in range(29, -1, -1)]
    newer = viewer_client.get(url + link(page, "← Newer")).content
    assert [row[0] for row in table(newer, 1)][-1] == "1700000000010-0"


def test_stream_jump_to_id_and_time(viewer_client, scenario) -> None:
    url = reverse("streams_admin:stream", args=[b"orders"])
    by_id = table(viewer_client.get(url + "?at=1700000000005-0&size=20").content, 1)
    assert [row[0] for row in by_id][:2] == ["1700000000005-0", "1700000000004-0"]
    # 1700000000005 ms is 2023-11-14T22:13:20.005Z
    by_time = table(viewer_client.get(url + "?at=2023-11-14T22:13:20.005Z").content, 1)
    assert by_time[0][0] == "1700000000005-0"
    bad = viewer_client.get(url + "?at=yesterday-ish").content.decode()
    assert "is neither an entry ID nor a date-time" in bad


def test_entry_page_shows_where_it_is_pending(viewer_client, scenario) -> None:
    first_pending = scenario.xpending("orders", "ship")["min"].decode()
    url = reverse("streams_admin:entry", args=[b"orders", first_pending])
    page = viewer_client.get(url).content.decode()
    rows = table(page, 0)
    row = scenario.xpending_range("orders", "ship", first_pending, first_pending, 1)[0]
    assert rows == [["ship", row["consumer"].decode(), rows[0][2], "1"]]
    assert "order.placed" in page
    assert "XADD &quot;orders&quot; * &quot;event_id&quot;" in page


def test_entry_page_for_a_deleted_entry_says_so(viewer_client, scenario) -> None:
    gone = scenario.xpending("orders", "ship")["min"].decode()
    scenario.xdel("orders", gone)
    page = viewer_client.get(reverse("streams_admin:entry", args=[b"orders", gone])).content
    assert b"deleted or trimmed" in page
    assert table(page, 0)[0][0] == "ship"


def test_group_page_matches_xinfo_and_xpending(viewer_client, scenario: redis.Redis) -> None:
    url = reverse("streams_admin:group", args=[b"orders", b"ship"])
    page = viewer_client.get(url).content.decode()
    consumers = {row[0]: row for row in table(page, 0)}
    for info in scenario.xinfo_consumers("orders", "ship"):
        assert consumers[info["name"].decode()][1] == str(info["pending"])
    pending = table(page, 1)
    expected = scenario.xpending_range("orders", "ship", "-", "+", 100)
    assert [(row[0], row[1], row[3]) for row in pending] == [
        (e["message_id"].decode(), e["consumer"].decode(), str(e["times_delivered"]))
        for e in expected
    ]
    assert ">20<" in page  # lag


def test_group_pending_filtered_by_consumer_and_idle(viewer_client, scenario) -> None:
    url = reverse("streams_admin:group", args=[b"orders", b"ship"])
    only_b = table(viewer_client.get(url + "?consumer=worker-b").content, 1)
    assert {row[1] for row in only_b} == {"worker-b"} and len(only_b) == 4
    none_idle = viewer_client.get(url + "?idle=1h").content
    assert "No pending entries match this filter" in none_idle.decode()
    bad = viewer_client.get(url + "?idle=soon").content.decode()
    assert "is not a duration" in bad


def test_group_pending_pages_and_marks_poison_and_gone(viewer_client, r: redis.Redis, settings):
    settings.STREAMS_ADMIN = {"POISON_DELIVERIES": 3, "PAGE_SIZES": (2, 50), "PAGE_SIZE": 2}
    ids = [r.xadd("q", {"n": str(n)}) for n in range(5)]
    r.xgroup_create("q", "g", id="0")
    r.xreadgroup("g", "c", {"q": ">"})
    r.xclaim("q", "g", "c", 0, [ids[1]], retrycount=7)
    r.xdel("q", ids[2])
    url = reverse("streams_admin:group", args=[b"q", b"g"])
    first = viewer_client.get(url).content
    rows = table(first, 1)
    assert [row[0] for row in rows] == [ids[0].decode(), ids[1].decode()]
    assert "poison suspect" in rows[1][5]
    second = viewer_client.get(url + link(first, "Next →")).content
    rows = table(second, 1)
    assert [row[0] for row in rows] == [ids[2].decode(), ids[3].decode()]
    assert "data gone" in rows[0][5]


def test_search_looks_at_a_bounded_number_of_entries_and_goes_on(viewer_client, r, settings):
    settings.STREAMS_ADMIN = {"SEARCH_BUDGET": 300}
    ids = []
    for n in range(1000):
        note = f"<b>needle {n}</b>" if n in (100, 500, 900) else "hay"
        ids.append(r.xadd("big", {"note": note}).decode())
    pages, url = [], "/streams/big/?q=NEEDLE&size=50"
    while True:
        content = viewer_client.get(url).content
        text = " ".join(re.sub(r"<[^>]*>", "", content.decode()).split())  # as a user reads it
        pages.append(([row[0] for row in table(content, 1) if len(row) > 1], text))
        if "Search older →" not in pages[-1][1]:
            break
        url = "/streams/big/" + link(content, "Search older →")
    assert [len(rows) for rows, _ in pages] == [1, 1, 1, 0]
    assert [rows[0] for rows, _ in pages[:3]] == [ids[900], ids[500], ids[100]]
    assert "Searched 300 entries, back to " + ids[700] in pages[0][1]
    assert "Searched 100 entries, back to " + ids[0] in pages[3][1]
    assert "back to the stream's first entry" in pages[3][1]
    assert "&lt;b&gt;needle 900&lt;/b&gt;" in pages[0][1]  # escaped, as every value is


def test_search_by_event_type_and_field_fills_pages(viewer_client, scenario) -> None:
    scenario.xadd("orders", envelope("order.shipped", {"n": 99, "carrier": "ups"}))
    scenario.xadd("orders", {"carrier": "ups"})  # not an envelope: no event type
    shipped = table(viewer_client.get("/streams/orders/?type=order.shipped").content, 1)
    assert len(shipped) == 1 and "order.shipped" in shipped[0][2]
    ups = viewer_client.get("/streams/orders/?field=carrier&op=contains&value=up").content
    assert len(table(ups, 1)) == 1  # "carrier" only inside data for the envelope
    placed = viewer_client.get("/streams/orders/?type=order.placed&size=20").content
    assert len(table(placed, 1)) == 20 and "(a full page)" in placed.decode()
    rest = viewer_client.get("/streams/orders/" + link(placed, "Search older →")).content
    assert len(table(rest, 1)) == 10
    tail = link(placed, "Live tail")  # the tail goes on live with the same filters
    newest = scenario.xrevrange("orders", count=1)[0][0].decode()
    assert "type=order.placed" in tail and f"after={newest}" in tail
    nothing = viewer_client.get("/streams/orders/?type=nope").content.decode()
    assert "No entries match here." in nothing and "Searched 32 entries" in nothing


def test_lag_redis_cannot_give_is_counted_and_explained(viewer_client, r, settings) -> None:
    needs_lag(r)
    ids = [r.xadd("t", {"n": str(n)}) for n in range(5)]
    r.xgroup_create("t", "g", id="0")
    r.xreadgroup("g", "c", {"t": ">"}, count=1)
    r.xdel("t", ids[3])  # a deletion past last-delivered: Redis gives no lag
    assert r.xinfo_groups("t")[0]["lag"] is None
    url = reverse("streams_admin:group", args=[b"t", b"g"])
    page = viewer_client.get(url).content.decode()
    assert 'data-stat="lag" data-none="unknown">3</div>' in page  # entries 1, 2 and 4
    assert "Counted by the dashboard" in page and "Redis cannot count it" in page
    groups = table(viewer_client.get("/streams/t/").content)
    assert groups[0][5] == "3 counted"
    overview = table(viewer_client.get("/").content)
    assert overview[0][5] == "3 counted"
    settings.STREAMS_ADMIN = {"LAG_COUNT_LIMIT": 2}
    assert table(viewer_client.get("/streams/t/").content)[0][5] == "≥ 2 counted"
    assert table(viewer_client.get("/").content)[0][5] == "≥ 2 counted"
    assert 'data-none="unknown">≥ 2</div>' in viewer_client.get(url).content.decode()


def test_lag_counts_what_a_group_can_still_get_after_a_trim(viewer_client, r, settings) -> None:
    needs_lag(r)
    for n in range(10):
        r.xadd("t", {"n": str(n)})
    r.xgroup_create("t", "behind", id="0")
    r.xgroup_create("t", "ahead", id="0")
    r.xreadgroup("behind", "c", {"t": ">"}, count=2)
    r.xreadgroup("ahead", "c", {"t": ">"}, count=7)
    r.xtrim("t", maxlen=5, approximate=False)  # entries 2-4 go before "behind" read them
    # Redis 7 and Valkey count the 3 "behind" will never get; Redis 8.2 does not.
    assert {g["name"]: g["lag"] for g in r.xinfo_groups("t")} in (
        {b"behind": 8, b"ahead": 3}, {b"behind": 5, b"ahead": 3})
    settings.STREAMS_ADMIN = {"LAG_THRESHOLD": 6}  # Redis's 8 would be flagged; 5 is not
    overview = viewer_client.get("/").content
    assert table(overview)[0][5] == "5"
    assert "entries not yet delivered</span>" not in overview.decode()
    groups = {row[0]: row for row in table(viewer_client.get("/streams/t/").content)}
    assert groups["behind"][5] == "5 3 trimmed unread" and groups["ahead"][5] == "3"
    page = viewer_client.get(reverse("streams_admin:group", args=[b"t", b"behind"])).content
    assert "3 trimmed unread" in page.decode() and "it will never get them" in page.decode()
    r.xtrim("t", maxlen=0, approximate=False)
    groups = {row[0]: row for row in table(viewer_client.get("/streams/t/").content)}
    assert groups["behind"][5] == "0 8 trimmed unread"
    assert groups["ahead"][5] == "0 3 trimmed unread"


@pytest.mark.parametrize("url", ["/", "/streams/nope/", "/streams/nope/groups/g/",
                                 "/streams/nope/entries/1-0/"])
def test_login_required_everywhere(client, r: redis.Redis, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_non_staff_users_are_sent_to_login(client, django_user_model, r) -> None:
    user = django_user_model.objects.create_user("viewer", password="pw")
    client.force_login(user)
    assert client.get("/").status_code == 302


def test_missing_things_are_a_404_page_not_a_500(viewer_client, scenario) -> None:
    assert viewer_client.get("/streams/missing/").status_code == 404
    assert viewer_client.get("/streams/orders/groups/missing/").status_code == 404
    assert viewer_client.get("/streams/orders/entries/not-an-id/").status_code == 404
    assert viewer_client.get("/streams/~!!!/").status_code == 404
    assert viewer_client.get("/streams/orders/entries/1-1/").status_code == 200


def test_htmx_requests_get_the_partial(viewer_client, scenario) -> None:
    url = reverse("streams_admin:stream", args=[b"orders"])
    partial = viewer_client.get(url + "?before=1700000000010-0",
                                headers={"HX-Request": "true", "HX-Target": "entries"})
    body = partial.content.decode()
    assert body.lstrip().startswith('<div id="entries"') and "<html" not in body
    assert table(body)[0][0] == "1700000000009-0"


def test_trimmed_pending_entries_are_marked_gone(viewer_client, r: redis.Redis) -> None:
    ids = [r.xadd("q", {"n": str(n)}) for n in range(4)]
    r.xgroup_create("q", "g", id="0")
    r.xreadgroup("g", "c", {"q": ">"})
    r.xtrim("q", maxlen=1, approximate=False)
    rows = table(viewer_client.get(reverse("streams_admin:group", args=[b"q", b"g"])).content, 1)
    flags = {row[0]: row[5] for row in rows}
    assert [flags[i.decode()] for i in ids] == ["data gone"] * 3 + [""]


def test_htmx_refresh_of_the_whole_screen_gets_the_page(viewer_client, scenario) -> None:
    url = reverse("streams_admin:group", args=[b"orders", b"ship"])
    page = viewer_client.get(url, headers={"HX-Request": "true", "HX-Target": "screen"})
    assert '<div id="screen"' in page.content.decode()
