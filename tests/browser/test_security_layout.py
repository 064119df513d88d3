"""In a real Chromium against Daphne: the Content-Security-Policy blocks nothing the pages
need (and the behaviours moved out of inline scripts still work), the login lockout page,
button contrast in both colour schemes, and the overview on a 390 px phone."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from playwright.sync_api import Browser, Page, expect

from streams_admin import demo
from streams_admin.names import to_token
from tests.browser.conftest import Dashboard
from tests.browser.test_flow import log_in
from tests.redis_server import RedisServer

pytestmark = pytest.mark.browser

TASKS, GROUP = "agent:stream:task.created", "billing-group"
# Reports every violation to the page, whatever the console says.
WATCH = """window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => window.__violations.push(
  `${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));"""


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


def _page(browser: Browser, dashboard: Dashboard, **options) -> Iterator[Page]:
    context = browser.new_context(base_url=dashboard.url, **options)
    context.set_default_timeout(8000)
    context.add_init_script(WATCH)
    page = context.new_page()
    page.console = []  # type: ignore[attr-defined]
    page.on("console", lambda message: page.console.append(message.text))  # type: ignore[attr-defined]
    yield page
    context.close()


@pytest.fixture
def page(browser: Browser, dashboard: Dashboard) -> Iterator[Page]:
    yield from _page(browser, dashboard, viewport={"width": 1400, "height": 900})


@pytest.fixture
def phone(browser: Browser, dashboard: Dashboard) -> Iterator[Page]:
    yield from _page(browser, dashboard, viewport={"width": 390, "height": 844},
                     device_scale_factor=2, is_mobile=True, has_touch=True)


def violations(page: Page) -> list[str]:
    reported = page.evaluate("window.__violations")
    console = [text for text in page.console  # type: ignore[attr-defined]
               if "Content Security Policy" in text or "Content-Security-Policy" in text]
    return reported + console


# -- CSP ----------------------------------------------------------------------------------


def test_no_page_breaks_the_content_security_policy(page: Page, dashboard: Dashboard,
                                                    redis_client: redis.Redis) -> None:
    demo.seed(redis_client)
    entry_id = redis_client.xrange(TASKS, count=1)[0][0].decode()
    log_in(page, dashboard)
    # The policy is there and enforced: a script injected into the page does not run.
    page.evaluate("""() => { const s = document.createElement("script");
                             s.textContent = "window.__ran = true"; document.head.append(s); }""")
    page.wait_for_function("window.__violations.length > 0")
    assert page.evaluate("window.__ran") is None
    assert page.evaluate("window.__violations")[0].startswith("script-src")
    page.evaluate("window.__violations = []")
    page.console.clear()  # type: ignore[attr-defined]
    group = f"/streams/{to_token(TASKS.encode())}/groups/{to_token(GROUP.encode())}/"
    stream = f"/streams/{to_token(TASKS.encode())}/"
    pages = ["/", stream, f"{stream}entries/{entry_id}/", group, f"{stream}tail/",
             "/tail/?pattern=agent:stream:*", "/dead-letters/", "/audit/", f"{stream}trim/",
             f"{stream}delete/", f"{group}destroy/", f"{group}set-id/?position=0",
             f"{group}ack-matching/", f"{group}consumers/{to_token(b'billing-7')}/delete/",
             "/admin/"]
    for path in pages:
        page.goto(path)
        page.wait_for_load_state("load")
        assert violations(page) == [], path
    # The sockets (connect-src 'self') carry the live pages.
    page.goto(f"{stream}tail/")
    expect(page.locator("#tail-state")).to_have_text("live")
    entry = redis_client.xadd(TASKS, demo.envelope("task.created", {"n": 1})).decode()
    expect(page.locator(f'#tail-rows tr[data-id="{entry}"]')).to_be_visible()
    page.goto("/")
    length = page.locator(f'tr[data-key="{to_token(TASKS.encode())}"] [data-stat="length"]')
    redis_client.xadd(TASKS, demo.envelope("task.created", {"n": 2}))
    expect(length).to_have_text(str(redis_client.xlen(TASKS)))
    assert violations(page) == []


def test_the_behaviours_moved_out_of_inline_scripts_still_work(
        page: Page, dashboard: Dashboard, redis_client: redis.Redis) -> None:
    demo.seed(redis_client)
    log_in(page, dashboard)
    stream = f"/streams/{to_token(TASKS.encode())}/"
    group = f"{stream}groups/{to_token(GROUP.encode())}/"

    page.goto(group)  # select all
    boxes = page.locator("#pending tbody input[type=checkbox]")
    expect(boxes.first).not_to_be_checked()
    page.get_by_label("select all").check()
    assert boxes.count() > 1 and all(boxes.nth(i).is_checked() for i in range(boxes.count()))

    page.goto(stream)  # the page size applies as soon as it is chosen
    page.get_by_label("Page size").select_option("20")
    expect(page.locator("#entries td.id a")).to_have_count(20)
    expect(page).to_have_url(re.compile(r"[?&]size=20"))

    # A long job continues on its own: more pending entries than one request handles.
    pipe = redis_client.pipeline(transaction=False)
    for n in range(20_500):
        pipe.xadd("big", {"n": str(n)})
    pipe.execute()
    redis_client.xgroup_create("big", "g", id="0")
    redis_client.xreadgroup("g", "dead", {"big": ">"}, count=20_500)
    page.goto("/streams/big/groups/g/")
    form = page.get_by_role("form", name="Claim all idle entries")
    form.get_by_label("Claim all to a new consumer").fill("alive")
    form.get_by_label("idle ≥").fill("0")
    form.get_by_role("button", name="Claim all").click()
    expect(page.get_by_role("status").first).to_contain_text("20,500 in all, over several steps")
    assert redis_client.xpending("big", "g")["consumers"] == [
        {"name": b"alive", "pending": 20_500}]
    assert violations(page) == []


def test_a_lockout_is_a_page_through_daphne_and_others_still_log_in(
        page: Page, dashboard: Dashboard, redis_client: redis.Redis, artifacts: Path) -> None:
    for _ in range(10):
        page.goto("/login/")
        page.locator("#id_username").fill("mallory")
        page.locator("#id_password").fill("guess")
        page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Too many failed attempts")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("Try again in 15 minutes")
    page.screenshot(path=artifacts / "login-locked-out.png")
    assert violations(page) == []
    log_in(page, dashboard)  # another username from the same address is not locked


# -- colours and the narrow layout --------------------------------------------------------

CONTRAST = """(el) => {
  const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = (c) => { const v = rgb(c).map((x) => { x /= 255;
    return x <= 0.04045 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; };
  const s = getComputedStyle(el);
  const [a, b] = [lum(s.color), lum(s.backgroundColor)].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05);
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_buttons_are_readable_in_both_colour_schemes(page: Page, dashboard: Dashboard,
                                                     redis_client: redis.Redis, scheme) -> None:
    demo.seed(redis_client)
    page.emulate_media(color_scheme=scheme)
    log_in(page, dashboard)
    buttons = {"primary": page.get_by_role("button", name="Filter"),
               "link button": page.get_by_role("link", name="Firehose: watch all streams live"),
               "light button": page.get_by_role("button", name="Log out")}
    ratios = {name: button.evaluate(CONTRAST) for name, button in buttons.items()}
    page.goto(f"/streams/{to_token(TASKS.encode())}/delete/")
    ratios["danger"] = page.get_by_role("button", name="Delete the stream").evaluate(CONTRAST)
    assert {name: ratio for name, ratio in ratios.items() if ratio < 4.5} == {}


def test_the_overview_on_a_phone_shows_pending_and_lag_in_compact_rows(
        phone: Page, dashboard: Dashboard, redis_client: redis.Redis, artifacts: Path) -> None:
    demo.seed(redis_client)
    log_in(phone, dashboard)
    row = phone.locator("#streams tbody tr", has_text=TASKS)
    for label in ("Length", "Pending", "Worst lag"):
        cell = phone.locator("#streams thead th", has_text=label)
        box = cell.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, label
        expect(cell).to_be_visible()
    for stat in ("length", "pending", "worst-lag"):
        box = row.locator(f'[data-stat="{stat}"]').bounding_box()
        assert box and box["x"] + box["width"] <= 390, stat
    heights = [phone.locator("#streams tbody tr").nth(i).bounding_box()["height"]
               for i in range(phone.locator("#streams tbody tr").count())]
    assert max(heights) <= 80, heights
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scroll
    for scheme in ("light", "dark"):
        phone.emulate_media(color_scheme=scheme)
        phone.screenshot(path=artifacts / f"phone-overview-{scheme}.png", full_page=True)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_screenshots_of_the_main_pages(page: Page, phone: Page, dashboard: Dashboard,
                                       redis_client: redis.Redis, artifacts: Path, scheme) -> None:
    """Not an assertion of looks: the pictures a reviewer looks at (tests/artifacts)."""
    demo.seed(redis_client)
    stream = f"/streams/{to_token(TASKS.encode())}/"
    for name, tab in (("desktop", page), ("phone", phone)):
        tab.emulate_media(color_scheme=scheme)
        log_in(tab, dashboard)
        for shot, path in (("overview", "/"), ("stream", stream),
                           ("group", f"{stream}groups/{to_token(GROUP.encode())}/")):
            tab.goto(path)
            tab.screenshot(path=artifacts / f"look-{name}-{scheme}-{shot}.png",
                           full_page=shot == "overview")
        assert violations(tab) == []
