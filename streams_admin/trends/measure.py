"""READ: the present of every stream in scope of the current target, for trends and /metrics.

One server-side script (measure.lua) reads each chunk of streams whole -- XINFO STREAM and
GROUPS, per group the first entry not yet delivered, the oldest pending entry and (when asked)
the consumers -- so a snapshot costs the SCAN calls plus one pipeline per node (a second only
when a node lost its scripts, or for keys of a slot on the move), whatever the number of
streams and groups (on a cluster, once per client, an INFO of each primary: its version
picks the script).

Definitions (README "Prometheus" says the same):
- time lag: the age of the oldest entry not yet delivered to the group -- the server's clock
  (TIME, in the same script) minus the milliseconds part of the first entry ID after the
  group's last-delivered ID; 0 when the group is caught up. An auto-generated ID carries the
  server's clock, so no clock skew between the dashboard and Redis enters it.
- oldest pending age: the idle time (XPENDING) of the pending entry with the smallest ID --
  how long the oldest entry delivered but not acknowledged has waited since its (last)
  delivery; None when nothing is pending. It is the consumer's side of the wait; the time
  lag is the backlog's, so a group catching up on old entries does not look stuck.
- stalled consumer: idle past IDLE_THRESHOLD_MS while its group has an entry not yet
  delivered, even holding nothing.
- lag: Redis's (7.0+), less the entries trimmed before the group read them (trimmed_unread,
  as the pages show it: entries-added - entries-read less what is left, since Redis 8.2's lag
  leaves those out already); when Redis gives none (6.2), counted up to LAG_COUNT_LIMIT, and
  trimmed_unread is None, as are entries-read and entries-added: unknown, never 0.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from typing import Any

import redis

from streams_admin import conf
from streams_admin.bus import lua
from streams_admin.bus.lua import Lua
from streams_admin.redis import (
    REDIRECTS,
    by_node,
    client,
    is_cluster,
    refresh_slots,
    server_from_info,
)
from streams_admin.streams import scan_streams, stalled, true_lag
from streams_admin.values import id_key, text_id

SCRIPT = Lua.file(__file__, "measure.lua")
# On a cluster one call reads keys of many slots of its node (Redis 7.0+): never writes.
CLUSTER_SCRIPT = Lua.file(__file__, "measure.lua",
                          first_line="#!lua flags=no-writes,allow-cross-slot-keys\n")
# Per cluster client: whether every primary compiles CLUSTER_SCRIPT's flags line.
_flagged: weakref.WeakKeyDictionary[redis.Redis, bool] = weakref.WeakKeyDictionary()
# Streams per script call: about 100 µs of Redis each (1 group, 2 consumers; XINFO STREAM
# is the dearest), so a call holds Redis about a millisecond; calls are pipelined.
CHUNK = 10


@dataclass(frozen=True)
class ConsumerSample:
    name: bytes
    pending: int
    idle_ms: int
    inactive_ms: int | None  # None: server < 7.2; -1: never read an entry (Redis's value)


@dataclass(frozen=True)
class GroupSample:
    name: bytes
    entries_read: int | None  # None: server < 7.0, or Redis cannot tell
    lag: int | None
    time_lag_s: float | None  # age of the oldest entry not yet delivered (0 when caught up)
    pending: int
    oldest_pending_s: float | None  # idle of the oldest pending entry; None: none pending
    trimmed_unread: int | None  # None: Redis gives no lag, so it cannot be told
    consumers: tuple[ConsumerSample, ...]  # () when not asked (or over MAX_CONSUMERS)
    stalled: tuple[bytes, ...]  # idle past IDLE_THRESHOLD_MS while the group has lag
    consumer_count: int = 0  # XINFO GROUPS's, read even when consumers are not


@dataclass(frozen=True)
class StreamSample:
    key: bytes
    length: int
    entries_added: int | None  # None: server < 7.0
    last_id: str
    groups: tuple[GroupSample, ...]


@dataclass(frozen=True)
class Snapshot:
    taken_at: float  # time.time() when asked
    streams: tuple[StreamSample, ...]  # sorted by key
    left_out: int  # streams past the cap


def snapshot(*, max_streams: int | None = None, consumers: bool = True) -> Snapshot:
    """Every stream matching KEY_PATTERN (the first max_streams by key: the same ones each
    time), with its groups and, when asked, their consumers."""
    taken_at = time.time()
    keys, _ = scan_streams(conf.get("KEY_PATTERN"), conf.get("MAX_STREAMS"))
    keys.sort()
    cap = len(keys) if max_streams is None else max(0, max_streams)
    shown, left_out = keys[:cap], max(0, len(keys) - cap)
    return Snapshot(taken_at, tuple(measure(shown, consumers)), left_out)


def measure(keys: list[bytes], consumers: bool = True) -> list[StreamSample]:
    """The keys' samples (a key gone since SCAN is left out), one pipeline per node."""
    rows: dict[int, tuple[Any, float]] = {}  # position -> (row, the node's clock)
    moving: list[int] = []
    args = _args(consumers)
    cluster = _cluster_script() if keys and is_cluster() else None
    for node, positions in by_node(keys):
        chunks = [positions[at:at + CHUNK] for at in range(0, len(positions), CHUNK)]
        calls = [_call([keys[i] for i in chunk], args, cluster) for chunk in chunks]
        for chunk, reply in zip(chunks, lua.pipelined(node, calls, raise_on_error=False),
                                strict=True):
            moving += _collect(chunk, reply, rows)
    if moving:
        _one_by_one(keys, moving, args, rows)
    return [_stream(keys[i], *rows[i], consumers) for i in sorted(rows) if rows[i][0]]


