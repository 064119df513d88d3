"""Streams and entries: trim (with a preview), delete, publish (re-drive: deadletters.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from streams_admin import conf, names, params
from streams_admin.bus import BusConfig, envelope, wire
from streams_admin.bus.coalesce import xadd
from streams_admin.operations import (
    ActionError,
    Actor,
    Outcome,
    audited,
    check_ids,
    chunks,
    plural,
)
from streams_admin.operations.budget import Budget, Count, end_id, later, xinfo
from streams_admin.redis import client
from streams_admin.streams import true_lag
from streams_admin.values import id_key, id_parts, text_id


@dataclass(frozen=True)
class GroupRisk:
    group: bytes
    pending: Count  # entries to be removed that the group still has pending
    undelivered: Count  # entries to be removed that the group has not read yet


@dataclass(frozen=True)
class TrimPreview:
    strategy: str  # "maxlen" or "minid"
    threshold: str  # as Redis gets it
    approximate: bool
    removed: Count
    groups: tuple[GroupRisk, ...]
    budget: int  # entries the preview could walk (PREVIEW_BUDGET)

    @property
    def at_risk(self) -> Count:
        return sum((g.pending + g.undelivered for g in self.groups), Count(0))

    @property
    def cut_short(self) -> bool:
        """Some figure is a lower bound: counting stopped at the budget."""
        return self.removed.at_least or self.at_risk.at_least


@dataclass(frozen=True)
class Cut:
    """Where the removed entries end, as range end bounds: entries up to `low` go, entries
    past `high` stay; one bound when the preview could find it within its budget."""

    low: str
    high: str

    @property
    def exact(self) -> bool:
        return self.low == self.high


def _threshold(strategy: str, text: str) -> str:
    text = text.strip()
    if strategy == "maxlen":
        count = params.whole_number(text, -1)
        if count < 0:
            raise ActionError("MAXLEN takes a number of entries to keep.")
        return str(count)
    if strategy != "minid":
        raise ActionError("Trim by MAXLEN or MINID.")
    if id_parts(text) is not None:
        return params.entry_id(text) or text
    try:
        age = params.duration_ms(text)
    except params.BadParam:
        age = None
    if age is not None:  # older than the dawn of 1970 is everything: MINID 0-0 keeps all
        return f"{max(0, int(time.time() * 1000) - age)}-0"
    try:
        return f"{params.moment_ms(text)}-0"
    except params.BadParam as exc:
        raise ActionError("MINID takes an entry ID, an age (like 7d) or a date-time.") from exc


def _maxlen_cut(budget: Budget, removed: int, info: dict) -> Cut:
    """The last entry MAXLEN removes, walked to from the nearer end within half the budget;
    past that, the bounds reached walking from both ends."""
    length, last = int(info["length"]), end_id(info, "last-entry") or "+"
    if removed >= length:
        return Cut(last, last)
    kept = length - removed
    low, high = "0-0", "+"
    for forward in (removed <= kept, removed > kept):
        if forward:
            walk = budget.walk("XRANGE", "-", "+", upto=removed, cap=budget.left // 2)
            low = walk.last or low
        else:  # the (kept + 1)-th entry from the end is the last one removed
            walk = budget.walk("XREVRANGE", last, "-", upto=kept + 1, cap=budget.left // 2)
            high = f"({walk.last}" if walk.last else high
        if walk.finished and walk.last:
            return Cut(walk.last, walk.last)
    return Cut(low, high)


def _minid_removed(budget: Budget, threshold: str, info: dict) -> Count:
    """Entries before the threshold, counted from whichever end reaches it within budget."""
    length, first, last = int(info["length"]), end_id(info, "first-entry"), \
        end_id(info, "last-entry")
    if not first or not last or id_key(threshold) <= id_key(first):
        return Count(0)
    if id_key(threshold) > id_key(last):
        return Count(length)
    forward = budget.walk("XRANGE", "-", f"({threshold}", cap=budget.left // 2)
    if forward.finished:
        return Count(forward.count)
    # From the last entry XINFO saw, not "+": entries added meanwhile are not in `length`.
    backward = budget.walk("XREVRANGE", last, threshold, cap=budget.left // 2)
    if backward.finished:
        return Count(length - backward.count)
    return Count(forward.count, True)


def _upto(budget: Budget, command: str, start: str, cut: Cut, group: bytes = b"") -> Count:
    """Entries (or a group's pending entries) from start to the cut: those up to its low
    bound, "at least" if any lies between its bounds."""
    counted = budget.count(command, start, cut.low, group=group)
    if counted.at_least or cut.exact:
        return counted
    between = budget.walk(command, later(start, cut.low), cut.high, upto=1, group=group)
    return Count(counted.value, not (between.finished and between.count == 0))


def _risk(budget: Budget, raw: dict, cut: Cut, removed: Count, info: dict) -> GroupRisk:
    length, last = int(info["length"]), text_id(raw["last-delivered-id"]) or "0-0"
    pending = _upto(budget, "XPENDING", "-", cut, raw["name"]) if raw["pending"] else Count(0)
    after, _ = true_lag(raw.get("lag"), last, end_id(info, "first-entry"), length)
    # Redis's lag is the entries after the group's position, so the first length - lag
    # entries are those it has read: the rest of the removed ones it has not, no walk needed.
    derived = max(0, removed.value - (length - min(after, length))) if after is not None else 0
    if after is not None and (derived or not removed.at_least):
        undelivered = Count(derived, removed.at_least)
    else:
        undelivered = _upto(budget, "XRANGE", f"({last}", cut)
    return GroupRisk(raw["name"], pending, undelivered)


def preview_trim(key: bytes, strategy: str, text: str, approximate: bool) -> TrimPreview:
    """What XTRIM would remove, and how much of it some group still needs: exact from XINFO
    where it can be, else counted within PREVIEW_BUDGET ("≥ N" past it)."""
    threshold = _threshold(strategy, text)
    info, groups = xinfo(key)
    length, budget = int(info["length"]), Budget(key)
    if strategy == "maxlen":
        removed = Count(max(0, length - int(threshold)))
        cut = _maxlen_cut(budget, removed.value, info) if removed and groups else None
    else:
        removed = _minid_removed(budget, threshold, info)
        cut = Cut(f"({threshold}", f"({threshold}")
    risks = tuple(_risk(budget, g, cut, removed, info) for g in groups) \
        if removed and cut else ()
    return TrimPreview(strategy, threshold, approximate, removed, risks, conf.get("PREVIEW_BUDGET"))


def _risk_details(risk: Count) -> dict[str, object]:
    return {"at_risk": risk.value, **({"at_risk_at_least": True} if risk.at_least else {})}


def trim(actor: Actor, key: bytes, strategy: str, text: str, approximate: bool,
         override: bool, confirm: str) -> Outcome:
    def work() -> Outcome:
        if confirm != names.show(key):
            raise ActionError("Type the stream's name exactly to trim it.")
        preview = preview_trim(key, strategy, text, approximate)
        risk = preview.at_risk
        if risk and not override:
            some = f"{'at least ' if risk.at_least else ''}{plural(risk.value, 'entry')}"
            return Outcome(False, f"Refused: {some} to be trimmed are still pending or not "
                           "yet delivered. Tick the override to trim anyway.",
                           details=_risk_details(risk))
        options: dict[str, Any] = {preview.strategy: preview.threshold, "approximate": approximate}
        if preview.strategy == "maxlen":
            options["maxlen"] = int(preview.threshold)
        removed = client().xtrim(key, **options)
        return Outcome(True, f"Trimmed {plural(removed, 'entry')}.", removed,
                       details={"threshold": preview.threshold, **_risk_details(risk)})

    return audited(actor, "trim", key, work, arguments={
        "strategy": strategy, "threshold": text, "approximate": approximate,
        "override": override})


MAX_SELECTED = 500  # entries one delete may name: the largest page of entries


@dataclass(frozen=True)
class EntryRisk:
    id: str
    exists: bool
    pending_in: tuple[bytes, ...]  # groups that have it pending (delivered, not acked)
    unread_by: tuple[bytes, ...]  # groups that have not read it yet


def check_selection(ids: list[str]) -> list[str]:
    chosen = check_ids(ids)
    if len(chosen) > MAX_SELECTED:
        raise ActionError(f"Select at most {MAX_SELECTED:,} entries at a time.")
    return chosen


def preview_delete(key: bytes, ids: list[str]) -> tuple[EntryRisk, ...]:
    """Which selected entries exist, and which groups still need each: one round trip of
    (groups + 1) commands per entry, for at most MAX_SELECTED entries."""
    chosen = check_selection(ids)
    r = client()
    groups = [(g["name"], g["last-delivered-id"].decode()) for g in r.xinfo_groups(key)]
    pipe = r.pipeline(transaction=False)
    for entry_id in chosen:
        pipe.xrange(key, entry_id, entry_id, count=1)
        for name, _ in groups:
            pipe.xpending_range(key, name, entry_id, entry_id, 1)
    replies = iter(pipe.execute())
    risks = []
    for entry_id in chosen:
        exists = bool(next(replies))
        pending = tuple(name for name, _ in groups if next(replies))
        unread = tuple(name for name, last in groups if id_key(entry_id) > id_key(last))
        risks.append(EntryRisk(entry_id, exists, pending, unread if exists else ()))
    return tuple(risks)


def delete_entries(actor: Actor, key: bytes, ids: list[str], confirm: str) -> Outcome:
    """XDEL after the preview: what some group still needs is never delivered to it again."""

    def work() -> Outcome:
        chosen = check_selection(ids)
        if confirm != names.show(key):
            raise ActionError("Type the stream's name exactly to delete the selected entries.")
        risks = preview_delete(key, chosen)
        deleted = sum(client().xdel(key, *part) for part in chunks(chosen, 1000))
        note = f"; {plural(len(chosen) - deleted, 'was', 'were')} already gone" \
            if deleted < len(chosen) else ""
        pending = sum(1 for risk in risks if risk.exists and risk.pending_in)
        left = f" {plural(pending, 'of them was', 'of them were')} still pending: " \
            "their pending records stay, with no data." if pending and deleted else ""
        return Outcome(True, f"Deleted {plural(deleted, 'entry')}{note}.{left}", deleted,
                       details={"pending": pending})

    return audited(actor, "delete-entries", key, work, ids=ids)


def delete_stream(actor: Actor, key: bytes, confirm: str) -> Outcome:
    def work() -> Outcome:
        if confirm != names.show(key):
            raise ActionError("Type the stream's name exactly to delete it.")
        length = client().xlen(key)
        if not client().unlink(key):
            return Outcome(False, "The stream does not exist any more.")
        return Outcome(True, f"Deleted the stream and its {plural(length, 'entry')}.", 1,
                       details={"length": length, "removed": "stream"})

    return audited(actor, "delete-stream", key, work)


def publish(actor: Actor, event_type: str, data: str, correlation_id: str,
            hash_tag: bool = False) -> Outcome:
    """Publish the bus's envelope to the bus's stream for the type, so the entry is exactly
    what services publish; `hash_tag`: to the stream of the bus's hash-tag naming."""
    prefix = conf.get("BUS_PREFIX")
    name = wire.hash_tag(event_type.strip()) if hash_tag else event_type.strip()
    key = wire.stream_key(prefix, name).encode()

    def work() -> Outcome:
        if not event_type.strip():
            raise ActionError("Give an event type, like task.created.")
        if not names.in_scope(key):
            raise ActionError(f"Not published: {names.out_of_scope(key)}")
        try:
            payload = params.json_value(data or "null")
        except params.BadParam as exc:
            raise ActionError(str(exc)) from exc
        fields = envelope.encode(event_type.strip(), payload,
                                 correlation_id=correlation_id.strip() or None)
        config = BusConfig.build(prefix=prefix)
        # Through the dashboard's own client, not an EventBus: its fast timeouts and pool,
        # where the bus would keep retrying a Redis that is down for publish_retry_s (10 s).
        client().execute_command(*xadd(key, fields, config.maxlen))
        event_id = fields[wire.name(wire.EVENT_ID)]
        return Outcome(True, f"Published {event_type.strip()} event {event_id}.", 1,
                       details={"event_id": event_id, "stream": names.to_token(key)})

    return audited(actor, "publish", key, work,
                   arguments={"event_type": event_type, "correlation_id": correlation_id})
