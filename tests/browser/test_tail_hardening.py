"""The live tail page in a real Chromium against Daphne when things go wrong: messages past
Daphne's 1 MiB limit, a Redis outage, a dropped connection, a key that is not a stream."""

from __future__ import annotations

import base64
import json
import os
import re
import time

import pytest
import redis
from playwright.sync_api import expect

from streams_admin.names import to_token
from tests.browser.test_flow import log_in, page, redis_client  # noqa: F401  (fixtures)
from tests.redis_server import RedisServer

pytestmark = pytest.mark.browser


def test_forty_entries_of_40_kb_in_one_pipeline_all_show(
    page, dashboard, redis_client: redis.Redis  # noqa: F811
) -> None:
    redis_client.xadd("huge", {"n": "seed"})
    log_in(page, dashboard)
    page.goto(f"/streams/{to_token(b'huge')}/tail/")
    expect(page.locator("#tail-state")).to_have_text("live")
    pipe = redis_client.pipeline(transaction=False)
    for n in range(40):  # one XREAD answer of 1.6 MB: more than Daphne sends in one message
        blob = base64.b64encode(os.urandom(30_000)).decode()  # (even compressed, as Chromium asks)
        pipe.xadd("huge", {"event_id": f"e{n}", "event_type": "big",
                           "timestamp": "2026-11-28T10:00:00Z",
                           "data": json.dumps({"n": n, "blob": blob})})
    written = [i.decode() for i in pipe.execute()]
    rows = page.locator("#tail-rows tr")
    expect(rows).to_have_count(40, timeout=15_000)
    after = redis_client.xadd("huge", {"n": "next"}).decode()  # and the socket goes on
    expect(rows.first).to_have_attribute("data-id", after)
    assert [rows.nth(i).get_attribute("data-id") for i in range(1, 41)] == written[::-1]


def test_a_redis_outage_shows_reconnecting_then_live_and_rows_go_on(
    page, dashboard, redis_client: redis.Redis, redis_server: RedisServer  # noqa: F811
) -> None:
    redis_client.xadd("out:a", {"n": "seed"})
    log_in(page, dashboard)
    page.goto("/tail/?pattern=out:*")
    state, reason = page.locator("#tail-state"), page.locator("#tail-reason")
    expect(state).to_have_text("live")
    redis_server.stop()
    try:
        expect(state).to_have_text("reconnecting…", timeout=10_000)
        expect(reason).to_contain_text("Redis is not answering")
        time.sleep(5.5)  # an outage longer than the old firehose survived
        expect(state).to_have_text("reconnecting…")
    finally:
        redis_server.start()
    expect(state).to_have_text("live", timeout=20_000)
    expect(reason).to_be_hidden()
    entry_id = redis_client.xadd("out:b", {"n": "after"}).decode()  # the data is gone: new
    expect(page.locator(f'#tail-rows tr[data-id="{entry_id}"]')).to_be_visible(timeout=10_000)


def test_a_dropped_connection_resumes_after_the_live_position(
    page, dashboard, redis_client: redis.Redis  # noqa: F811
) -> None:
    """Nothing had arrived yet: the page still knows where it was live from."""
    redis_client.xadd("quiet", {"n": "seed"})
    sockets = []

    def through(ws) -> None:  # a real connection to Daphne that the test can cut
        server = ws.connect_to_server()
        sockets.append((ws, server))

    page.route_web_socket(re.compile(r"/ws/tail/"), through)
    log_in(page, dashboard)
    page.goto(f"/streams/{to_token(b'quiet')}/tail/")
    expect(page.locator("#tail-state")).to_have_text("live")
    ws, server = sockets[-1]
    server.close()
    ws.close()
    written = [redis_client.xadd("quiet", {"n": str(n)}).decode() for n in range(2)]
    rows = page.locator("#tail-rows tr")
    expect(rows).to_have_count(2, timeout=10_000)
    assert [rows.nth(i).get_attribute("data-id") for i in range(2)] == written[::-1]
    expect(page.locator("#tail-state")).to_have_text("live")
    assert len(sockets) == 2


def test_a_stream_retyped_under_the_page_shows_the_error_and_the_page_retries(
    page, dashboard, redis_client: redis.Redis  # noqa: F811
) -> None:
    redis_client.xadd("retyped", {"n": "seed"})
    log_in(page, dashboard)
    page.goto(f"/streams/{to_token(b'retyped')}/tail/")
    state, reason = page.locator("#tail-state"), page.locator("#tail-reason")
    expect(state).to_have_text("live")
    redis_client.delete("retyped")
    redis_client.set("retyped", "not a stream any more")
    expect(state).to_have_text("error", timeout=10_000)
    expect(reason).to_contain_text("retyped is not a stream")
    redis_client.delete("retyped")  # a stream again: the page finds out by itself, in seconds
    redis_client.xadd("retyped", {"n": "0"})
    expect(state).to_have_text("live", timeout=20_000)
    entry_id = redis_client.xadd("retyped", {"n": "1"}).decode()
    expect(page.locator(f'#tail-rows tr[data-id="{entry_id}"]')).to_be_visible()
