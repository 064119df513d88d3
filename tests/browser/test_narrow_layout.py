"""The stream, group, entry, dead-letter and audit pages on a 390 × 844 phone, in both colour
schemes, with the demo data: nothing scrolls sideways (neither the page nor a table in it), and
the figures an operator on call compares are on screen. The pictures land in tests/artifacts
(narrow-*.png) for a reviewer; the desktop keeps every column."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from playwright.sync_api import Browser, Locator, Page, expect

from streams_admin import demo
from streams_admin.names import to_token
from tests.browser.conftest import Dashboard
from tests.browser.test_flow import log_in
from tests.redis_server import RedisServer

pytestmark = pytest.mark.browser

WIDTH = 390
TASKS, GROUP = "agent:stream:task.created", "billing-group"
STREAM = f"/streams/{to_token(TASKS.encode())}/"
GROUP_PAGE = f"{STREAM}groups/{to_token(GROUP.encode())}/"
DEAD = "agent:stream:deadletter:document.processed"
SCHEMES = pytest.mark.parametrize("scheme", ["light", "dark"])

# What sticks out to the right of the window, and which boxes scroll sideways inside the page
# (a .table-wrap scrolls where the page would not: the page-wide check alone misses it).
STICKING_OUT = """(width) => [...document.body.querySelectorAll("*")].filter((el) => {
  const box = el.getBoundingClientRect();
  return box.width > 0 && box.height > 0 && box.right > width + 0.5;
}).slice(0, 5).map((el) =>
  `${el.tagName.toLowerCase()}.${el.className}: ${el.textContent.trim().slice(0, 40)}`)"""
SCROLLING = """() => [...document.querySelectorAll(".table-wrap, pre, .fields .fvalue")]
  .filter((el) => el.scrollWidth > el.clientWidth + 1)
  .map((el) => `${el.tagName.toLowerCase()}.${el.className} ${el.scrollWidth}>${el.clientWidth}`)"""


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    demo.seed(client)
    yield client
    client.close()


def _tab(browser: Browser, dashboard: Dashboard, **options) -> Iterator[Page]:
    context = browser.new_context(base_url=dashboard.url, **options)
    context.set_default_timeout(8000)
    tab = context.new_page()
    log_in(tab, dashboard)
    yield tab
    context.close()


@pytest.fixture
def phone(browser: Browser, dashboard: Dashboard, redis_client: redis.Redis) -> Iterator[Page]:
    yield from _tab(browser, dashboard, viewport={"width": WIDTH, "height": 844},
                    device_scale_factor=2, is_mobile=True, has_touch=True)


@pytest.fixture
def desktop(browser: Browser, dashboard: Dashboard, redis_client: redis.Redis) -> Iterator[Page]:
    yield from _tab(browser, dashboard, viewport={"width": 1280, "height": 900})


def on_screen(locator: Locator) -> None:
    """Seen without scrolling sideways: visible, and its box inside the window's width."""
    expect(locator).to_be_visible()
    box = locator.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= WIDTH + 0.5, box


