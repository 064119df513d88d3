"""KEY_PATTERN scopes the dashboard: a stream outside it is not shown, opened, tailed or changed."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.urls import reverse

from streams_admin.consumers import TailConsumer
from streams_admin.names import glob, to_token
from streams_admin.stats import StatsConsumer
from tests.html import table

KEYS = [b"app:a", b"app:b", b"app:", b"apx:a", b"other", b"", b"a*b", b"a?b", b"a[b]",
        b"a\\b", b"A:a", b"app:\n", b"app:\xff\x00", b"\xff", b"-", b"]", b"^x", b"ab", b"abc"]
PATTERNS = ["*", "app:*", "app:?", "ap[a-p]:*", "ap[^p]:*", "[a-b]*", "a\\*b", "a\\?b",
            "a[*]b", "a[\\]]", "*\\\\*", "[]", "[^]", "?", "??", "*:*", "a*c", "[z-a]*",
            "app:[\\xff]*", "\\-", "[-]", "[\\^]x", "*b", "A*"]


def test_glob_matches_what_redis_scan_matches(r: redis.Redis) -> None:
    for key in KEYS:
        r.set(key, "1")
    for pattern in PATTERNS:
        by_redis = set(r.scan_iter(match=pattern, count=1000))
        ours = {key for key in KEYS if glob(pattern).match(key)}
        assert ours == by_redis, pattern


@pytest.fixture
def scoped(r: redis.Redis, settings) -> redis.Redis:
    settings.STREAMS_ADMIN = {"KEY_PATTERN": "app:*"}
    r.xadd("app:orders", {"n": "1"})
    r.xadd("secret", {"n": "1"})
    r.xgroup_create("secret", "g", id="0")
    r.xreadgroup("g", "c", {"secret": ">"})
    return r


def test_pages_outside_the_pattern_are_not_found(admin_client, scoped: redis.Redis) -> None:
    assert [row[0] for row in table(admin_client.get("/").content)] == ["app:orders"]
    entry_id = scoped.xrange("secret")[0][0].decode()
    for url in (reverse("streams_admin:stream", args=[b"secret"]),
                reverse("streams_admin:tail", args=[b"secret"]),
                reverse("streams_admin:entry", args=[b"secret", entry_id]),
                reverse("streams_admin:group", args=[b"secret", b"g"]),
                reverse("streams_admin:trim", args=[b"secret"])):
        response = admin_client.get(url)
        assert response.status_code == 404, url
        assert "secret is not among the streams this dashboard shows" in response.content.decode()
        assert "app:*" in response.content.decode()
    inside = admin_client.get(reverse("streams_admin:stream", args=[b"app:orders"]))
    assert inside.status_code == 200


def test_actions_outside_the_pattern_change_nothing(admin_client, scoped: redis.Redis) -> None:
    entry_id = scoped.xrange("secret")[0][0].decode()
    ack = admin_client.post(reverse("streams_admin:ack", args=[b"secret", b"g"]),
                            {"ids": [entry_id]})
    delete = admin_client.post(reverse("streams_admin:delete-stream", args=[b"secret"]),
                               {"confirm": "secret"})
    assert ack.status_code == delete.status_code == 404
    assert scoped.xpending("secret", "g")["pending"] == 1 and scoped.xlen("secret") == 1
    published = admin_client.post(reverse("streams_admin:publish"),
                                  {"event_type": "task.created", "data": "{}"}, follow=True)
    assert "Not published" in published.content.decode()
    assert not scoped.exists("agent:stream:task.created")


@pytest.mark.django_db(transaction=True)
async def test_sockets_outside_the_pattern_get_nothing(scoped: redis.Redis) -> None:
    user = await asyncio.to_thread(get_user_model().objects.create_user, "op", password="pw",
                                   is_staff=True)
    direct = WebsocketCommunicator(TailConsumer.as_asgi(), "/ws/tail/?key=secret")
    direct.scope["user"] = user
    await direct.connect()
    message = await direct.receive_json_from(timeout=3)
    assert message["type"] == "error" and "secret is not among" in message["message"]
    await direct.disconnect()

    firehose = WebsocketCommunicator(TailConsumer.as_asgi(), "/ws/tail/?pattern=*")
    firehose.scope["user"] = user
    assert (await firehose.connect())[0]
    assert (await firehose.receive_json_from(timeout=3))["type"] == "live"
    scoped.xadd("secret", {"n": "2"})
    mine = scoped.xadd("app:orders", {"n": "2"}).decode()
    message = await firehose.receive_json_from(timeout=3)
    assert message["type"] == "entries" and len(message["rows"]) == 1
    assert f'data-id="{mine}"' in message["rows"][0] and "secret" not in message["rows"][0]
    await firehose.disconnect()

    stats = WebsocketCommunicator(StatsConsumer.as_asgi(),
                                  f"/ws/stats/?key=secret&key={to_token(b'app:orders')}")
    stats.scope["user"] = user
    assert (await stats.connect())[0]
    counts = await stats.receive_json_from(timeout=3)
    assert list(counts["streams"]) == ["app:orders"]
    await stats.disconnect()
    assert json.dumps(counts).count("secret") == 0
