"""The read model for consumer groups: consumers, pending summary, the group-wide pending list."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from streams_admin import conf
from streams_admin.bus.lua import Lua
from streams_admin.redis import client
from streams_admin.streams import Group, StreamInfo, stalled, stalled_detail
from streams_admin.values import id_key, id_time, text_id

EXISTS = Lua.file(__file__, "exists.lua")  # which of these IDs still have an entry


@dataclass(frozen=True)
class Consumer:
    name: bytes
    pending: int
    idle_ms: int
    inactive_ms: int | None  # Redis 7.2+: since its last successful read; -1 never read
    stalled: str = ""  # streams.stalled: "idle 12m while the group has 340 undelivered"


@dataclass(frozen=True)
class PendingSummary:
    count: int
    min_id: str | None
    max_id: str | None
    by_consumer: tuple[tuple[bytes, int], ...]

    @property
    def oldest_time(self) -> datetime | None:
        return id_time(self.min_id) if self.min_id else None


@dataclass(frozen=True)
class PendingEntry:
    id: str
    consumer: bytes
    idle_ms: int
    deliveries: int
    exists: bool  # False: the entry was deleted or trimmed; only its pending record is left

    @property
    def time(self) -> datetime | None:
        return id_time(self.id)

    @property
    def poison(self) -> bool:
        return self.deliveries >= conf.get("POISON_DELIVERIES")


@dataclass(frozen=True)
class PendingPage:
    entries: tuple[PendingEntry, ...]  # by ID, oldest first
    next_after: str | None  # the next page starts after this ID


@dataclass(frozen=True)
class GroupDetail:
    group: Group
    summary: PendingSummary
    consumers: tuple[Consumer, ...] | None  # None: too many to list (XINFO CONSUMERS has no COUNT)


def _consumer(raw: dict, group: Group) -> Consumer:
    idle = int(raw["idle"])
    return Consumer(
        name=raw["name"],
        pending=int(raw["pending"]),
        idle_ms=idle,
        inactive_ms=raw.get("inactive"),
        stalled=stalled_detail(idle, group) if stalled(idle, group.has_undelivered) else "",
    )


def group_detail(stream: StreamInfo, group: Group) -> GroupDetail:
    pipe = client().pipeline(transaction=False)
    pipe.xpending(stream.key, group.name)
    listed = group.consumers <= conf.get("MAX_CONSUMERS")
    if listed:
        pipe.xinfo_consumers(stream.key, group.name)
    summary, *consumers = pipe.execute()
    pending = PendingSummary(
        count=int(summary["pending"]),
        min_id=text_id(summary["min"]),
        max_id=text_id(summary["max"]),
        by_consumer=tuple((c["name"], int(c["pending"])) for c in summary["consumers"] or ()),
    )
    listing = tuple(_consumer(c, group) for c in consumers[0]) if listed else None
    return GroupDetail(group=group, summary=pending, consumers=listing)


def _exists(stream: StreamInfo, ids: list[str]) -> list[bool]:
    """Which IDs still have their entry. Below the first entry they were trimmed; above the
    highest ID ever deleted (Redis 7.0+) they are there; only the rest are looked up."""
    first = id_key(stream.first_id) if stream.first_id else None
    deleted = id_key(stream.max_deleted_entry_id) if stream.max_deleted_entry_id else None
    found: dict[str, bool] = {}
    for entry_id in ids:
        if first is None or id_key(entry_id) < first:
            found[entry_id] = False
        elif deleted is not None and id_key(entry_id) > deleted:
            found[entry_id] = True
    unsure = [entry_id for entry_id in ids if entry_id not in found]
    if unsure:
        replies = EXISTS(client(), [stream.key], unsure)
        found |= dict(zip(unsure, map(bool, replies), strict=True))
    return [found[entry_id] for entry_id in ids]


def pending_page(
    stream: StreamInfo,
    group: bytes,
    count: int,
    *,
    after: str | None = None,
    consumer: bytes | None = None,
    min_idle_ms: int | None = None,
) -> PendingPage:
    """One page of the group's pending entries by ID (XPENDING with IDLE and a consumer)."""
    start = f"({after}" if after else "-"
    rows: list[Any] = client().xpending_range(
        stream.key, group, start, "+", count + 1, consumername=consumer,
        idle=min_idle_ms or None,
    )
    more = len(rows) > count
    rows = rows[:count]
    ids = [text_id(row["message_id"]) or "" for row in rows]
    present = _exists(stream, ids)
    entries = tuple(
        PendingEntry(
            id=entry_id,
            consumer=row["consumer"],
            idle_ms=int(row["time_since_delivered"]),
            deliveries=int(row["times_delivered"]),
            exists=bool(found),
        )
        for row, entry_id, found in zip(rows, ids, present, strict=True)
    )
    return PendingPage(entries, entries[-1].id if more else None)


@dataclass(frozen=True)
class PendingIn:
    """Where one entry is pending: its group, the consumer holding it, and its counters."""

    group: bytes
    consumer: bytes
    idle_ms: int
    deliveries: int


def entry_pending(key: bytes, entry_id: str, groups: tuple[Group, ...]) -> tuple[PendingIn, ...]:
    if not groups:
        return ()
    pipe = client().pipeline(transaction=False)
    for g in groups:
        pipe.xpending_range(key, g.name, entry_id, entry_id, 1)
    found = []
    for g, rows in zip(groups, pipe.execute(), strict=True):
        for row in rows:
            found.append(
                PendingIn(
                    g.name, row["consumer"], row["time_since_delivered"], row["times_delivered"]
                )
            )
    return tuple(found)
