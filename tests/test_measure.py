"""The present of every stream, as trends and /metrics read it: figures and round trips."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
from prometheus_client import CollectorRegistry
from redis.connection import Connection

from streams_admin.bus import EventBus
from streams_admin.redis import server
from streams_admin.trends import measure
from streams_admin.trends.measure import Snapshot
from tests.bus.conftest import FAST, consuming, wait_for
from tests.redis_server import group_lag

STREAM = "agent:stream:job.run"


IDLE = 1500  # ms: wide, so a busy machine does not make the fresh consumer look idle


@pytest.fixture
def threshold(settings) -> int:
    settings.STREAMS_ADMIN = {**settings.STREAMS_ADMIN, "IDLE_THRESHOLD_MS": IDLE}
    return IDLE


def only(snap: Snapshot, key: bytes) -> measure.StreamSample:
    return next(s for s in snap.streams if s.key == key)


def test_time_lag_and_oldest_pending_age_match_the_entries_ids(any_redis) -> None:
    now_ms = int(time.time() * 1000)
    ids = [f"{now_ms - age}-0" for age in (90_000, 60_000, 30_000)]
    for entry_id in ids:
        any_redis.xadd(b"orders", {b"n": b"1"}, id=entry_id)
    any_redis.xgroup_create(b"orders", b"billing", id="0")
    any_redis.xreadgroup(b"billing", b"c1", {b"orders": ">"}, count=1)  # ids[0] pending
    any_redis.xclaim(b"orders", b"billing", b"c1", 0, [ids[0]], idle=45_000)

    stream = only(measure.snapshot(), b"orders")
    group = stream.groups[0]
    now = time.time()
    # The first entry not yet delivered is ids[1]: its age by its ID's milliseconds.
    assert group.time_lag_s == pytest.approx(now - (now_ms - 60_000) / 1000, abs=1.5)
    assert group.oldest_pending_s == pytest.approx(45, abs=1.5)  # its idle, set by XCLAIM
    # Redis 6.2 reports no entries-added, entries-read or lag: unknown (None), never 0; its
    # lag is counted, and what was trimmed unread cannot be told.
    known = server()
    added = 3 if known.has_stream_counters else None
    read, trimmed = (1, 0) if known.has_lag else (None, None)
    assert (stream.length, stream.entries_added, stream.last_id) == (3, added, ids[2])
    assert (group.lag, group.entries_read, group.pending, group.trimmed_unread) == (
        2, read, 1, trimmed)
    assert [(c.name, c.pending) for c in group.consumers] == [(b"c1", 1)]
    assert (group.consumers[0].inactive_ms is None) == (not known.has_inactive)  # 7.2+


def test_a_group_at_the_largest_id_does_not_break_the_snapshot(any_redis) -> None:
    top = "18446744073709551615-18446744073709551615"
    any_redis.xadd(b"s", {b"a": b"1"}, id="5-0")
    any_redis.xgroup_create(b"s", b"at-the-end", id=top)
    any_redis.xgroup_create(b"s", b"new", id="0")
    any_redis.xadd(b"t", {b"a": b"1"})
    snap = measure.snapshot()
    groups = {g.name: g for g in only(snap, b"s").groups}
    assert groups[b"at-the-end"].time_lag_s == 0 and groups[b"new"].lag == 1
    assert [s.key for s in snap.streams] == [b"s", b"t"]


def test_a_caught_up_group_has_no_time_lag_and_nothing_pending(any_redis) -> None:
    any_redis.xadd(b"s", {b"a": b"1"})
    any_redis.xgroup_create(b"s", b"g", id="$")
    group = only(measure.snapshot(), b"s").groups[0]
    assert (group.lag, group.time_lag_s, group.pending, group.oldest_pending_s) == (0, 0, 0, None)


def test_lag_redis_cannot_give_is_counted_and_trimmed_entries_apart(any_redis) -> None:
    for key in (b"deleted", b"trimmed"):
        for n in range(10):
            any_redis.xadd(key, {b"n": str(n).encode()}, id=f"{n + 1}-0")
        any_redis.xgroup_create(key, b"g", id="0")
        any_redis.xreadgroup(b"g", b"c", {key: ">"}, count=2)
    any_redis.xdel(b"deleted", "5-0")  # past the group's position: Redis loses its lag
    any_redis.xtrim(b"trimmed", minid="4-0", approximate=False)  # 3 never read
    # Redis 7.0 and Valkey count 3 in their lag, Redis 8.2 does not; 6.2 gives none (counted).
    assert group_lag(any_redis, b"trimmed", b"g") in (8, 7)
    snap = measure.snapshot()
    deleted, trimmed = only(snap, b"deleted").groups[0], only(snap, b"trimmed").groups[0]
    assert (deleted.lag, deleted.trimmed_unread) == (7, None)  # counted by the script
    # Told by entries-added - entries-read on every server that has them.
    assert (trimmed.lag, trimmed.trimmed_unread) == (7, 1 if server().has_lag else None)
    assert trimmed.time_lag_s > 1e6  # 4-0: the first entry it will get, from 1970


def test_a_consumer_idle_while_its_group_lags_is_stalled_even_holding_nothing(
        any_redis, threshold) -> None:
    any_redis.xadd(b"s", {b"a": b"1"})
    any_redis.xgroup_create(b"s", b"lagging", id="0")
    any_redis.xgroup_create(b"s", b"caught-up", id="$")
    for group in (b"lagging", b"caught-up"):
        any_redis.xgroup_createconsumer(b"s", group, b"idle-one")
    time.sleep(threshold / 1000 + 0.3)
    any_redis.xgroup_createconsumer(b"s", b"lagging", b"fresh")
    groups = {g.name: g for g in only(measure.snapshot(), b"s").groups}
    assert groups[b"lagging"].stalled == (b"idle-one",)
    assert groups[b"caught-up"].stalled == ()
    # Without consumers asked for, the stalled ones are still named.
    lean = {g.name: g for g in only(measure.snapshot(consumers=False), b"s").groups}
    assert lean[b"lagging"].consumers == () and lean[b"lagging"].stalled == (b"idle-one",)
    assert lean[b"lagging"].consumer_count == 2


def test_the_cap_keeps_the_first_streams_by_key_and_counts_the_rest(any_redis) -> None:
    for n in range(8):
        any_redis.xadd(f"s{n}".encode(), {b"a": b"1"})
    any_redis.set(b"not-a-stream", b"x")
    snap = measure.snapshot(max_streams=5)
    assert [s.key for s in snap.streams] == [f"s{n}".encode() for n in range(5)]
    assert snap.left_out == 3


def test_only_streams_in_scope_are_measured(any_redis, settings) -> None:
    settings.STREAMS_ADMIN = {**settings.STREAMS_ADMIN, "KEY_PATTERN": "app:*"}
    any_redis.xadd(b"app:a", {b"a": b"1"})
    any_redis.xadd(b"other", {b"a": b"1"})
    assert [s.key for s in measure.snapshot().streams] == [b"app:a"]


def round_trips(monkeypatch) -> list[int]:
    """Every request the dashboard's clients send: one per command, one per pipeline."""
    sent = [0]
    original = Connection.send_packed_command

    def counting(self, command, check_health=True):
        sent[0] += 1
        return original(self, command, check_health)

    monkeypatch.setattr(Connection, "send_packed_command", counting)
    return sent


