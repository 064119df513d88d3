"""The read model: every query the pages make, as frozen dataclasses. No writes.

Each function's cost depends on its page size, never on a stream's length or on the
number of pending entries.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

import redis
from redis.crc import key_slot

from streams_admin import conf
from streams_admin.bounded import read_entry, xinfo_streams
from streams_admin.bus import lua
from streams_admin.bus.lua import Lua
from streams_admin.redis import Server, client
from streams_admin.redis import server as read_server
from streams_admin.rows import (  # noqa: F401 (pages of entries: the read model's, kept there)
    EntriesPage,
    dead_letters_page,
    entries_page,
    search_page,
)
from streams_admin.values import (
    Entry,
    Value,
    human_duration,
    id_key,
    id_time,
    parse_entry,
    text_id,
)

if TYPE_CHECKING:
    from redis.asyncio.client import Pipeline as AsyncPipeline
    from redis.client import Pipeline as SyncPipeline

    Pipeline = SyncPipeline | AsyncPipeline

LAG_NOT_SUPPORTED = "This server reports no lag (Redis 7.0+ does)"
LAG_UNKNOWN = (
    "Redis cannot count it: entries past the group's last-delivered ID were deleted "
    "or trimmed, or its ID was set without ENTRIESREAD"
)


class NotFound(Exception):
    """The stream, group or entry named in the URL does not exist (any more)."""


@dataclass(frozen=True)
class Group:
    name: bytes
    consumers: int
    pending: int
    last_delivered_id: str
    entries_read: int | None
    lag: int | None
    lag_note: str  # why lag is None
    trimmed_unread: int = 0  # entries trimmed away before this group read them: never delivered
    lag_counted: str = ""  # "" Redis's lag; "counted" by the dashboard; "at least" (count cut)
    undelivered: bool | None = None  # the overview's probe, when lag is None; else not asked

    @property
    def last_delivered_time(self) -> datetime | None:
        return id_time(self.last_delivered_id)

    @property
    def has_undelivered(self) -> bool | None:
        """Whether an entry waits that the group was not delivered: by its lag when known,
        else by the overview's probe (None: not known)."""
        return self.lag > 0 if self.lag is not None else self.undelivered


def stalled(idle_ms: int, undelivered: bool | None) -> bool:
    """The one rule for a stalled consumer (measure.py, the overview, the group page): idle
    past IDLE_THRESHOLD_MS while its group has an entry not yet delivered, even holding
    nothing. A live consumer asks for entries every few seconds (its idle resets on each
    read), so one idle that long while work waits is not reading: dead, hung or removed."""
    return bool(undelivered) and idle_ms > conf.get("IDLE_THRESHOLD_MS")


def stalled_detail(idle_ms: int, group: Group) -> str:
    """"idle 12m while the group has 340 undelivered", as the group page says it too."""
    if group.lag is None:
        waiting = "entries not yet delivered"
    else:
        waiting = f"{'≥ ' if group.lag_counted == 'at least' else ''}{group.lag:,} undelivered"
    return f"idle {human_duration(idle_ms)} while the group has {waiting}"


@dataclass(frozen=True)
class StreamInfo:
    key: bytes
    length: int
    first_id: str | None
    last_id: str | None  # last-generated-id
    entries_added: int | None
    max_deleted_entry_id: str | None
    recorded_first_entry_id: str | None
    groups: tuple[Group, ...]
    node: str = ""  # on a cluster, host:port of the node holding it

    @property
    def slot(self) -> int:
        return key_slot(self.key)

    @property
    def first_time(self) -> datetime | None:
        return id_time(self.first_id) if self.first_id else None

    @property
    def last_time(self) -> datetime | None:
        return id_time(self.last_id) if self.last_id and self.length else None

    @property
    def pending(self) -> int:
        return sum(group.pending for group in self.groups)

    @property
    def worst_lag(self) -> int | None:
        worst = self.worst_group
        return worst.lag if worst else None

    @property
    def worst_group(self) -> Group | None:
        """The group with the highest lag known (Redis's or counted)."""
        known = [group for group in self.groups if group.lag is not None]
        return max(known, key=lambda group: group.lag or 0) if known else None


def server() -> Server:
    return read_server()


