"""The dashboard on a real Redis Cluster (3 primaries, 3 replicas), REDIS_URL naming one node:
streams on every primary, the cluster in the header, round trips per node, and a failover."""

from __future__ import annotations

import re
import time

import redis
from django.urls import reverse

from streams_admin import overview
from tests.cluster_server import RedisCluster
from tests.html import table


def text(content: bytes) -> str:
    """The page's words as a user reads them."""
    return " ".join(re.sub(r"<[^>]+>", " ", content.decode()).split())


def one_key_per_primary(cluster: RedisCluster) -> dict[int, str]:
    """A key on each primary: {port: key}."""
    keys: dict[int, str] = {}
    n = 0
    while len(keys) < 3:
        keys.setdefault(cluster.primary_of(f"s{n}").port, f"s{n}")
        n += 1
    return keys


def test_overview_lists_streams_of_every_primary_with_their_node(
        viewer_client, rc, redis_cluster) -> None:
    keys = one_key_per_primary(redis_cluster)
    for port, key in keys.items():
        rc.xadd(key, {"on": str(port)})
    rows = {row[0]: row for row in table(viewer_client.get("/").content)}
    assert set(rows) == set(keys.values())
    for port, key in keys.items():
        slot = rc.keyslot(key)
        assert rows[key][-1] == f"127.0.0.1:{port} ({slot})"  # the node (slot) column


def test_stream_entry_and_group_pages_for_keys_on_every_node(
        viewer_client, rc, redis_cluster) -> None:
    for key in one_key_per_primary(redis_cluster).values():
        entry_id = rc.xadd(key, {"field": f"value of {key}"}).decode()
        rc.xgroup_create(key, "g", id="0")
        rc.xreadgroup("g", "c1", {key: ">"})
        stream = viewer_client.get(reverse("streams_admin:stream", args=[key.encode()]))
        assert stream.status_code == 200 and entry_id.encode() in stream.content
        entry = viewer_client.get(reverse("streams_admin:entry", args=[key.encode(), entry_id]))
        assert f"value of {key}".encode() in entry.content
        group = viewer_client.get(reverse("streams_admin:group", args=[key.encode(), b"g"]))
        assert group.status_code == 200
        assert entry_id in text(group.content) and "c1" in text(group.content)


def test_header_shows_the_cluster(viewer_client, rc) -> None:
    page = viewer_client.get("/").content.decode()
    header = text(page.encode())
    assert "cluster ok" in header
    assert "3 primaries" in header
    assert "6 nodes" in header
    assert page.count("<li data-node=") == 6  # each node: address, role, memory, clients
    assert header.count(" primary · 5461 slots") + header.count(" primary · 5462 slots") == 3


INSIDE_SCRIPT = {"cmdstat_xlen", "cmdstat_xinfo|groups",  # summaries.lua's calls, per key
                 "cmdstat_xinfo"}  # Redis 6.2: every XINFO, the script's per key included
REPLICATION = {"cmdstat_replconf", "cmdstat_ping"}  # between the nodes, whenever they like
# A new connection's setup and a slot-map refresh come when the client needs them (a pooled
# connection closed, a health check), not per stream: left out so the count is the overview's.
HOUSEKEEPING = ("cmdstat_client", "cmdstat_hello", "cmdstat_cluster", "cmdstat_readonly",
                "cmdstat_select", "cmdstat_info")


