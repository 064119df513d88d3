"""REDIS_URL names a node of a cluster that is down when the dashboard first builds its client:
the pages give the banner (503, the Redis-down page), nothing of the failure is remembered, and
they work by themselves once the node answers. A private cluster (its node is stopped)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from django.urls import reverse

from streams_admin import redis as redis_clients
from tests.cluster_server import RedisCluster
from tests.html import table
from tests.redis_server import RedisServer

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def small_cluster() -> Iterator[RedisCluster]:
    cluster = RedisCluster(primaries=3, replicas=0).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def named_down(small_cluster: RedisCluster, settings) -> Iterator[RedisCluster]:
    """The node REDIS_URL names, stopped before the dashboard ever asked it anything."""
    client = small_cluster.client()
    client.xadd("down:a", {"n": "1"})
    client.close()
    small_cluster.nodes[0].stop()
    redis_clients._clustered.cache_clear()  # noqa: SLF001 (as in a process just started)
    settings.REDIS_URL = small_cluster.url
    yield small_cluster
    if small_cluster.nodes[0].process is None:
        small_cluster.nodes[0].start()
    small_cluster.wait_ok()


def banner(response) -> bool:
    return response.status_code == 503 and "Redis is not answering" in response.content.decode()


def test_a_named_node_down_at_start_gives_the_banner_then_the_pages(viewer_client,
                                                                     named_down) -> None:
    stream = reverse("streams_admin:stream", args=[b"down:a"])
    for _ in range(2):  # asked again each time: the failure is not kept
        assert banner(viewer_client.get("/"))
        assert banner(viewer_client.get(stream))
    named_down.nodes[0].start()
    named_down.wait_ok()
    rows = table(viewer_client.get("/").content)
    assert [row[0] for row in rows if row and row[0] == "down:a"] == ["down:a"]
    page = viewer_client.get(stream)
    assert page.status_code == 200 and "down:a" in page.content.decode()
    assert isinstance(redis_clients.client(), redis.RedisCluster)  # a cluster's client now


def test_a_standalone_server_down_at_start_gives_the_banner_then_the_pages(viewer_client,
                                                                            settings) -> None:
    server = RedisServer()  # not started yet
    redis_clients._clustered.cache_clear()  # noqa: SLF001 (as in a process just started)
    settings.REDIS_URL = server.url
    try:
        for _ in range(2):
            assert banner(viewer_client.get("/"))
        server.start()
        redis.Redis.from_url(server.url).xadd("up:a", {"n": "1"})
        rows = table(viewer_client.get("/").content)
        assert [row[0] for row in rows if row and row[0] == "up:a"] == ["up:a"]
    finally:
        server.stop()
