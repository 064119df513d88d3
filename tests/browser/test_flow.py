"""The operator's key flow in a real Chromium against the real server under Daphne."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from playwright.sync_api import Browser, Page, expect

from streams_admin import demo
from tests.browser.conftest import ROOT, Dashboard
from tests.redis_server import RedisServer

pytestmark = pytest.mark.browser

STREAM = "agent:stream:task.created"
GROUP = "billing-group"
HEALTHY, HOSTILE = "billing-1", "<b>billing-7</b>"
VIEWPORT = {"width": 1400, "height": 900}


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)  # bytes: the demo writes invalid UTF-8
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def page(browser: Browser, dashboard: Dashboard) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT, base_url=dashboard.url)
    context.set_default_timeout(5000)
    page = context.new_page()
    yield page
    context.close()


def log_in(page: Page, dashboard: Dashboard) -> None:
    page.goto("/login/")
    page.locator("#id_username").fill(dashboard.username)
    page.locator("#id_password").fill(dashboard.password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Streams", exact=True)).to_be_visible()


def seed_flow(r: redis.Redis) -> None:
    """12 task envelopes; one group whose two consumers hold 5 and 3 unacknowledged entries."""
    for i in range(12):
        r.xadd(STREAM, {
            "event_id": f"00000000-0000-4000-8000-{i:012d}",
            "event_type": "task.created",
            "timestamp": datetime(2026, 1, 2, 3, 4, i, tzinfo=UTC).isoformat(),
            "data": json.dumps({"task_id": f"task-{i}", "priority": "high"}),
        })
    r.xgroup_create(STREAM, GROUP, id="0")
    r.xreadgroup(GROUP, HEALTHY, {STREAM: ">"}, count=5)  # no XACK: stays pending
    r.xreadgroup(GROUP, HOSTILE, {STREAM: ">"}, count=3)


def pending_ids(r: redis.Redis, consumer: str) -> list[str]:
    rows = r.xpending_range(STREAM, GROUP, "-", "+", 100, consumername=consumer)
    return [row["message_id"].decode() for row in rows]


def test_login_overview_stream_entry_group_pending_by_consumer(
    page: Page, dashboard: Dashboard, redis_client: redis.Redis, artifacts: Path
) -> None:
    seed_flow(redis_client)
    held = pending_ids(redis_client, HOSTILE)
    assert len(held) == 3 and len(pending_ids(redis_client, HEALTHY)) == 5

    log_in(page, dashboard)
    row = page.locator("#streams tbody tr", has_text=STREAM)
    expect(row.locator("[data-stat=length]")).to_have_text("12")
    expect(row.locator("[data-stat=pending]")).to_have_text("8")
    page.screenshot(path=artifacts / "flow-1-overview.png", full_page=True)

    row.get_by_role("link", name=STREAM).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(STREAM)
    entry_links = page.locator("#entries td.id a")
    expect(entry_links).to_have_count(12)
    newest_id = redis_client.xrevrange(STREAM, count=1)[0][0].decode()
    expect(entry_links.first).to_have_text(newest_id)  # newest first
    page.screenshot(path=artifacts / "flow-2-stream.png", full_page=True)

    page.get_by_label("Text in any field name or value").fill("task-7")
    page.get_by_role("button", name="Search").click()
    expect(entry_links).to_have_count(1)
    task_7 = redis_client.xrange(STREAM)[7][0].decode()
    expect(entry_links).to_have_text([task_7])
    expect(page.get_by_role("status")).to_contain_text("Searched 12 entries")
    expect(page.get_by_role("status")).to_contain_text("1 match")
    expect(page).to_have_url(re.compile(r"[?&]q=task-7"))  # the search is a link
    page.get_by_role("link", name="Clear the search").click()
    expect(entry_links).to_have_count(12)

    entry_links.first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text(newest_id)
    event_type = page.locator(".card", has_text="Event type").locator(".value")
    expect(event_type).to_have_text("task.created")
    expect(page.locator("pre").first).to_contain_text('"task_id": "task-11"')
    expect(page.get_by_text("Not pending in any group")).to_be_visible()  # never delivered
    page.screenshot(path=artifacts / "flow-3-entry.png", full_page=True)

    page.locator(".crumbs").get_by_role("link", name=STREAM).click()
    page.get_by_role("link", name=GROUP, exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(GROUP)
    pending_rows = page.locator("#pending tbody tr")
    expect(pending_rows).to_have_count(8)
    page.screenshot(path=artifacts / "flow-4-group.png", full_page=True)

    page.locator("select[name=consumer]").select_option(label=f"{HOSTILE} (3)")
    page.get_by_role("button", name="Filter").click()
    expect(pending_rows).to_have_count(len(held))
    expect(pending_rows.locator("td.id")).to_have_text(held)
    expect(pending_rows.locator("td.key")).to_have_text([HOSTILE] * len(held))  # escaped
    expect(page.locator("select[name=consumer] option:checked")).to_have_text(f"{HOSTILE} (3)")
    expect(page).to_have_url(re.compile(r"[?&]consumer="))  # the filtered view is a link
    expect(page.locator("#pending .pager a", has_text="Next")).to_have_count(0)  # one page
    page.screenshot(path=artifacts / "flow-5-pending-by-consumer.png", full_page=True)


def test_readme_screenshots_on_demo_data(
    page: Page, dashboard: Dashboard, redis_client: redis.Redis, artifacts: Path
) -> None:
    """UPDATE_SCREENSHOTS=1 also copies the 1400x900 shots to docs/screenshots/ for the README."""
    demo.seed(redis_client)
    log_in(page, dashboard)
    shots = ROOT / "docs" / "screenshots"

    expect(page.locator("#streams tbody tr", has_text=STREAM)).to_be_visible()
    _shoot(page, artifacts, shots, "overview")

    page.locator("#streams").get_by_role("link", name=STREAM, exact=True).click()
    expect(page.locator("#entries td.id a")).not_to_have_count(0)
    _shoot(page, artifacts, shots, "stream")

    page.get_by_role("link", name=GROUP, exact=True).click()
    expect(page.locator("#pending tbody tr").first).to_be_visible()
    _shoot(page, artifacts, shots, "group")

    page.goto("/tail/?pattern=agent:stream:*")
    expect(page.locator("#tail-state")).to_have_text("live")
    for n in range(12):
        kind = ("task.created", "query.completed", "notification.sent")[n % 3]
        redis_client.xadd(demo.PREFIX + kind, demo.envelope(kind, {"n": n, "source": "demo"}))
    expect(page.locator("#tail-rows tr")).to_have_count(12)
    expect(page.locator("#tail-rate")).not_to_have_text("0")  # the rate ticks every second
    _shoot(page, artifacts, shots, "tail")

    # Hostile names and values: shown as text, and no script of theirs ever runs.
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto("/")
    page.get_by_role("link", name=demo.HOSTILE_KEY, exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(demo.HOSTILE_KEY)
    page.screenshot(path=artifacts / "demo-hostile-stream.png", full_page=True)
    page.get_by_role("link", name="<i>group</i>", exact=True).click()
    expect(page.locator("#pending tbody tr")).to_have_count(2)
    page.screenshot(path=artifacts / "demo-hostile-group.png", full_page=True)
    assert dialogs == []


def _shoot(page: Page, artifacts: Path, shots: Path, name: str) -> None:
    page.screenshot(path=artifacts / f"demo-{name}-full.png", full_page=True)
    page.screenshot(path=artifacts / f"demo-{name}.png")  # the 1400x900 viewport
    # Opt-in: the shots carry times and uptimes, so every run would dirty the committed PNGs.
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(artifacts / f"demo-{name}.png", shots / f"{name}.png")
