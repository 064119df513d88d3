"""The bus's two stream namings (docs/bus.md): plain `agent:stream:task.created` and the
opt-in hash-tag naming `agent:stream:{task.created}` (BUS_HASH_TAGS=1, one slot per event
type on a cluster). The dashboard shows the event type, `task.created`, for both, and what it
writes for a stream (a published event, a dead letter) goes where the bus would put it."""

from __future__ import annotations

import html
import re

import pytest
import redis
from django.urls import reverse

from streams_admin.bus import wire

pytestmark = pytest.mark.django_db

PLAIN, TAGGED = b"agent:stream:task.created", b"agent:stream:{task.created}"
DEAD = {PLAIN: b"agent:stream:deadletter:task.created",
        TAGGED: b"agent:stream:deadletter:{task.created}"}


def publish_form(content: bytes) -> dict[str, str]:
    """The stream page's publish form: its inputs' names and values."""
    form = re.search(r'<form[^>]*class="publish".*?</form>', content.decode(), re.S)
    assert form, "no publish form on the page"
    inputs = re.findall(r'<input type="(?:text|hidden)" name="(\w+)" value="([^"]*)"', form[0])
    return {name: html.unescape(value) for name, value in inputs if name != "csrfmiddlewaretoken"}


def test_the_wire_reads_the_event_type_in_both_namings() -> None:
    prefix = b"agent:stream:"
    for key in (PLAIN, TAGGED):
        assert wire.event_type_of(prefix, key) == b"task.created"
    assert wire.event_type_of(prefix, b"agent:stream:{}") == b"{}"  # no tag: Redis takes none
    for other in (b"orders", b"agent:stream:", *DEAD.values(), b"agent:stream:response:c-1"):
        assert wire.event_type_of(prefix, other) is None


@pytest.mark.parametrize("key", [PLAIN, TAGGED], ids=["plain", "hash-tag"])
def test_stream_page_shows_the_event_type_and_publishes_to_that_stream(
        admin_client, any_redis, key) -> None:
    any_redis.xadd(key, {"event_type": "task.created", "data": "{}"})
    page = admin_client.get(reverse("streams_admin:stream", args=[key]))
    form = publish_form(page.content)
    assert form["event_type"] == "task.created"
    assert ("hash_tag" in form) == (key == TAGGED)
    admin_client.post(reverse("streams_admin:publish"),
                      {**form, "data": '{"n": 2}'}, follow=True)
    assert any_redis.xlen(key) == 2  # the page's own stream, not the other naming's
    assert not any_redis.exists(PLAIN if key == TAGGED else TAGGED)
    newest = any_redis.xrevrange(key, count=1)[0][1]
    assert newest[wire.EVENT_TYPE] == b"task.created"


def test_dead_letter_stream_page_offers_no_event_type(admin_client, any_redis) -> None:
    any_redis.xadd(DEAD[TAGGED], {"event_type": "task.created", "data": "{}"})
    page = admin_client.get(reverse("streams_admin:stream", args=[DEAD[TAGGED]]))
    assert publish_form(page.content)["event_type"] == ""


@pytest.mark.parametrize("key", [PLAIN, TAGGED], ids=["plain", "hash-tag"])
def test_operator_dead_letter_goes_to_the_bus_dead_letter_stream(
        admin_client, any_redis, key) -> None:
    entry_id = any_redis.xadd(key, {"event_type": "task.created", "data": "{}"}).decode()
    any_redis.xgroup_create(key, b"g", id="0")
    any_redis.xreadgroup(b"g", b"c", {key: ">"})
    page = admin_client.get(reverse("streams_admin:group", args=[key, b"g"]))
    if isinstance(any_redis, redis.RedisCluster):
        # On a cluster the page says how: the hash-tag naming keeps one slot, one script.
        how = "atomic" if key == TAGGED else "two steps"
        assert f"Dead-letter: {how}" in html.unescape(page.content.decode())
    admin_client.post(reverse("streams_admin:dead-letter", args=[key, b"g"]),
                      {"ids": [entry_id]}, follow=True)
    (_, letter), = any_redis.xrange(DEAD[key])
    assert letter[wire.ORIGINAL_STREAM] == key and any_redis.xpending(key, b"g")["pending"] == 0
