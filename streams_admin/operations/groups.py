"""Consumer groups and consumers: create, move the group's ID, destroy, delete consumers."""

from __future__ import annotations

from dataclasses import dataclass

from streams_admin import names, params
from streams_admin.filters import id_before
from streams_admin.operations import ActionError, Actor, Outcome, audited, check_name, plural
from streams_admin.operations.budget import Budget, Count, end_id, xinfo
from streams_admin.redis import client
from streams_admin.values import id_key, id_parts, text_id


def start_id(text: str) -> str:
    """A group's start: "$" (new entries only), "0" (everything), an ID or a date-time."""
    text = text.strip()
    if text in {"$", "0"}:
        return text
    try:
        if id_parts(text) is not None:
            return params.entry_id(text) or text
        return id_before(f"{params.moment_ms(text)}-0")  # just before that time
    except params.BadParam as exc:
        raise ActionError(str(exc)) from exc


def create_group(actor: Actor, key: bytes, group: bytes | None, start: str,
                 mkstream: bool) -> Outcome:
    def work() -> Outcome:
        name = check_name(group, "group")
        position = start_id(start)
        client().xgroup_create(key, name, id=position, mkstream=mkstream)
        return Outcome(True, f"Created group {names.show(name)} starting at {position}.", 1)

    return audited(actor, "create-group", key, work, group=group,
                   arguments={"start": start, "mkstream": mkstream})


@dataclass(frozen=True)
class LagPreview:
    position: str
    lag: int
    at_least: bool  # counting stopped at PREVIEW_BUDGET: the lag is this or more
    entries_read: int | None  # what to tell Redis so it keeps counting lag (7.0+)


def preview_set_id(key: bytes, text: str) -> LagPreview:
    """The lag the group would have at that ID: the entries after it."""
    position = start_id(text)
    info, groups = xinfo(key)
    lag = _entries_after(key, position, info, groups)
    added = info.get("entries-added")
    read = added - lag.value if added is not None and not lag.at_least else None
    return LagPreview(position, lag.value, lag.at_least, read)


def _entries_after(key: bytes, position: str, info: dict, groups: list[dict]) -> Count:
    """From XINFO where it tells (the stream's ends, a group already there with a lag);
    else counted from whichever end reaches the position within the budget."""
    length, first, last = int(info["length"]), end_id(info, "first-entry"), \
        end_id(info, "last-entry")
    if position == "$" or not first or not last or id_key(position) >= id_key(last):
        return Count(0)
    if position == "0" or id_key(position) < id_key(first):
        return Count(length)
    for raw in groups:
        if text_id(raw["last-delivered-id"]) == position and raw.get("lag") is not None:
            return Count(min(int(raw["lag"]), length))
    budget = Budget(key)
    # From the last entry XINFO saw, not "+": entries added meanwhile are not in `length`.
    after = budget.walk("XREVRANGE", last, f"({position}", cap=budget.left // 2)
    if after.finished:
        return Count(after.count)
    before = budget.walk("XRANGE", "-", position)
    return Count(length - before.count) if before.finished else Count(after.count, True)


def skips(key: bytes, group: bytes, position: str) -> bool:
    """Does moving the group to position jump over entries it has not read yet? One bounded
    XRANGE: is there an entry after its last-delivered ID, up to the new position?"""
    r = client()
    last = next((g["last-delivered-id"].decode() for g in r.xinfo_groups(key)
                 if g["name"] == group), None)
    if last is None:
        raise ActionError("That consumer group does not exist any more (destroyed meanwhile?).")
    end = "+" if position == "$" else "-" if position == "0" else position
    return end != "-" and bool(r.xrange(key, f"({last}", end, count=1))


def set_group_id(actor: Actor, key: bytes, group: bytes, text: str, confirm: str = "") -> Outcome:
    def work() -> Outcome:
        preview = preview_set_id(key, text)
        skipping = skips(key, group, preview.position)
        if skipping and confirm != names.show(group):
            raise ActionError(f"That position skips entries group {names.show(group)} has not "
                              "read yet: type the group's name exactly to move it anyway.")
        extra = {"entries_read": preview.entries_read} if preview.entries_read is not None else {}
        client().xgroup_setid(key, group, preview.position, **extra)
        lag = f"{'at least ' if preview.at_least else ''}{preview.lag:,}"
        return Outcome(True, f"Group {names.show(group)} now reads after {preview.position}; "
                       f"lag {lag}.", 1, details={"position": preview.position,
                                                  "lag": preview.lag, "skipped": skipping})

    return audited(actor, "set-id", key, work, group=group, arguments={"to": text})


def destroy_group(actor: Actor, key: bytes, group: bytes, confirm: str) -> Outcome:
    def work() -> Outcome:
        if confirm != names.show(group):
            raise ActionError("Type the group's name exactly to destroy it.")
        pending = client().xpending(key, group)["pending"]
        if not client().xgroup_destroy(key, group):
            return Outcome(False, "That group does not exist any more.")
        return Outcome(True, f"Destroyed group {names.show(group)} and its "
                       f"{plural(pending, 'pending entry')}.", 1,
                       details={"pending": pending, "removed": "group"})

    return audited(actor, "destroy-group", key, work, group=group)


def create_consumer(actor: Actor, key: bytes, group: bytes, consumer: bytes | None) -> Outcome:
    def work() -> Outcome:
        name = check_name(consumer, "consumer")
        made = client().xgroup_createconsumer(key, group, name)
        what = "Created" if made else "There already is a"
        return Outcome(True, f"{what} consumer {names.show(name)}.", int(made))

    return audited(actor, "create-consumer", key, work, group=group, consumer=consumer)


def consumer_pending(key: bytes, group: bytes, consumer: bytes) -> int:
    for row in client().xpending(key, group)["consumers"] or ():
        if row["name"] == consumer:
            return int(row["pending"])
    return 0


def delete_consumer(actor: Actor, key: bytes, group: bytes, consumer: bytes,
                    confirm: str) -> Outcome:
    """XGROUP DELCONSUMER: its pending entries become unreachable, so that needs the name."""

    def work() -> Outcome:
        holding = consumer_pending(key, group, consumer)
        if holding and confirm != names.show(consumer):
            raise ActionError(f"{names.show(consumer)} holds {plural(holding, 'pending entry')}"
                              ": claim them to another consumer first, or type its name "
                              "to delete it anyway.")
        dropped = client().xgroup_delconsumer(key, group, consumer)
        return Outcome(True, f"Deleted consumer {names.show(consumer)}"
                       + (f"; {plural(dropped, 'pending entry')} dropped from the group"
                          if dropped else "") + ".", 1, details={"dropped": dropped})

    return audited(actor, "delete-consumer", key, work, group=group, consumer=consumer)
