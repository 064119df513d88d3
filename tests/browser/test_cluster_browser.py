"""The live tail and the firehose in a real Chromium, against Daphne pointed at one node of the
suite's Redis Cluster (3 primaries, 3 replicas): streams on every primary, new entries appear
on the page as a user watches, and a stream created later on any primary joins the firehose."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from playwright.sync_api import Browser, Page, expect

from streams_admin.names import to_token
from tests.browser.conftest import Dashboard, serve
from tests.browser.test_flow import VIEWPORT, log_in
from tests.cluster_server import RedisCluster
from tests.test_cluster_tail import one_key_per_primary

pytestmark = pytest.mark.browser

SCREENSHOTS = Path("/tmp")  # noqa: S108 (looked at by hand; the artifacts dir has the rest)


@pytest.fixture(scope="module")
def cluster_dashboard(redis_cluster: RedisCluster, tmp_path_factory: pytest.TempPathFactory
                      ) -> Iterator[Dashboard]:
    with serve(redis_cluster.url, tmp_path_factory.mktemp("cluster-dashboard")) as served:
        yield served


@pytest.fixture
def cluster_page(browser: Browser, cluster_dashboard: Dashboard) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT, base_url=cluster_dashboard.url)
    # Waits, not timings: a shared 2-core machine answers a cluster's first pages slowly.
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def cluster_client(redis_cluster: RedisCluster) -> Iterator[redis.RedisCluster]:
    redis_cluster.wait_ok()
    client = redis_cluster.client()
    client.flushall(target_nodes=redis.RedisCluster.PRIMARIES)
    yield client
    client.close()


def envelope(n: int, kind: str) -> dict[str, str]:
    return {"event_id": f"e{n}", "event_type": kind, "timestamp": "2026-12-01T10:00:00Z",
            "data": f'{{"n": {n}}}'}


def test_tail_of_a_stream_on_each_primary_shows_new_entries(
        cluster_page: Page, cluster_dashboard: Dashboard, cluster_client, redis_cluster) -> None:
    keys = one_key_per_primary(redis_cluster, "live:")
    log_in(cluster_page, cluster_dashboard)
    for port, key in keys.items():
        cluster_client.xadd(key, envelope(0, "seed"))
        cluster_page.goto(f"/streams/{to_token(key.encode())}/")
        cluster_page.get_by_role("link", name="Live tail").click()
        expect(cluster_page.locator("#tail-state")).to_have_text("live")
        entry_id = cluster_client.xadd(key, envelope(port, f"on.{port}")).decode()
        row = cluster_page.locator(f'#tail-rows tr[data-id="{entry_id}"]')
        expect(row).to_be_visible()
        expect(row).to_contain_text(f"on.{port}")
        expect(cluster_page.locator("#tail-rows tr")).to_have_count(1)
    cluster_page.screenshot(path=SCREENSHOTS / "cluster-tail.png")


def test_firehose_covers_every_primary_and_picks_up_a_new_stream(
        cluster_page: Page, cluster_dashboard: Dashboard, cluster_client, redis_cluster) -> None:
    keys = list(one_key_per_primary(redis_cluster, "fire:").values())
    for key in keys:
        cluster_client.xadd(key, envelope(0, "seed"))
    log_in(cluster_page, cluster_dashboard)
    cluster_page.goto("/tail/?pattern=fire:*")
    expect(cluster_page.locator("#tail-state")).to_have_text("live")
    written = [cluster_client.xadd(keys[n % 3], envelope(n, f"from.{keys[n % 3]}")).decode()
               for n in range(1, 13)]
    rows = cluster_page.locator("#tail-rows tr")
    expect(rows).to_have_count(12)
    shown = {rows.nth(i).get_attribute("data-id") for i in range(12)}
    assert shown == set(written)
    for key in keys:  # each primary's stream is named on its rows
        expect(rows.filter(has_text=f"from.{key}")).to_have_count(4)
    # A stream that did not exist when the page opened, on another primary than the first.
    new = next(key for port, key in one_key_per_primary(redis_cluster, "fire:new").items()
               if port != redis_cluster.primary_of(keys[0]).port)
    late = cluster_client.xadd(new, envelope(99, "late.stream")).decode()
    expect(cluster_page.locator(f'#tail-rows tr[data-id="{late}"]')).to_be_visible(timeout=12_000)
    cluster_page.screenshot(path=SCREENSHOTS / "cluster-firehose.png", full_page=True)