def _args(consumers: bool) -> list[Any]:
    return ["1" if consumers else "0", conf.get("IDLE_THRESHOLD_MS"), conf.get("MAX_CONSUMERS"),
            conf.get("LAG_COUNT_LIMIT")]


def _call(keys: list[bytes], args: list[Any], cluster: Lua | None) -> lua.Command:
    if cluster is not None:  # keys as arguments: declared keys must share one slot
        return cluster.command([], [*args, *keys])
    return SCRIPT.command(keys, args)


def _cluster_script() -> Lua:
    """The cluster's script: CLUSTER_SCRIPT when every primary compiles its flags line
    (Server.has_script_flags); Redis 6.2 refuses the line, and lets a script read any key of
    its node without it. Asked once per cluster client (INFO of each primary, not a round
    trip per snapshot): a version changes only with a restart, and the unflagged script
    reads keys of many slots on 7.0+ as well, so a cluster upgraded since is still measured."""
    r = client()
    if r not in _flagged:
        infos = r.info("server", target_nodes=redis.RedisCluster.PRIMARIES)
        _flagged[r] = all(server_from_info(info).has_script_flags for info in infos.values())
    return CLUSTER_SCRIPT if _flagged[r] else SCRIPT


def _collect(chunk: list[int], reply: Any, rows: dict[int, tuple[Any, float]]) -> list[int]:
    """The chunk's rows into rows; returns the positions to ask again (a slot moving)."""
    if isinstance(reply, redis.ResponseError) and str(reply).startswith(REDIRECTS):
        return chunk
    if isinstance(reply, Exception):
        raise reply
    (seconds, micros), found = reply[0], reply[1:]
    now = seconds + micros / 1e6
    moving = []
    for i, row in zip(chunk, found, strict=True):
        if row == b"moved":
            moving.append(i)
        else:
            rows[i] = (row, now)
    return moving


def _one_by_one(keys: list[bytes], moving: list[int], args: list[Any],
                rows: dict[int, tuple[Any, float]]) -> None:
    """Keys of a slot on the move, through the cluster client, which follows MOVED and ASK:
    a key moving during a resharding is measured once, not lost."""
    refresh_slots()
    calls = [SCRIPT.command([keys[i]], args) for i in moving]
    for i, reply in zip(moving, lua.pipelined(client(), calls), strict=True):
        (seconds, micros), row = reply
        rows[i] = (row, seconds + micros / 1e6)


def _stream(key: bytes, row: list, now: float, consumers: bool) -> StreamSample:
    length, last_id, added, first, groups = row
    first_id = text_id(first or None)
    return StreamSample(key=key, length=length, entries_added=added,
                        last_id=text_id(last_id) or "0-0",
                        groups=tuple(_group(g, (first_id, length, added), now, consumers)
                                     for g in groups))


def _group(row: list, stream: tuple[str | None, int, int | None], now: float,
           with_consumers: bool) -> GroupSample:
    """stream: its first entry ID, length and entries-added."""
    name, count, pending, delivered, read, lag, undelivered, counted, oldest, rows = row
    lag, trimmed = _lag(lag, counted, text_id(delivered) or "0-0", read, *stream)
    consumers = tuple(ConsumerSample(c[0], c[1], c[2], c[3]) for c in rows)
    waiting = undelivered is not None
    return GroupSample(
        name=name, entries_read=read, lag=lag, time_lag_s=_age(undelivered, now),
        pending=pending, oldest_pending_s=None if oldest is None else oldest[1] / 1000,
        trimmed_unread=trimmed, consumers=consumers if with_consumers else (),
        stalled=tuple(c.name for c in consumers if stalled(c.idle_ms, waiting)),
        consumer_count=count)


def _lag(lag: int | None, counted: int, last_delivered: str, read: int | None,
         first_id: str | None, length: int, added: int | None) -> tuple[int, int | None]:
    """(lag, trimmed unread) as the pages count them (streams.group_from): Redis 8.2's lag
    already leaves out the entries trimmed before the group read them, so those are
    entries-added - entries-read less what is left. Redis gave no lag: the script's count,
    and the trimmed ones cannot be told."""
    if lag is None:
        return counted, None
    behind = added - read if added is not None and read is not None else None
    told, trimmed = true_lag(lag, last_delivered, first_id, length, behind)
    return (lag if told is None else told), trimmed


def _age(entry_id: bytes | None, now: float) -> float:
    """Seconds since the entry's ID time by the server's clock; 0 without an entry (or for an
    ID set in the future)."""
    if entry_id is None:
        return 0.0
    ms, _ = id_key(entry_id.decode("ascii"))
    return max(0.0, round(now - ms / 1000, 3))