def commands(cluster: RedisCluster) -> dict[str, int]:
    """Calls of each command on every primary: INFO's own, and those summaries.lua makes for
    each key inside its one call per node, left out."""
    calls: dict[str, int] = {}
    for node in cluster.nodes:
        plain = redis.Redis.from_url(node.url)
        # Replicas apply the test's own writes (XADD, FLUSHALL) whenever replication gets to
        # them, and the dashboard reads only from primaries: count the primaries.
        replica = plain.info("replication")["role"] != "master"
        stats = {} if replica else plain.info("commandstats")
        plain.close()
        for name, stat in stats.items():
            if name not in INSIDE_SCRIPT | REPLICATION and not name.startswith(HOUSEKEEPING):
                calls[name] = calls.get(name, 0) + stat["calls"]
    return calls


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def test_overview_round_trips_grow_with_nodes_not_streams(
        viewer_client, rc, redis_cluster, settings) -> None:
    settings.STREAMS_ADMIN = {"OVERVIEW_PAGE_SIZE": 5}
    counted = {}
    for n in (10, 200):
        rc.flushall(target_nodes=redis.RedisCluster.PRIMARIES)
        for i in range(n):
            rc.xadd(f"stream-{i}", {"f": "v"})
        viewer_client.get("/")  # the client learns the slot map, scripts get cached
        overview._flights.clear()  # noqa: SLF001 (a fresh overview, not the shared one)
        before = commands(redis_cluster)
        page = viewer_client.get("/")
        counted[n] = delta(before, commands(redis_cluster))
        assert len(table(page.content)) == 5
    assert counted[200] == counted[10], counted
    assert counted[200]["cmdstat_evalsha"] == 3  # the summaries: one script call per primary


def holder(rc: redis.RedisCluster, key: str) -> int | None:
    """The port of the primary holding key now, by a fresh slot map (None: none yet)."""
    try:
        rc.nodes_manager.initialize()
        return rc.get_node_from_key(key).port
    except (redis.RedisError, redis.exceptions.RedisClusterException):
        return None


def test_failover_gives_the_banner_then_the_stream_again(
        viewer_client, rc, redis_cluster) -> None:
    rc.xadd("orders", {"n": "1"})
    rc.xgroup_create("orders", "ship", id="0")
    redis_cluster.wait_ok()  # the replica has the stream
    victim = redis_cluster.primary_of("orders")
    urls = ["/", reverse("streams_admin:stream", args=[b"orders"]),
            reverse("streams_admin:group", args=[b"orders", b"ship"])]
    assert all(viewer_client.get(url).status_code == 200 for url in urls)
    redis_cluster.kill(victim)
    try:
        seen: set[int] = set()
        deadline = time.monotonic() + 20
        while True:
            statuses = [viewer_client.get(url).status_code for url in urls]
            seen.update(statuses)
            assert set(statuses) <= {200, 503}, statuses  # never a 500
            served = viewer_client.get(urls[1])
            if served.status_code == 200 and b"ship" in served.content \
                    and holder(rc, "orders") not in (None, victim.port):
                break
            assert time.monotonic() < deadline, f"still not served again: {seen}"
            time.sleep(0.2)
        header = text(viewer_client.get(urls[1]).content)
        assert f"127.0.0.1:{victim.port} down" in header
    finally:
        victim.start()  # back as a replica of the promoted one
        redis_cluster.wait_ok()


def test_a_key_moving_in_a_resharding_is_listed_once(viewer_client, rc, redis_cluster) -> None:
    """A key MIGRATEd to another primary while its slot is still being moved (the source owns
    the slot, the target holds the key): SCAN finds it on the target only, the source's
    script call cannot read it; the overview lists it once, with its figures."""
    keys = one_key_per_primary(redis_cluster)
    for key in keys.values():
        rc.xadd(key, {"f": "v"})
    rc.xadd("moving", {"f": "1"})
    rc.xadd("moving", {"f": "2"})
    slot = rc.keyslot("moving")
    source = redis_cluster.primary_of("moving")
    target = next(redis_cluster.primary_of(k) for k in keys.values()
                  if redis_cluster.primary_of(k).port != source.port)
    src, dst = redis.Redis.from_url(source.url), redis.Redis.from_url(target.url)
    try:
        src_id, dst_id = src.execute_command("CLUSTER MYID"), dst.execute_command("CLUSTER MYID")
        dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
        src.execute_command("MIGRATE", "127.0.0.1", target.port, "moving", 0, 5000)
        rows = [row[0] for row in table(viewer_client.get("/").content)]
        assert sorted(rows) == sorted([*keys.values(), "moving"])  # once, not lost
        moving = next(row for row in table(viewer_client.get("/").content) if row[0] == "moving")
        assert moving[1] == "2"  # its length, read where it is now
    finally:
        rc.flushall(target_nodes=redis.RedisCluster.PRIMARIES)
        for node in (src, dst):
            node.execute_command("CLUSTER SETSLOT", slot, "STABLE")
            node.close()
