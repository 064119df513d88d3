"""A slot migrating between primaries while the dashboard reads it (a resharding, as
`redis-cli --cluster reshard` does it: CLUSTER SETSLOT … IMPORTING / MIGRATING, MIGRATE of
each key, then SETSLOT … NODE). While it migrates, the source node answers ASK for a key it
sent away and TRYAGAIN for a read of several keys some of which left: the live tail and the
pages follow (ASKING on the importing node) and lose and repeat nothing.

A private cluster (3 primaries, no replicas): the session's shared one keeps its slot map."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import redis
from django.contrib.auth import get_user_model
from django.urls import reverse

from streams_admin import consumers
from tests.cluster_server import Migration, RedisCluster
from tests.html import table
from tests.test_tail_hardening import open_page


@pytest.fixture(scope="module")
def moving_cluster() -> Iterator[RedisCluster]:
    cluster = RedisCluster(primaries=3, replicas=0).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def mc(moving_cluster: RedisCluster, settings) -> Iterator[redis.RedisCluster]:
    settings.REDIS_URL = moving_cluster.url
    # Every overview computed afresh (not one shared from 2 s before the slot moved).
    settings.STREAMS_ADMIN = {**settings.STREAMS_ADMIN, "OVERVIEW_FRESHNESS": 0}
    client = moving_cluster.client()
    yield client
    client.close()


@pytest.fixture
def staff():
    return get_user_model().objects.create_user("op", password="pw", is_staff=True)


def text(content: bytes) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", content.decode()).split())


pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_tail_follows_its_streams_through_a_slot_migration(mc, moving_cluster, staff):
    """Two streams of one slot, tailed while the slot migrates: one already moved (the source
    answers ASK), the other not yet (a read of both answers TRYAGAIN), then both, then the
    slot handed over (MOVED). Every entry arrives once, in order, while the slot migrates."""
    gone, left = "{mig-tail}gone", "{mig-tail}left"
    written = {key: [mc.xadd(key, {"n": "0"}).decode()] for key in (gone, left)}
    pages = {key: await open_page(staff, f"key={key}") for key in (gone, left)}

    async def write_and_see(n: int) -> None:
        for key in pages:
            written[key].append(mc.xadd(key, {"n": str(n)}).decode())  # redis-py follows ASK
        for key, page in pages.items():
            await page.until(lambda p=page, k=key: written[k][-1] in p.ids)

    migration = Migration(moving_cluster, gone)
    migration.move(gone)
    await write_and_see(1)  # `gone` on the target (ASK), `left` on the source (TRYAGAIN both)
    await write_and_see(2)
    migration.move(left)
    await write_and_see(3)  # both on the target, the slot still the source's
    migration.finish()
    await write_and_see(4)  # MOVED: the streams go to the target's shard
    for key, page in pages.items():
        assert page.ids == written[key][1:]  # none lost, none twice
        await page.communicator.disconnect()
    assert consumers.hub().readers == {}


def test_pages_read_a_stream_whose_slot_is_migrating(mc, moving_cluster, admin_client):
    """The overview, the stream page and the entry page, while one stream of a slot has moved
    to the importing node and another has not (ASK), and just after the slot was handed over
    (MOVED, the dashboard's slot map stale): each listed once, each read where it is."""
    gone, left = "{mig-page}gone", "{mig-page}left"
    ids = {key: [mc.xadd(key, {"n": str(n)}).decode() for n in range(3)] for key in (gone, left)}
    see_all(admin_client, ids)  # the dashboard's slot map: the source holds the slot
    migration = Migration(moving_cluster, gone)
    migration.move(gone)
    try:
        see_all(admin_client, ids)
    finally:
        migration.move(left)
        migration.finish()
    see_all(admin_client, ids)


def see_all(admin_client, ids: dict[str, list[str]]) -> None:
    rows = [row for row in table(admin_client.get("/").content) if row and row[0] in ids]
    assert sorted(row[0] for row in rows) == sorted(ids)  # once each, none vanished
    assert all(row[1] == "3" for row in rows), rows  # the length, read where the stream is
    for key in ids:
        page = admin_client.get(reverse("streams_admin:stream", args=[key.encode()]))
        assert page.status_code == 200, text(page.content)[:300]
        assert all(entry_id in page.content.decode() for entry_id in ids[key])
        entry = admin_client.get(reverse("streams_admin:entry", args=[key.encode(), ids[key][1]]))
        assert entry.status_code == 200, text(entry.content)[:300]
        assert "not in the stream" not in text(entry.content)
