"""The history charts in a real Chromium against Daphne, on 7 days of history written in the
sampler's layout (tests/history_fill.py) with a 30-minute outage: the charts draw, hovering
shows values in the legend, the page's range comes with the page and a switch fetches another,
the short ranges extend live,
dark mode and a 390 px phone are readable, and no Content-Security-Policy violation happens.

UPDATE_SCREENSHOTS=1 also copies the shots to docs/screenshots/ for the README."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import ROOT, Dashboard, serve
from tests.browser.test_flow import log_in
from tests.redis_server import RedisServer

pytestmark = pytest.mark.browser
STREAM, GROUP = "orders", "billing"
CONSUMERS = ["worker-1", "worker-2", "<b>worker-3</b></script>"]  # embedded in the page too
CSP_PROBE = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
"""


@pytest.fixture(scope="module")
def charted(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Dashboard]:
    """A dashboard of its own (its database gets the history), the stream in Redis."""
    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    for n in range(20):
        r.xadd(STREAM, {"n": str(n)})
    r.xgroup_create(STREAM, GROUP, id="0")
    for consumer in CONSUMERS:
        r.xreadgroup(GROUP, consumer, {STREAM: ">"}, count=3)
    tmp = tmp_path_factory.mktemp("charts")
    with serve(redis_server.url, tmp) as served:
        env = {**os.environ, "SECRET_KEY": "test", "DJANGO_SETTINGS_MODULE": "dashboard.settings",
               "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}"}
        subprocess.run([sys.executable, "-m", "tests.history_fill", STREAM, GROUP, *CONSUMERS,
                        "--outage", "3000", "1800"], cwd=ROOT, env=env, check=True,
                       capture_output=True, timeout=120)
        yield served
    r.close()


OPEN: list = []  # the contexts a test opened, closed after it


@pytest.fixture(autouse=True)
def close_tabs() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


def tab(browser: Browser, dashboard: Dashboard, **options) -> Page:
    context = browser.new_context(base_url=dashboard.url, **{
        "viewport": {"width": 1400, "height": 900}, **options})
    context.set_default_timeout(10_000)
    OPEN.append(context)
    page = context.new_page()
    page.add_init_script(CSP_PROBE)
    log_in(page, dashboard)
    return page


def group_page(page: Page, query: str = "") -> None:
    page.goto(f"/streams/{STREAM}/groups/{GROUP}/{query}")
    expect(page.locator("figure[data-chart] canvas")).to_have_count(6)
    expect(page.locator("[data-chart-status]")).to_have_text("")


def points(page: Page, chart: str) -> int:
    return int(page.locator(f'figure[data-chart^="{chart}"]').get_attribute("data-points") or 0)


def until(page: Page, expression: str, ok: Callable[[Any], bool], seconds: float = 20) -> None:
    """Polls expression (page.wait_for_function would eval a string: the CSP refuses that)."""
    deadline = time.monotonic() + seconds
    while not ok(value := page.evaluate(expression)):
        assert time.monotonic() < deadline, f"{expression} is still {value!r}"
        page.wait_for_timeout(200)


def no_csp_violation(page: Page) -> None:
    assert page.evaluate("window.cspViolations") == []


def shoot(page: Page, artifacts: Path, name: str, full_page: bool = False) -> None:
    path = artifacts / f"{name}.png"
    page.screenshot(path=path, full_page=full_page)
    if os.environ.get("UPDATE_SCREENSHOTS"):
        shutil.copy(path, ROOT / "docs" / "screenshots" / path.name)


