"""Lua scripts are called by SHA: loaded once, not sent with every call, and loaded again where
a server lost them (SCRIPT FLUSH, a restart, a failover) without the page or action noticing."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest
import redis
from django.contrib.auth import get_user_model
from django.urls import reverse

from streams_admin import overview
from streams_admin.names import to_token
from streams_admin.redis import server
from tests.html import table
from tests.test_stats import open_stats

SCRIPTING = ("cmdstat_eval", "cmdstat_evalsha", "cmdstat_script|load", "cmdstat_script|exists")


def nodes(r: redis.Redis | redis.RedisCluster) -> list[redis.Redis]:
    """A client of each server: the one, or every node of the cluster, replicas too (a
    replica never gets the primary's scripts: a failover's new primary has none)."""
    if isinstance(r, redis.RedisCluster):
        return [redis.Redis(host=address.rsplit(":", 1)[0], port=int(address.rsplit(":", 1)[1]))
                for address in r.cluster_nodes()]
    return [r]


def scripting(r: redis.Redis | redis.RedisCluster) -> Counter[str]:
    """EVAL, EVALSHA, SCRIPT LOAD and SCRIPT EXISTS calls, summed over the primaries."""
    calls: Counter[str] = Counter()
    for node in nodes(r):
        if node.info("replication")["role"] == "master":
            stats = node.info("commandstats")
            calls.update({name: stats.get(name, {}).get("calls", 0) for name in SCRIPTING})
            # Redis 6.2 counts SCRIPT's subcommands as one, "script": the product sends only
            # LOAD, and the tests' FLUSH comes before their first count.
            calls["cmdstat_script|load"] += stats.get("cmdstat_script", {}).get("calls", 0)
    return calls


def grown(before: Counter[str], after: Counter[str]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in SCRIPTING}


def flush_scripts(r: redis.Redis | redis.RedisCluster) -> None:
    """SCRIPT FLUSH on every node: what a restart of them all would leave."""
    for node in nodes(r):
        assert node.script_flush()


@pytest.fixture
def lagging(any_redis: redis.Redis) -> list[str]:
    """t: 6 entries, the 4th deleted. "g" holds all 6 pending (the 4th's data gone); "behind"
    read one, so Redis gives it no lag: the pages count it (entries 2, 3, 5, 6)."""
    r = any_redis
    ids = [r.xadd("t", {"n": str(n)}).decode() for n in range(6)]
    r.xgroup_create("t", "g", id="0")
    r.xgroup_create("t", "behind", id="0")
    r.xreadgroup("g", "c", {"t": ">"})
    r.xreadgroup("behind", "c", {"t": ">"}, count=1)
    r.xdel("t", ids[3])
    return ids


def what_pages_show(client) -> tuple[str, dict[str, str], list[str]]:
    """The overview's lag, the stream page's lag per group, the group page's pending notes:
    summaries.lua, COUNT_AFTER and EXISTS at work."""
    overview._flights.clear()  # noqa: SLF001 (each view computes, not the shared snapshot)
    lag = table(client.get("/").content)[0][5]
    groups = {row[0]: row[5] for row in table(client.get("/streams/t/").content)}
    page = client.get(reverse("streams_admin:group", args=[b"t", b"g"])).content
    return lag, groups, [row[5] for row in table(page, 1)]


def shows_the_lagging_stream(shown: tuple[str, dict[str, str], list[str]]) -> None:
    lag, groups, notes = shown
    assert lag == "4 counted"
    # Redis 6.2 gives no lag: every group's is counted, "g"'s too
    assert groups == {"behind": "4 counted", "g": "0" if server().has_lag else "0 counted"}
    assert ["data gone" in note for note in notes] == [False, False, False, True, False, False]


def test_page_views_call_scripts_by_sha_only(viewer_client, any_redis, lagging) -> None:
    shows_the_lagging_stream(what_pages_show(viewer_client))  # scripts loaded if need be
    before = scripting(any_redis)
    for _ in range(3):
        shows_the_lagging_stream(what_pages_show(viewer_client))
    calls = grown(before, scripting(any_redis))
    assert calls["cmdstat_evalsha"] >= 3 * 3  # summaries, COUNT_AFTER, EXISTS, each view
    assert (calls["cmdstat_eval"], calls["cmdstat_script|load"],
            calls["cmdstat_script|exists"]) == (0, 0, 0), calls


def test_pages_after_script_flush_load_the_scripts_again(viewer_client, any_redis,
                                                         lagging) -> None:
    what_pages_show(viewer_client)
    flush_scripts(any_redis)
    before = scripting(any_redis)
    shows_the_lagging_stream(what_pages_show(viewer_client))
    loaded = grown(before, scripting(any_redis))["cmdstat_script|load"]
    assert loaded >= 3  # summaries, COUNT_AFTER and EXISTS, loaded where they were missing
    before = scripting(any_redis)
    shows_the_lagging_stream(what_pages_show(viewer_client))
    assert grown(before, scripting(any_redis))["cmdstat_script|load"] == 0


S, G = b"orders", b"ship"


@pytest.fixture
def held(any_redis: redis.Redis) -> list[str]:
    """10 envelopes on orders; "ship" holds 6 of them pending."""
    ids = [any_redis.xadd(S, {"event_id": f"e{n}", "event_type": "order.placed",
                              "timestamp": "2026-11-28T10:00:00+00:00",
                              "data": json.dumps({"n": n})}).decode() for n in range(10)]
    any_redis.xgroup_create(S, G, id="0")
    any_redis.xreadgroup(G, "dead", {S: ">"}, count=6)
    return ids[:6]


def post(admin_client, name: str, args: list[bytes], data: dict) -> str:
    response = admin_client.post(reverse(f"streams_admin:{name}", args=args), data, follow=True)
    return response.content.decode()


@pytest.mark.django_db
def test_actions_after_script_flush_still_work(admin_client, any_redis, held) -> None:
    r = any_redis
    flush_scripts(r)
    assert "Requeued 1 entry as new entries." in post(admin_client, "requeue", [S, G],
                                                      {"ids": [held[0]]})
    assert r.xrevrange(S, count=1)[0][1][b"requeued_from"] == held[0].encode()
    flush_scripts(r)
    assert "Moved 2 entries to the dead-letter stream" in post(
        admin_client, "dead-letter", [S, G], {"ids": held[1:3], "reason": "flushed"})
    dlq = b"agent:stream:deadletter:order.placed"
    letter = r.xrange(dlq)[0][0]
    flush_scripts(r)
    post(admin_client, "redrive", [dlq], {"ids": [letter.decode()]})
    assert r.xlen(dlq) == 1 and r.xrevrange(S, count=1)[0][1][b"event_id"] == b"e1"
    flush_scripts(r)
    trim = reverse("streams_admin:trim", args=[S]) + "?strategy=maxlen&threshold=2"
    assert "<strong>10</strong> of 12 entries would go" in admin_client.get(trim).content.decode()


@pytest.mark.django_db(transaction=True)
async def test_live_counts_after_script_flush(any_redis, lagging, settings) -> None:
    settings.STREAMS_ADMIN = {"STATS_INTERVAL": 0.2}
    staff = await asyncio.to_thread(
        lambda: get_user_model().objects.create_user("op", password="pw", is_staff=True))
    socket = await open_stats(staff, b"t")
    first = (await socket.receive_json_from(timeout=5))["streams"]["t"]["groups"]
    assert first[to_token(b"behind")]["lag"] == 4
    flush_scripts(any_redis)
    any_redis.xadd("t", {"n": "6"})  # a change: the next sample counts again, on no script
    while True:
        message = await socket.receive_json_from(timeout=5)
        if message["type"] == "stats" and "t" in message["streams"]:
            break
    assert message["streams"]["t"]["groups"][to_token(b"behind")]["lag"] == 5
    await socket.disconnect()