def fill(r: redis.Redis, streams: int) -> None:
    r.flushall() if not isinstance(r, redis.RedisCluster) else r.flushall(
        target_nodes=redis.RedisCluster.PRIMARIES)
    for n in range(streams):
        key = f"stream:{n}".encode()
        r.xadd(key, {b"a": b"1"})
        r.xgroup_create(key, b"g", id="0")


def test_round_trips_do_not_grow_with_the_streams(any_redis, monkeypatch) -> None:
    counts = []
    for streams in (20, 200):
        fill(any_redis, streams)
        measure.snapshot()  # scripts loaded, connections made
        sent = round_trips(monkeypatch)
        snap = measure.snapshot()
        monkeypatch.undo()
        assert len(snap.streams) == streams and all(s.groups[0].lag == 1 for s in snap.streams)
        counts.append(sent[0])
    assert counts[0] == counts[1]
    nodes = 3 if isinstance(any_redis, redis.RedisCluster) else 1
    assert counts[1] <= 2 * nodes  # a SCAN and a pipeline per node


async def test_a_real_bus_consumer_lag_and_time_lag_rise_while_stopped_and_fall_after(
        r: redis.Redis, redis_server) -> None:
    bus = EventBus(redis_server.url, registry=CollectorRegistry(), **FAST)
    handled: list[dict] = []

    @bus.subscribe("job.run")
    async def handle(data: dict) -> None:
        handled.append(data)

    try:
        async with consuming(bus, "workers", "w1"):  # the group exists from here on
            await wait_for(lambda: r.exists(STREAM) and r.xinfo_groups(STREAM), what="group")
        # Stopping drops the blocked read's connection; until Redis has seen it go, an entry
        # added would be delivered to it (pending, as the bus documents), not wait as lag.
        await wait_for(lambda: r.info("clients")["blocked_clients"] == 0,
                       what="the stopped consumer's read gone from Redis")
        ids = [await bus.publish("job.run", {"n": n}) for n in range(5)]
        await asyncio.sleep(1.2)
        group = only(measure.snapshot(), STREAM.encode()).groups[0]
        first_ms = int(r.xrange(STREAM, count=1)[0][0].split(b"-")[0])
        assert len(ids) == 5 and group.lag == 5 and group.pending == 0
        assert group.time_lag_s == pytest.approx(time.time() - first_ms / 1000, abs=1.0)
        assert group.time_lag_s >= 1.0
        async with consuming(bus, "workers", "w1"):
            await wait_for(lambda: len(handled) == 5 and r.xpending(STREAM, "workers")[
                "pending"] == 0, what="all handled and acked")
            group = only(measure.snapshot(), STREAM.encode()).groups[0]
        assert (group.lag, group.time_lag_s, group.pending, group.oldest_pending_s) == (
            0, 0, 0, None)
    finally:
        await bus.aclose()


def test_a_cluster_runs_the_read_only_script_where_its_nodes_compile_the_flags(rc) -> None:
    """Redis 6.2 compiles no `#!lua flags=` line: there the unflagged script measures."""
    rc.xadd(b"s", {b"a": b"1"})
    assert [s.key for s in measure.snapshot().streams] == [b"s"]
    node = rc.get_redis_connection(rc.get_node_from_key(b"s"))
    assert node.script_exists(measure.CLUSTER_SCRIPT.sha) == [server().has_script_flags]