def true_lag(lag: int | None, last_delivered_id: str, first_id: str | None,
             length: int, behind: int | None = None) -> tuple[int | None, int]:
    """(lag, entries trimmed before the group read them).

    Redis's lag is entries-added - entries-read, so entries trimmed before the group got to
    them still count, though they will never be delivered. When the group's position is before
    the stream's first entry, it will get exactly the `length` entries left; the rest are lost
    to it. Redis 8.2's lag leaves those out already: `behind` (entries-added - entries-read,
    when known) still counts them there."""
    if lag is None or not (first_id is None or id_key(last_delivered_id) < id_key(first_id)):
        return lag, 0
    return length, max(0, (lag if behind is None else behind) - length)


def group_from(raw: dict, server: Server, first_id: str | None, length: int,
               entries_added: int | None = None) -> Group:
    """A group of XINFO GROUPS, its lag as true_lag makes it (the stream's first ID, length
    and entries-added)."""
    last_delivered = text_id(raw["last-delivered-id"]) or "0-0"
    read = raw.get("entries-read")
    behind = entries_added - read if entries_added is not None and read is not None else None
    lag, trimmed = true_lag(raw.get("lag"), last_delivered, first_id, length, behind)
    note = "" if lag is not None else (LAG_UNKNOWN if server.has_lag else LAG_NOT_SUPPORTED)
    return Group(
        name=raw["name"],
        consumers=int(raw["consumers"]),
        pending=int(raw["pending"]),
        last_delivered_id=last_delivered,
        entries_read=raw.get("entries-read"),
        lag=lag,
        lag_note=note,
        trimmed_unread=trimmed,
    )


def _stream(key: bytes, info: dict, groups: list[dict], server: Server) -> StreamInfo:
    first = info.get("first-entry")
    first_id = text_id(first[0]) if first else None
    length = int(info["length"])
    return StreamInfo(
        key=key,
        length=length,
        first_id=first_id,
        last_id=text_id(info.get("last-generated-id")),
        entries_added=info.get("entries-added"),
        max_deleted_entry_id=text_id(info.get("max-deleted-entry-id")),
        recorded_first_entry_id=text_id(info.get("recorded-first-entry-id")),
        groups=tuple(group_from(g, server, first_id, length, info.get("entries-added"))
                     for g in groups),
    )


def queue_infos(pipe: Pipeline, keys: list[bytes]) -> None:
    """XINFO STREAM and XINFO GROUPS for each key, on a pipeline (sync or async)."""
    for key in keys:
        pipe.xinfo_stream(key)
        pipe.xinfo_groups(key)


def infos_from(keys: list[bytes], replies: list, server: Server) -> list[StreamInfo | None]:
    """queue_infos's replies as streams (None: key gone); a lost connection raises."""
    infos: list[StreamInfo | None] = []
    for i, key in enumerate(keys):
        info, groups = replies[2 * i], replies[2 * i + 1]
        if isinstance(info, Exception) or isinstance(groups, Exception):
            if isinstance(info, redis.ConnectionError | redis.TimeoutError):
                raise info
            infos.append(None)  # deleted or retyped since SCAN saw it
        else:
            infos.append(_stream(key, info, groups, server))
    return infos


def stream_infos(keys: list[bytes], server: Server) -> list[StreamInfo | None]:
    """XINFO STREAM and XINFO GROUPS for many keys in one round trip (None: key gone).

    Read off the socket: XINFO STREAM carries the first and last entries whole (a 10 MB
    entry made every page of its stream hold 20 MB); only their IDs are kept."""
    replies = [reply for pair in xinfo_streams(keys) for reply in pair]
    return infos_from(keys, replies, server)


def stream(key: bytes, server: Server) -> StreamInfo:
    info = stream_infos([key], server)[0]
    if info is None:
        raise NotFound(key)
    return count_lags([info])[0]


def count_lags(infos: list[StreamInfo]) -> list[StreamInfo]:
    """The streams with each lag Redis cannot give (deletions past the group's position, or
    Redis < 7) counted inside Redis, up to LAG_COUNT_LIMIT: one round trip for them all."""
    unknown, calls = lag_counts(infos)
    return with_counts(infos, unknown, lua.pipelined(client(), calls) if calls else [])


LagCount = tuple[int, Group]  # (index of the stream in infos, a group whose lag is unknown)


