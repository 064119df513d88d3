"""Alerts in a real Chromium, with Daphne and a real `manage.py sampler` on one database: an
admin creates rules through the form (an error first), sends a test, the running sampler fires
one and its notifier delivers it to a real receiver; the Alerts screen and the overview say so.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from playwright.sync_api import Browser, expect

from tests.browser.conftest import ROOT, Dashboard, serve
from tests.browser.test_flow import log_in
from tests.redis_server import RedisServer
from tests.webhook import Receiver

pytestmark = pytest.mark.browser
VIEWPORT = {"width": 1400, "height": 900}


@pytest.fixture(scope="module")
def served(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[Dashboard, Path]]:
    """A Daphne of its own: the sampler must share its database."""
    tmp = tmp_path_factory.mktemp("alerts")
    with serve(redis_server.url, tmp) as dashboard:
        yield dashboard, tmp / "db.sqlite3"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver().start()
    yield found
    found.stop()


@pytest.fixture
def sampler_process(redis_server: RedisServer, served) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "SECRET_KEY": "test", "REDIS_URL": redis_server.url,
           "DATABASE_URL": f"sqlite:///{served[1]}", "DJANGO_SETTINGS_MODULE": "dashboard.settings"}
    process = subprocess.Popen([sys.executable, "manage.py", "sampler", "--interval", "1"],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    yield process
    process.send_signal(signal.SIGTERM)
    process.wait(20)


def test_rules_made_in_the_browser_fire_and_are_delivered(
        browser: Browser, served, redis_server: RedisServer, receiver: Receiver,
        sampler_process, artifacts: Path) -> None:
    dashboard, _ = served
    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    for i in range(1500):  # a backlog the billing group has not read
        r.xadd("orders", {"n": i})
    r.xgroup_create("orders", "billing", id="0")
    r.xgroup_create("orders", "audit", id="$")
    context = browser.new_context(viewport=VIEWPORT, base_url=dashboard.url)
    context.set_default_timeout(10_000)
    page = context.new_page()
    log_in(page, dashboard)

    page.get_by_role("navigation").get_by_role("link", name="Alerts").click()
    page.get_by_role("link", name="New rule").click()
    page.get_by_label("Name").fill("billing behind")
    page.get_by_label("Streams").fill("orders*")
    page.get_by_label("Threshold").fill("1000")
    page.get_by_label("For (s)").fill("0")
    page.get_by_label("Webhook URL").fill("ftp://hooks.example.com/x")
    page.get_by_role("button", name="Create rule").click()
    page.screenshot(path=artifacts / "alerts-form-error.png", full_page=True)
    expect(page.locator(".field.invalid .error")).to_have_text(
        "Only http:// and https:// webhook URLs are allowed.")
    page.get_by_label("Webhook URL").fill(receiver.url)
    page.get_by_role("button", name="Create rule").click()
    expect(page.get_by_role("status").first).to_have_text("Rule “billing behind” created.")

    page.get_by_role("link", name="New rule").click()  # pending: its "for" is 5 minutes
    page.get_by_label("Name").fill("oldest undelivered entry over 1 s")
    page.get_by_label("Metric").select_option("time_lag_seconds")
    page.get_by_label("Threshold").fill("1")
    page.get_by_label("For (s)").fill("300")
    page.get_by_label("Payload").select_option("slack")
    page.get_by_label("Webhook URL").fill("https://hooks.slack.example.com/services/T0/B0/x")
    page.get_by_role("button", name="Create rule").click()

    page.get_by_role("link", name="New rule").click()  # its receiver is down: retried
    page.get_by_label("Name").fill("orders too long")
    page.get_by_label("Metric").select_option("stream_length")
    page.get_by_label("Threshold").fill("1000")
    page.get_by_label("For (s)").fill("0")
    page.get_by_label("Webhook URL").fill("http://127.0.0.1:9/down")
    page.get_by_role("button", name="Create rule").click()

    row = page.locator("tr[data-rule='billing behind']")
    row.get_by_role("button", name="Send test").click()
    expect(page.get_by_role("status").first).to_have_text(
        "Test notification to 127.0.0.1: accepted.")
    assert "test" in receiver.states()

    receiver.wait_for(2)  # the sampler fired it, its notifier POSTed it (maybe before the test)
    assert sorted(receiver.states()) == ["firing", "test"]
    fired = next(body for _, body in receiver.received if body["state"] == "firing")
    assert fired["value"] == 1500 and fired["group"] == "billing"
    for _ in range(40):  # the sampler (every 1 s) fires the last rule and fails to send it
        page.reload()
        if page.locator("tr[data-delivery=queued]").count():
            break
        page.wait_for_timeout(250)
    expect(page.locator("tr[data-state=firing]", has_text="billing behind")).to_contain_text(
        "orders › billing")
    expect(page.locator("tr[data-delivery=sent]")).to_have_count(1)
    expect(page.locator("tr[data-delivery=queued]")).to_contain_text("Connection refused")
    expect(page.locator("tr[data-rule='billing behind']")).to_contain_text("1 firing")
    page.screenshot(path=artifacts / "alerts.png", full_page=True)
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        page.screenshot(path=artifacts / "alerts-viewport.png")
        shutil.copyfile(artifacts / "alerts-viewport.png",
                        ROOT / "docs" / "screenshots" / "alerts.png")

    page.set_viewport_size({"width": 390, "height": 844})  # a phone: looked at, not asserted
    page.screenshot(path=artifacts / "alerts-390.png", full_page=True)
    page.set_viewport_size(VIEWPORT)

    page.get_by_role("link", name="Streams", exact=True).first.click()
    expect(page.locator("[data-alerts-firing]")).to_contain_text(
        "2 alerts firing: billing behind on orders › billing; orders too long on orders")
    page.screenshot(path=artifacts / "alerts-overview-banner.png")
    context.close()
