"""Live pages in a real Chromium against Daphne: the tail shows new rows, pauses and resumes;
the overview's counts move without a reload."""

from __future__ import annotations

import re
import time

import pytest
import redis
from playwright.sync_api import expect

from streams_admin.names import to_token
from tests.browser.test_flow import log_in, page, redis_client  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser


def test_tail_shows_new_entries_and_pauses(page, dashboard, redis_client: redis.Redis,  # noqa: F811
                                           artifacts) -> None:
    redis_client.xadd("orders", {"event_id": "e0", "event_type": "order.placed",
                                 "timestamp": "2026-11-28T10:00:00Z", "data": '{"n": 0}'})
    log_in(page, dashboard)
    page.goto(f"/streams/{to_token(b'orders')}/")
    page.get_by_role("link", name="Live tail").click()
    expect(page.locator("#tail-state")).to_have_text("live")
    expect(page.locator("#tail-empty")).to_contain_text("Waiting for new entries")

    published = time.monotonic()
    entry_id = redis_client.xadd("orders", {"event_id": "e1", "event_type": "order.paid",
                                            "timestamp": "2026-11-28T10:00:01Z",
                                            "data": '{"n": 1, "note": "<i>hi</i>"}'}).decode()
    row = page.locator(f'#tail-rows tr[data-id="{entry_id}"]')
    expect(row).to_be_visible(timeout=1000)
    assert time.monotonic() - published < 1.0
    expect(row).to_contain_text("order.paid")
    expect(page.locator("#tail-rows tr")).to_have_count(1)  # started after the page's newest
    expect(page.locator("#tail-empty")).to_be_hidden()

    page.get_by_role("button", name="Pause").click()
    held = [redis_client.xadd("orders", {"n": str(n)}).decode() for n in range(3)]
    expect(page.locator("#tail-paused")).to_have_text("3 new while paused")
    expect(page.locator("#tail-rows tr")).to_have_count(1)
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#tail-rows tr")).to_have_count(4)
    expect(page.locator("#tail-paused")).to_be_hidden()
    expect(page.locator("#tail-rows tr").first).to_have_attribute("data-id", held[-1])
    page.screenshot(path=artifacts / "tail.png")


def test_overview_counts_update_live(page, dashboard, redis_client: redis.Redis) -> None:  # noqa: F811
    redis_client.xadd("counted", {"n": "0"})
    log_in(page, dashboard)
    length = page.locator('tr[data-key="counted"] [data-stat="length"]')
    expect(length).to_have_text("1")
    for n in range(4):
        redis_client.xadd("counted", {"n": str(n)})
    expect(length).to_have_text("5", timeout=4000)
    expect(page.locator('tr[data-key="counted"] [data-stat="rate"]')).to_contain_text("/s")


def test_firehose_keeps_rows_of_several_streams_newest_on_top(
    page, dashboard, redis_client: redis.Redis  # noqa: F811
) -> None:
    for key in ("fh:a", "fh:b", "fh:c"):
        redis_client.xadd(key, {"n": "seed"})
    log_in(page, dashboard)
    page.goto("/tail/?pattern=fh:*")
    expect(page.locator("#tail-state")).to_have_text("live")
    written = []
    for n in range(30):  # three readers: their frames reach the page in any order
        written.append(redis_client.xadd(f"fh:{'abc'[n % 3]}", {"n": str(n)}).decode())
        time.sleep(0.007)
    rows = page.locator("#tail-rows tr")
    expect(rows).to_have_count(30)
    shown = [rows.nth(i).get_attribute("data-id") for i in range(30)]
    assert shown == written[::-1]


def test_firehose_reconnects_and_resumes_every_stream(
    page, dashboard, redis_client: redis.Redis  # noqa: F811
) -> None:
    for key in ("rc:a", "rc:b"):
        redis_client.xadd(key, {"n": "seed"})
    sockets, from_page = [], []

    def through(ws) -> None:  # a real connection to Daphne that the test can cut
        server = ws.connect_to_server()
        ws.on_message(lambda message: (from_page.append(message), server.send(message)))
        sockets.append((ws, server))

    page.route_web_socket(re.compile(r"/ws/tail/"), through)
    log_in(page, dashboard)
    page.goto("/tail/?pattern=rc:*")
    expect(page.locator("#tail-state")).to_have_text("live")
    written = [redis_client.xadd(key, {"n": "before"}).decode() for key in ("rc:a", "rc:b")]
    rows = page.locator("#tail-rows tr")
    expect(rows).to_have_count(2)

    ws, server = sockets[-1]
    server.close()
    ws.close()  # the connection drops; the page reconnects by itself
    written += [redis_client.xadd(key, {"n": "away"}).decode() for key in ("rc:b", "rc:a", "rc:b")]
    expect(rows).to_have_count(5)
    assert len(sockets) == 2
    assert [rows.nth(i).get_attribute("data-id") for i in range(5)] == written[::-1]
    assert any('"resume"' in message for message in from_page)  # each stream's own position
    expect(page.locator("#tail-state")).to_have_text("live")
