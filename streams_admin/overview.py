"""The read model for the overview: every stream (SCAN), sorted and paged, and a health summary.

Cost: SCAN calls plus two pipelines, whatever the number of streams; no per-stream round trip.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from streams_admin import conf, names
from streams_admin.redis import Server, client
from streams_admin.streams import StreamInfo, scan_streams, stream_infos
from streams_admin.values import human_duration

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

    kind: str  # "lag", "idle" or "poison"
    key: bytes
    group: bytes
    consumer: bytes | None
    detail: str


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


def overview(server: Server, *, query: str = "", sort: str = "name", desc: bool = False,
             page: int = 1, per_page: int | None = None) -> Overview:
    per_page = per_page or conf.get("OVERVIEW_PAGE_SIZE")
    keys, truncated = scan_streams(conf.get("KEY_PATTERN"), conf.get("MAX_STREAMS"))
    infos = [info for info in stream_infos(keys, server) if info is not None]
    needle = query.strip().lower()
    shown = [s for s in infos if needle in names.show(s.key).lower()] if needle else infos
    shown.sort(key=SORTS.get(sort, SORTS["name"]), reverse=desc)
    pages = max(1, -(-len(shown) // per_page))
    page = min(max(page, 1), pages)
    return Overview(
        streams=tuple(shown[(page - 1) * per_page : page * per_page]),
        matched=len(shown),
        scanned=len(infos),
        truncated=truncated,
        page=page,
        pages=pages,
        problems=tuple(health(infos)),
    )


def health(infos: list[StreamInfo]) -> list[Problem]:
    """Lagging groups, idle consumers holding entries, entries delivered too often."""
    lag_limit = conf.get("LAG_THRESHOLD")
    problems = [
        Problem("lag", s.key, g.name, None, f"{g.lag:,} entries not yet delivered")
        for s in infos
        for g in s.groups
        if g.lag is not None and g.lag > lag_limit
    ]
    held = [(s.key, g) for s in infos for g in s.groups if g.pending]
    if not held:
        return problems
    pipe = client().pipeline(transaction=False)
    for key, g in held:
        pipe.xpending_range(key, g.name, "-", "+", conf.get("HEALTH_PENDING_SAMPLE"))
        if g.consumers <= conf.get("MAX_CONSUMERS"):
            pipe.xinfo_consumers(key, g.name)
        else:
            pipe.echo(b"")  # keeps replies in pairs
    replies = pipe.execute(raise_on_error=False)
    for (key, g), oldest, consumers in zip(held, replies[::2], replies[1::2], strict=True):
        problems += _idle(key, g.name, consumers) + _poison(key, g.name, oldest)
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


def _poison(key: bytes, group: bytes, oldest: Any) -> list[Problem]:
    if not isinstance(oldest, list):
        return []
    limit = conf.get("POISON_DELIVERIES")
    return [
        Problem("poison", key, group, row["consumer"],
                f"{row['message_id'].decode()} delivered {row['times_delivered']} times")
        for row in oldest
        if row["times_delivered"] >= limit
    ]
