"""Consumer groups and consumers: create, move the group's ID, destroy, delete consumers."""

from __future__ import annotations

from dataclasses import dataclass

from streams_admin import names, params
from streams_admin.filters import id_before
from streams_admin.operations import ActionError, Actor, Outcome, audited, check_name, plural
from streams_admin.operations.scripts import COUNT_RANGE, script
from streams_admin.redis import client
from streams_admin.values import id_parts

PREVIEW_LIMIT = 1_000_000  # entries counted for a lag preview before it says "at least"


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
    at_least: bool  # counting stopped at PREVIEW_LIMIT
    entries_read: int | None  # what to tell Redis so it keeps counting lag (7.0+)


def preview_set_id(key: bytes, text: str) -> LagPreview:
    """The lag the group would have at that ID: the entries after it."""
    position = start_id(text)
    r = client()
    info = r.xinfo_stream(key)
    if position == "$":
        return LagPreview(position, 0, False, info.get("entries-added"))
    start = "-" if position == "0" else f"({position}"
    count, capped = script(COUNT_RANGE)(keys=[key], args=[start, "+", PREVIEW_LIMIT])
    added = info.get("entries-added")
    read = added - count if added is not None and not capped else None
    return LagPreview(position, count, bool(capped), read)


def set_group_id(actor: Actor, key: bytes, group: bytes, text: str) -> Outcome:
    def work() -> Outcome:
        preview = preview_set_id(key, text)
        extra = {"entries_read": preview.entries_read} if preview.entries_read is not None else {}
        client().xgroup_setid(key, group, preview.position, **extra)
        lag = f"{'at least ' if preview.at_least else ''}{preview.lag:,}"
        return Outcome(True, f"Group {names.show(group)} now reads after {preview.position}; "
                       f"lag {lag}.", 1, details={"position": preview.position,
                                                  "lag": preview.lag})

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
