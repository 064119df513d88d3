"""Huge entries in a real Chromium under the real Daphne: pages stay small enough to render,
and a whole value comes as a download."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import Dashboard
from tests.browser.test_flow import log_in
from tests.redis_server import RedisServer

pytestmark = pytest.mark.browser


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)  # the Daphne is shared: unique keys, no flush
    yield client
    client.close()


@pytest.fixture
def page(browser: Browser, dashboard: Dashboard) -> Iterator[Page]:
    context = browser.new_context(base_url=dashboard.url)  # Playwright's default timeouts
    page = context.new_page()
    log_in(page, dashboard)
    yield page
    context.close()


def test_a_stream_of_entries_with_10000_fields_renders(page: Page,
                                                      redis_client: redis.Redis) -> None:
    key = f"wide:{uuid.uuid4().hex}"
    pipe = redis_client.pipeline(transaction=False)
    for _ in range(50):
        pipe.xadd(key, {f"f{n:05d}": f"v{n}" for n in range(10_000)})
    pipe.execute()
    page.goto(f"/streams/{key}/")  # it was 57 MB of HTML, which Chromium never finished
    more = page.get_by_role("link", name="9,980 more fields…")
    expect(more).to_have_count(50)
    more.first.click()
    expect(page.get_by_role("link", name="9,000 more fields…")).to_be_visible()


def test_a_10mb_value_is_a_download(page: Page, redis_client: redis.Redis) -> None:
    key = f"blob:{uuid.uuid4().hex}"
    payload = bytes(range(256)) * ((10 << 20) // 256)  # fixed: random bytes move the UTF-8 cut
    entry_id = redis_client.xadd(key, {"payload": payload}).decode()
    page.goto(f"/streams/{key}/entries/{entry_id}/?full=1")
    link = page.get_by_role("link", name="10,223,623 more bytes…")  # less 256 KB with the name
    with page.expect_download() as download:
        link.click()
    saved = download.value.path()
    assert download.value.suggested_filename == f"{key.replace(':', '_')}-{entry_id}-field0.bin"
    with open(saved, "rb") as file:
        assert file.read() == payload
