"""Live counts in a real Chromium against Daphne: the page says when they are not live."""

from __future__ import annotations

import pytest
import redis
from playwright.sync_api import expect

from tests.browser.test_flow import log_in, page, redis_client  # noqa: F401  (fixtures)
from tests.redis_server import RedisServer

pytestmark = pytest.mark.browser


def test_overview_says_reconnecting_while_redis_is_down_and_recovers(
    page, dashboard, redis_client: redis.Redis, redis_server: RedisServer  # noqa: F811
) -> None:
    redis_client.xadd("watched", {"n": "0"})
    log_in(page, dashboard)
    state = page.locator("#streams [data-live-state]")
    length = page.locator('tr[data-key="watched"] [data-stat="length"]')
    expect(state).to_have_text("live")
    redis_server.stop()
    try:
        expect(state).to_have_text("reconnecting…", timeout=10_000)
        expect(state).to_have_attribute("title", "Redis is not answering.")
    finally:
        redis_server.start()
    expect(state).to_have_text("live", timeout=30_000)
    fresh = redis.Redis.from_url(redis_server.url)  # the restarted Redis is empty
    for n in range(3):
        fresh.xadd("watched", {"n": str(n)})
    fresh.close()
    expect(length).to_have_text("3", timeout=10_000)