def no_sideways_scroll(page: Page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH
    assert page.evaluate(STICKING_OUT, WIDTH) == []
    assert page.evaluate(SCROLLING) == []


def shoot(page: Page, artifacts: Path, name: str, scheme: str) -> None:
    page.screenshot(path=artifacts / f"narrow-{name}-{scheme}.png", full_page=True)


def table_with(page: Page, label: str) -> Locator:
    return page.locator("table", has=page.get_by_role("columnheader", name=label, exact=True))


def column(table: Locator, label: str) -> Locator:
    # By role: a table laid out as a grid on a phone is still a table to a screen reader.
    return table.get_by_role("columnheader", name=label, exact=True)


@SCHEMES
def test_the_stream_page_shows_each_groups_pending_and_lag(
        phone: Page, artifacts: Path, scheme: str) -> None:
    phone.emulate_media(color_scheme=scheme)
    phone.goto(STREAM)
    groups = table_with(phone, "Lag")
    for label in ("Group", "Pending", "Lag"):
        on_screen(column(groups, label))
    billing = groups.locator("tbody tr", has_text=GROUP)
    on_screen(billing.locator("td").last)  # its lag
    expect(billing.locator("td").last).to_contain_text("15")
    # An entry: its ID and time on one line, its event type and data wrapping under them.
    first = phone.locator("#entries tbody tr").first
    on_screen(first.locator("td.id"))
    on_screen(first.get_by_text("task.created", exact=True))
    on_screen(first.locator("details summary"))
    height = first.bounding_box()["height"]
    assert height <= 130, height
    for name in ("Create group", "Search", "Delete selected…"):
        on_screen(phone.get_by_role("button", name=name))
    on_screen(phone.get_by_role("link", name="Live tail"))
    no_sideways_scroll(phone)
    shoot(phone, artifacts, "stream", scheme)


@SCHEMES
def test_the_group_page_shows_idle_and_deliveries_and_its_actions_are_in_reach(
        phone: Page, redis_client: redis.Redis, artifacts: Path, scheme: str) -> None:
    phone.emulate_media(color_scheme=scheme)
    phone.goto(GROUP_PAGE)
    pending = phone.locator("#pending table")
    for label in ("ID", "Consumer", "Idle", "Deliveries"):
        on_screen(column(pending, label))
    first = redis_client.xpending_range(TASKS, GROUP, "-", "+", 1)[0]
    poison = pending.locator("tbody tr.poison").first  # the demo's first held entry
    expect(poison.locator("td.id")).to_have_text(first["message_id"].decode())
    on_screen(poison.locator("td.num").last)  # its deliveries
    expect(poison.locator("td.num").last).to_have_text(str(first["times_delivered"]))
    on_screen(poison.get_by_text("poison suspect"))
    on_screen(pending.locator("tbody tr.gone").get_by_text("data gone"))
    consumers = table_with(phone, "Inactive")
    for label in ("Pending", "Idle", "Inactive"):
        on_screen(column(consumers, label))
    no_sideways_scroll(phone)
    shoot(phone, artifacts, "group", scheme)
    # The buttons work from a phone: ack the first poison entry.
    held = redis_client.xpending(TASKS, GROUP)["pending"]
    suspects = pending.locator("tbody tr.poison").count()
    poison.locator("input[type=checkbox]").check()
    ack = phone.get_by_role("button", name="Ack", exact=True)
    on_screen(ack)
    ack.click()
    expect(phone.locator("#pending tbody tr.poison")).to_have_count(suspects - 1)
    assert redis_client.xpending(TASKS, GROUP)["pending"] == held - 1


@SCHEMES
def test_the_entry_page_shows_where_it_is_pending_with_its_actions(
        phone: Page, redis_client: redis.Redis, artifacts: Path, scheme: str) -> None:
    entry_id = redis_client.xpending_range(TASKS, GROUP, "-", "+", 1)[0]["message_id"].decode()
    phone.emulate_media(color_scheme=scheme)
    phone.goto(f"{STREAM}entries/{entry_id}/")
    pending_in = table_with(phone, "Deliveries")
    for label in ("Group", "Consumer", "Idle", "Deliveries"):
        on_screen(column(pending_in, label))
    row = pending_in.locator("tbody tr", has_text=GROUP)
    on_screen(row.locator("td.num").last)
    for name in ("Ack", "Requeue", "Dead-letter", "Claim"):
        on_screen(row.get_by_role("button", name=name, exact=True))
    on_screen(phone.locator("#xadd"))
    no_sideways_scroll(phone)
    shoot(phone, artifacts, "entry", scheme)


@SCHEMES
def test_dead_letters_show_each_letters_deliveries_and_error(
        phone: Page, artifacts: Path, scheme: str) -> None:
    phone.emulate_media(color_scheme=scheme)
    phone.goto(f"/dead-letters/?key={to_token(DEAD.encode())}")
    letters = phone.locator("#redrive-form tbody tr")
    expect(letters).to_have_count(5)
    first = letters.first
    on_screen(first.locator("td.id"))
    on_screen(first.locator("td.num"))  # its deliveries
    on_screen(first.get_by_text("max_deliveries"))  # why
    on_screen(first.get_by_text("TimeoutError: parser timeout"))
    on_screen(phone.get_by_role("button", name="Re-drive selected"))
    no_sideways_scroll(phone)
    shoot(phone, artifacts, "dead-letters", scheme)


@SCHEMES
def test_the_audit_log_shows_who_did_what_and_how_it_ended(
        phone: Page, artifacts: Path, scheme: str) -> None:
    phone.goto(STREAM)  # something to audit, done from the phone
    group = f"on-call-{scheme}"  # the audit log outlives a test: this row is this test's
    phone.get_by_label("New group name").fill(group)
    phone.get_by_role("button", name="Create group").click()
    expect(table_with(phone, "Lag")).to_contain_text(group)
    phone.emulate_media(color_scheme=scheme)
    phone.goto("/audit/")
    row = phone.locator("table tbody tr", has_text=group)
    on_screen(row.get_by_text("create-group"))
    on_screen(row.get_by_text(f"Created group {group}", exact=False))
    on_screen(row.get_by_role("link", name=TASKS))
    on_screen(phone.get_by_role("button", name="Filter"))
    no_sideways_scroll(phone)
    shoot(phone, artifacts, "audit", scheme)


def test_the_desktop_keeps_every_column(desktop: Page, redis_client: redis.Redis) -> None:
    desktop.goto(STREAM)
    for label in ("Consumers", "Last delivered", "Entries read", "Lag"):
        expect(column(table_with(desktop, "Lag"), label)).to_be_visible()
    for label in ("Time (UTC)", "Event", "Data / fields"):
        expect(column(desktop.locator("#entries table"), label)).to_be_visible()
    desktop.goto(GROUP_PAGE)
    for label in ("Entry time (UTC)", "Flags"):
        expect(column(desktop.locator("#pending table"), label)).to_be_visible()
    # A table is still a table there: a pending entry is one line of cells.
    row = desktop.locator("#pending tbody tr").first
    assert row.evaluate("(tr) => getComputedStyle(tr).display") == "table-row"
