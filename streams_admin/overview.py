"""The read model for the overview: every stream (SCAN), sorted and paged, and a health summary.

Cost: SCAN calls plus three round trips (summaries, the page's streams, health checks),
whatever the number of streams; no per-stream round trip. Concurrent requests for the same
page share one computation, which serves for OVERVIEW_FRESHNESS seconds (`shared_overview`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import redis
from django.core.signals import setting_changed
from django.dispatch import receiver

from streams_admin import conf, names, targets
from streams_admin.bus import lua
from streams_admin.bus.lua import Lua
from streams_admin.flight import SingleFlight
from streams_admin.models import AuditEntry
from streams_admin.redis import REDIRECTS, Server, by_node, client, node_name, refresh_slots
from streams_admin.redis import server as read_server
from streams_admin.streams import (
    Group,
    StreamInfo,
    count_lags,
    group_from,
    scan_streams,
    stalled,
    stalled_detail,
    stream_infos,
)
from streams_admin.trends import health as trend_health
from streams_admin.values import human_duration, text_id

SORTS: dict[str, Callable[[StreamInfo], Any]] = {
    "name": lambda s: s.key,
    "length": lambda s: s.length,
    "groups": lambda s: len(s.groups),
    "pending": lambda s: s.pending,
    "lag": lambda s: -1 if s.worst_lag is None else s.worst_lag,
    "last": lambda s: s.last_time or datetime.min.replace(tzinfo=UTC),
}


@dataclass(frozen=True)
class Problem:
    """One line of the health summary, linking to where it can be seen."""

    kind: str  # "lag", "idle", "stalled" or "poison"
    key: bytes
    group: bytes
    consumer: bytes | None
    detail: str
    entry_id: str | None = None  # poison: the entry, linked before the detail


@dataclass(frozen=True)
class Overview:
    streams: tuple[StreamInfo, ...]  # this page
    matched: int  # streams matching the filter
    scanned: int
    truncated: bool  # SCAN stopped at MAX_STREAMS
    page: int
    pages: int
    problems: tuple[Problem, ...]

    def of_kind(self, kind: str) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.kind == kind)

    @property
    def lagging(self) -> tuple[Problem, ...]:
        return self.of_kind("lag")

    @property
    def idle(self) -> tuple[Problem, ...]:
        return self.of_kind("idle")

    @property
    def poison(self) -> tuple[Problem, ...]:
        return self.of_kind("poison")

    @property
    def stalled(self) -> tuple[Problem, ...]:
        return self.of_kind("stalled")


SCRIPT = Lua.file(__file__, "summaries.lua")
# On a cluster one call reads keys of many slots of its node (Redis 7.0+): never writes.
CLUSTER_SCRIPT = Lua.file(__file__, "summaries.lua",
                          first_line="#!lua flags=no-writes,allow-cross-slot-keys\n")
CHUNK = 500  # keys per script call: each call holds Redis for well under a millisecond


def summaries(keys: list[bytes], server: Server, with_last: bool) -> list[StreamInfo]:
    """Length and groups of every key (and its last ID when asked) in one round trip.

    A server-side script answers with one compact reply per chunk of keys, where a pipeline
    of XINFO calls would cost redis-py two parsed replies per stream.
    """
    rows: list[Any] = [False] * len(keys)
    flag = "1" if with_last else "0"
    moving: list[int] = []
    for node, positions in by_node(keys):  # one round trip per node
        chunks = [positions[at : at + CHUNK] for at in range(0, len(positions), CHUNK)]
        calls = [_call([keys[i] for i in chunk], flag, server) for chunk in chunks]
        for chunk, reply in zip(chunks, lua.pipelined(node, calls, raise_on_error=False),
                                strict=True):
            if isinstance(reply, redis.ResponseError) and str(reply).startswith(REDIRECTS):
                moving += chunk  # a slot migrating, or the map is stale: asked key by key
            elif isinstance(reply, Exception):
                raise reply
            else:
                for i, row in zip(chunk, reply, strict=True):
                    if row == b"moved":
                        moving.append(i)
                    else:
                        rows[i] = row
    for i, row in zip(moving, _one_by_one([keys[i] for i in moving], flag), strict=True):
        rows[i] = row
    return [_summary(key, row, server) for key, row in zip(keys, rows, strict=True) if row]


def _call(keys: list[bytes], flag: str, server: Server) -> lua.Command:
    if server.cluster:  # keys as arguments: declared keys must share one slot
        # 6.2 compiles no flags line, and does not check the keys a script touches anyway.
        script = CLUSTER_SCRIPT if server.has_script_flags else SCRIPT
        return script.command([], [flag, *keys])
    return SCRIPT.command(keys, [flag])


def _one_by_one(keys: list[bytes], flag: str) -> list[Any]:
    """Keys of a slot on the move, through the cluster client, which follows MOVED and ASK:
    a key moving during a resharding is listed once, not lost."""
    if not keys:
        return []
    refresh_slots()
    calls = [SCRIPT.command([key], [flag]) for key in keys]
    return [reply[0] for reply in lua.pipelined(client(), calls)]


def _summary(key: bytes, row: list, server: Server) -> StreamInfo:
    length, last, groups, first = row
    first_id = text_id(first or None)
    return StreamInfo(
        key=key, length=length, first_id=first_id, last_id=text_id(last or None),
        entries_added=None, max_deleted_entry_id=None, recorded_first_entry_id=None,
        groups=tuple(replace(group_from({"name": g[0], "consumers": g[1], "pending": g[2],
                                         "last-delivered-id": g[3], "entries-read": g[4],
                                         "lag": g[5]}, server, first_id, length),
                             undelivered=None if g[6] is None else bool(g[6]))
                     for g in groups),
    )


def overview(server: Server, *, query: str = "", sort: str = "name", desc: bool = False,
             page: int = 1, per_page: int | None = None) -> Overview:
    per_page = per_page or conf.get("OVERVIEW_PAGE_SIZE")
    keys, truncated = scan_streams(conf.get("KEY_PATTERN"), conf.get("MAX_STREAMS"))
    infos = summaries(keys, server, with_last=sort == "last")
    needle = query.strip().lower()
    shown = [s for s in infos if needle in names.show(s.key).lower()] if needle else infos
    shown.sort(key=SORTS.get(sort, SORTS["name"]), reverse=desc)
    pages = max(1, -(-len(shown) // per_page))
    page = min(max(page, 1), pages)
    page_keys = [s.key for s in shown[(page - 1) * per_page : page * per_page]]
    return Overview(
        streams=tuple(replace(s, node=node_name(s.key)) for s in
                      count_lags([i for i in stream_infos(page_keys, server) if i is not None])),
        matched=len(shown),
        scanned=len(infos),
        truncated=truncated,
        page=page,
        pages=pages,
        problems=tuple(health(infos)),
    )


@dataclass(frozen=True)
class Snapshot:
    overview: Overview
    server: Server
    taken: datetime  # when Redis was asked: the page says "as of"
    health: dict[bytes, trend_health.RowHealth]  # each row's: from the history, stalled


_flights = SingleFlight()


def shared_overview(*, query: str = "", sort: str = "name", desc: bool = False,
                    page: int = 1) -> Snapshot:
    """The overview page for these parameters, computed once for all the requests that ask
    for it at the same time, and reused for OVERVIEW_FRESHNESS seconds. The same for every
    user: permissions only decide which buttons the page shows."""
    key = (targets.current_name(), conf.redis_url(), last_change(), query, sort, desc, page)

    def compute() -> Snapshot:
        server = read_server()
        found = overview(server, query=query, sort=sort, desc=desc, page=page)
        return Snapshot(found, server, datetime.now(UTC),
                        trend_health.for_overview(targets.current_name(), found))

    return _flights.run(key, conf.get("OVERVIEW_FRESHNESS"), compute)


@receiver(setting_changed)
def _forget_on_settings(**kwargs: Any) -> None:
    if kwargs["setting"] in {"REDIS_URL", "STREAMS_ADMIN", "STREAMS_ADMIN_TARGETS"}:
        _flights.clear()


def last_change() -> int:
    """The newest audit row's ID. Every action writes one after changing Redis, through
    whichever Daphne process that shares the database: in the key, it makes the next
    overview on every process look again (one indexed query; the session costs one too)."""
    return AuditEntry.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def health(infos: list[StreamInfo]) -> list[Problem]:
    """Lagging groups, idle consumers holding entries, stalled consumers (streams.stalled),
    entries delivered too often: the consumers of the groups that hold or wait for entries
    (bounded by MAX_CONSUMERS) in one pipeline, with the oldest pending entries."""
    lag_limit = conf.get("LAG_THRESHOLD")
    problems = [
        Problem("lag", s.key, g.name, None, f"{g.lag:,} entries not yet delivered")
        for s in infos
        for g in s.groups
        if g.lag is not None and g.lag > lag_limit
    ]
    asked = [(s.key, g) for s in infos for g in s.groups
             if g.pending or (g.consumers and g.has_undelivered)]
    if not asked:
        return problems
    pipe = client().pipeline(transaction=False)
    for key, g in asked:
        if g.pending:
            pipe.xpending_range(key, g.name, "-", "+", conf.get("HEALTH_PENDING_SAMPLE"))
        else:
            pipe.echo(b"")  # keeps replies in pairs
        if g.consumers <= conf.get("MAX_CONSUMERS"):
            pipe.xinfo_consumers(key, g.name)
        else:
            pipe.echo(b"")
    replies = pipe.execute(raise_on_error=False)
    for (key, g), oldest, consumers in zip(asked, replies[::2], replies[1::2], strict=True):
        problems += _idle(key, g.name, consumers) + _stalled(key, g, consumers) \
            + _poison(key, g.name, oldest)
    return problems


def _idle(key: bytes, group: bytes, consumers: Any) -> list[Problem]:
    if not isinstance(consumers, list):
        return []
    limit = conf.get("IDLE_THRESHOLD_MS")
    return [
        Problem("idle", key, group, c["name"],
                f"idle {human_duration(c['idle'])} holding {c['pending']:,} pending")
        for c in consumers
        if c["pending"] and c["idle"] > limit
    ]


def _stalled(key: bytes, group: Group, consumers: Any) -> list[Problem]:
    if not isinstance(consumers, list):
        return []
    return [Problem("stalled", key, group.name, c["name"], stalled_detail(c["idle"], group))
            for c in consumers if stalled(c["idle"], group.has_undelivered)]


def _poison(key: bytes, group: bytes, oldest: Any) -> list[Problem]:
    if not isinstance(oldest, list):
        return []
    limit = conf.get("POISON_DELIVERIES")
    return [
        Problem("poison", key, group, row["consumer"],
                f"delivered {row['times_delivered']} times", row["message_id"].decode())
        for row in oldest
        if row["times_delivered"] >= limit
    ]