def lag_counts(infos: list[StreamInfo]) -> tuple[list[LagCount], list[lua.Command]]:
    """The groups with no lag, and a COUNT_AFTER call for each, for one pipeline (a sync or
    asyncio client's, plain or cluster: routed by key)."""
    unknown = [(i, g) for i, info in enumerate(infos) for g in info.groups if g.lag is None]
    limit = conf.get("LAG_COUNT_LIMIT")
    return unknown, [COUNT_AFTER.command([infos[i].key], [g.last_delivered_id, limit])
                     for i, g in unknown]


def with_counts(infos: list[StreamInfo], unknown: list[LagCount], replies: list[int]
                ) -> list[StreamInfo]:
    """The streams with lag_counts's replies as their groups' lags."""
    if not unknown:
        return infos
    limit = conf.get("LAG_COUNT_LIMIT")
    counts = {(i, g.name): n for (i, g), n in zip(unknown, replies, strict=True)}
    note = f"Counted by the dashboard, up to {limit:,}: the entries after the last-delivered ID."

    def with_count(i: int, g: Group) -> Group:
        if (i, g.name) not in counts:
            return g
        n = counts[i, g.name]
        return replace(g, lag=n, lag_counted=counted(n, limit), lag_note=f"{note} {g.lag_note}.")

    return [replace(info, groups=tuple(with_count(i, g) for g in info.groups))
            for i, info in enumerate(infos)]


COUNT_AFTER = Lua.file(__file__, "count_after.lua")  # entries after an ID, up to a limit


def counted(count: int, limit: int) -> str:
    return "at least" if count >= limit else "counted"


def group(stream_info: StreamInfo, name: bytes) -> Group:
    for candidate in stream_info.groups:
        if candidate.name == name:
            return candidate
    raise NotFound(name)


def scan_streams(pattern: str, limit: int) -> tuple[list[bytes], bool]:
    """Stream keys matching pattern (SCAN with TYPE, never KEYS; on a cluster, SCAN of every
    primary), and whether limit cut it."""
    keys: dict[bytes, None] = {}  # on a cluster, a key moving in a resharding is seen twice
    for key in client().scan_iter(match=pattern, count=conf.get("SCAN_COUNT"), _type="stream"):
        if len(keys) >= limit and key not in keys:
            return list(keys), True
        keys[key] = None
    return list(keys), False


def entry(key: bytes, entry_id: str) -> Entry | None:
    found = client().xrange(key, entry_id, entry_id, count=1)
    return parse_entry(found[0]) if found else None


def entry_slice(key: bytes, entry_id: str, first: int, fields: int, size: int,
                value_size: int) -> Entry | None:
    """One entry as the entry page shows it: `fields` fields from position `first`, each
    name and value cut to `value_size` bytes and all of them to `size` (as html.fields
    spends its budget). Only those bytes are kept while the reply is read."""
    budget = _Budget(2 * first, 2 * (first + fields), value_size, size)
    items = read_entry(key, entry_id, budget.keep)
    if items is None:
        return None
    pairs = []
    for i in range(2 * first, min(budget.end, len(items) - 1), 2):
        (name, name_size), (value, value_size_) = items[i], items[i + 1]
        pairs.append((Value(bytes(name), name_size - len(name)),
                      Value(bytes(value), value_size_ - len(value))))
    return Entry(entry_id, tuple(pairs), first_field=first, field_count=len(items) // 2,
                 stored_size=sum(length for _, length in items))


class _Budget:
    """What entry_slice keeps of each name and value, in order: html.fields' rule."""

    def __init__(self, start: int, end: int, most: int, size: int) -> None:
        self.start, self.end, self.most, self.left = start, end, most, size

    def keep(self, position: int, length: int) -> int:
        if not self.start <= position < self.end:
            return 0
        if position % 2 == 0 and self.left <= 0:
            self.end = position  # the budget is spent: no more fields
            return 0
        limit = min(self.most, self.left)
        self.left -= min(length, limit)
        return limit


def field_value(key: bytes, entry_id: str, position: int) -> bytearray:
    """The whole value of the entry's field at `position` (0-based); no other bytes kept."""
    wanted = 2 * position + 1
    try:
        items = read_entry(key, entry_id, lambda i, length: length if i == wanted else 0)
    except redis.ResponseError as exc:  # not a stream (any more)
        raise NotFound(key) from exc
    if items is None or not 0 <= position < len(items) // 2:
        raise NotFound(f"{entry_id} field {position}".encode())
    return items[wanted][0]