def test_group_charts_draw_hover_and_switch_range(browser: Browser, charted: Dashboard,
                                                 artifacts: Path) -> None:
    page = tab(browser, charted)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    group_page(page)
    figures = page.locator("figure[data-chart]")
    assert points(page, "lag") == 361  # 1 h at the sampler's 10 s
    assert not [url for url in requests if f"/groups/{GROUP}/history/" in url]  # came with the page
    legend = figures.first.locator(".u-legend .u-series").nth(1).locator(".u-value")
    box = figures.first.locator(".u-over").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.95, box["y"] + box["height"] / 2)
    expect(legend).not_to_have_text(re.compile(r"^(--|–)?$"))
    value = legend.text_content()
    assert value and value not in ("--", "–")  # a figure, e.g. "412"
    time_value = figures.first.locator(".u-legend .u-series").first.locator(".u-value")
    assert "UTC" in (time_value.text_content() or "")
    consumers = page.locator('figure[data-chart="consumers"] .u-legend')
    expect(consumers).to_contain_text("<b>worker-3</b>")  # a name from Redis: text, not HTML

    page.locator('[data-range-link="24h"]').click()
    expect(page.locator('figure[data-chart^="lag"]')).to_have_attribute("data-points", "1441")
    assert sum("/history/?range=24h" in url for url in requests) == 1, requests
    page.locator("figure[data-chart] .u-over").first.hover(position={"x": 200, "y": 40})
    shoot(page, artifacts, "group-trends")

    page.locator('[data-range-link="7d"]').click()
    expect(page.locator('[data-range-link="7d"]')).to_have_attribute("aria-current", "true")
    expect(page.locator('figure[data-chart^="lag"]')).not_to_have_attribute("data-points", "361")
    assert 1000 < points(page, "lag") <= 2001
    assert "range=7d" in page.url
    # 7 days: each point is the last of its span, and the worst within it is drawn too
    expect(figures.first.locator(".u-legend")).to_contain_text("worst in each point's span")
    page.locator("figure[data-chart] .u-over").nth(4).hover()
    shoot(page, artifacts, "group-trends-7d")
    no_csp_violation(page)


def test_an_outage_is_a_gap_and_short_ranges_extend_live(browser: Browser, charted: Dashboard,
                                                         redis_server: RedisServer) -> None:
    page = tab(browser, charted)
    group_page(page, "?range=1h")
    gaps = page.evaluate("""() => window.streamsAdminCharts.values('out_rate')""")
    assert None in gaps  # the outage 50 minutes ago: nulls, drawn as a gap
    assert 0 not in gaps[:10]
    drawn = page.evaluate("window.streamsAdminCharts.times('lag').at(-1)")
    r = redis.Redis.from_url(redis_server.url)
    r.xadd(STREAM, {"n": "live"})  # the stats socket says so within a second
    # a live point after the history's newest (the window slides: the count may stay)
    until(page, "window.streamsAdminCharts.times('lag').at(-1)", lambda t: t > drawn + 0.5)
    r.close()
    no_csp_violation(page)


def test_dark_mode_and_a_390px_phone(browser: Browser, charted: Dashboard,
                                     artifacts: Path) -> None:
    dark = tab(browser, charted, color_scheme="dark")
    group_page(dark, "?range=24h")
    panel = dark.locator("figure.chart").first.evaluate("e => getComputedStyle(e).backgroundColor")
    assert panel == "rgb(23, 27, 34)"  # app.css's dark --panel
    shoot(dark, artifacts, "group-trends-dark")
    no_csp_violation(dark)

    phone = tab(browser, charted, viewport={"width": 390, "height": 844}, color_scheme="dark")
    group_page(phone, "?range=6h")
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390  # nothing scrolls sideways
    canvas = phone.locator("figure[data-chart] canvas").first.bounding_box()
    assert canvas is not None and 300 <= canvas["width"] <= 380
    phone.locator("#trends").scroll_into_view_if_needed()
    shoot(phone, artifacts, "group-trends-390")
    no_csp_violation(phone)


def test_stream_charts_and_overview_sparklines(browser: Browser, charted: Dashboard,
                                              redis_server: RedisServer,
                                              artifacts: Path) -> None:
    page = tab(browser, charted)  # on the overview, which fetches its sparklines
    spark = page.locator(f'td[data-spark="{STREAM}"] canvas')
    expect(spark).to_have_count(2)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.reload()
    expect(spark).to_have_count(2)
    assert sum("/history/" in url for url in requests) == 1, requests  # one for all streams
    title = page.locator(f'td[data-spark="{STREAM}"] [data-spark-series="worst_lag"]')
    expect(title).to_have_attribute("title", re.compile(r"Worst lag, last hour: now \d"))
    shoot(page, artifacts, "overview-sparklines")

    page.goto(f"/streams/{STREAM}/?range=24h")
    expect(page.locator("figure[data-chart] canvas")).to_have_count(2)
    expect(page.locator('[data-range-link="24h"]')).to_have_attribute("aria-current", "true")
    shoot(page, artifacts, "stream-trends")
    page.locator('[data-range-link="15m"]').click()  # the stream page has its stats socket too
    expect(page.locator('figure[data-chart="length"]')).to_have_attribute("data-points", "91")
    r = redis.Redis.from_url(redis_server.url)
    r.xadd(STREAM, {"n": "live"})
    length = r.xlen(STREAM)
    until(page, "window.streamsAdminCharts.values('length').at(-1)", lambda n: n == length)
    r.close()
    no_csp_violation(page)
