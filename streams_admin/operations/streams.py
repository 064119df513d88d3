"""Streams and entries: trim (with a preview), delete, publish, re-drive dead letters."""

from __future__ import annotations

import time
from dataclasses import dataclass

from asgiref.sync import async_to_sync

from streams_admin import conf, names, params
from streams_admin.bus import EventBus
from streams_admin.dead_letters import metadata
from streams_admin.filters import id_before
from streams_admin.operations import (
    ActionError,
    Actor,
    Outcome,
    audited,
    check_ids,
    chunks,
    plural,
)
from streams_admin.operations.scripts import COUNT_PENDING, COUNT_RANGE, ID_AT, REDRIVE, script
from streams_admin.redis import client
from streams_admin.values import id_parts

COUNT_LIMIT = 1_000_000  # a preview counts this far, then says "at least"
DEAD_LETTER_FIELDS = (b"error", b"reason", b"delivery_count", b"original_stream",
                      b"original_id", b"group", b"consumer", b"dead_lettered_at")


@dataclass(frozen=True)
class GroupRisk:
    group: bytes
    pending: int  # entries to be removed that the group still has pending
    undelivered: int  # entries to be removed that the group has not read yet


@dataclass(frozen=True)
class TrimPreview:
    strategy: str  # "maxlen" or "minid"
    threshold: str  # as Redis gets it
    approximate: bool
    removed: int
    at_least: bool
    groups: tuple[GroupRisk, ...]

    @property
    def at_risk(self) -> int:
        return sum(g.pending + g.undelivered for g in self.groups)


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


def preview_trim(key: bytes, strategy: str, text: str, approximate: bool) -> TrimPreview:
    """What XTRIM would remove, and how much of it some group still needs."""
    threshold = _threshold(strategy, text)
    r = client()
    if strategy == "maxlen":
        removed, at_least = max(0, r.xlen(key) - int(threshold)), False
        cut = script(ID_AT)(keys=[key], args=[removed]) if removed else None
        upper = cut.decode() if cut else None
    else:  # below the threshold, inclusive: Redis refuses "(0-0" as an upper bound
        below = id_before(threshold)
        removed, at_least = script(COUNT_RANGE)(keys=[key], args=["-", below, COUNT_LIMIT])
        upper = below if removed else None
    risks = []
    if upper is not None:
        for group in r.xinfo_groups(key):
            pending, _ = script(COUNT_PENDING)(keys=[key], args=[group["name"], upper,
                                                                 COUNT_LIMIT])
            last = group["last-delivered-id"].decode()
            undelivered, _ = script(COUNT_RANGE)(keys=[key], args=[f"({last}", upper,
                                                                   COUNT_LIMIT])
            risks.append(GroupRisk(group["name"], pending, undelivered))
    return TrimPreview(strategy, threshold, approximate, removed, bool(at_least), tuple(risks))


def trim(actor: Actor, key: bytes, strategy: str, text: str, approximate: bool,
         override: bool, confirm: str) -> Outcome:
    def work() -> Outcome:
        if confirm != names.show(key):
            raise ActionError("Type the stream's name exactly to trim it.")
        preview = preview_trim(key, strategy, text, approximate)
        if preview.at_risk and not override:
            return Outcome(False, f"Refused: {plural(preview.at_risk, 'entry')} to be trimmed "
                           "are still pending or not yet delivered. Tick the override to "
                           "trim anyway.", details={"at_risk": preview.at_risk})
        options = {preview.strategy: preview.threshold, "approximate": approximate}
        if preview.strategy == "maxlen":
            options["maxlen"] = int(preview.threshold)
        removed = client().xtrim(key, **options)
        return Outcome(True, f"Trimmed {plural(removed, 'entry')}.", removed,
                       details={"threshold": preview.threshold, "at_risk": preview.at_risk})

    return audited(actor, "trim", key, work, arguments={
        "strategy": strategy, "threshold": text, "approximate": approximate,
        "override": override})


def delete_entries(actor: Actor, key: bytes, ids: list[str]) -> Outcome:
    def work() -> Outcome:
        chosen = check_ids(ids)
        deleted = sum(client().xdel(key, *part) for part in chunks(chosen, 1000))
        note = f"; {plural(len(chosen) - deleted, 'was', 'were')} already gone" \
            if deleted < len(chosen) else ""
        return Outcome(True, f"Deleted {plural(deleted, 'entry')}{note}.", deleted)

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


def publish(actor: Actor, event_type: str, data: str, correlation_id: str) -> Outcome:
    """Publish through the bus, so the entry is exactly what services publish."""
    prefix = conf.get("BUS_PREFIX")
    key = f"{prefix}{event_type.strip()}".encode()

    def work() -> Outcome:
        if not event_type.strip():
            raise ActionError("Give an event type, like task.created.")
        if not names.in_scope(key):
            raise ActionError(f"Not published: {names.out_of_scope(key)}")
        try:
            payload = params.json_value(data or "null")
        except params.BadParam as exc:
            raise ActionError(str(exc)) from exc
        event_id = async_to_sync(_publish)(event_type.strip(), payload,
                                           correlation_id.strip() or None)
        return Outcome(True, f"Published {event_type.strip()} event {event_id}.", 1,
                       details={"event_id": event_id, "stream": names.to_token(key)})

    return audited(actor, "publish", key, work,
                   arguments={"event_type": event_type, "correlation_id": correlation_id})


async def _publish(event_type: str, payload: object, correlation_id: str | None) -> str:
    bus = EventBus(redis_url=conf.redis_url(), prefix=conf.get("BUS_PREFIX"))
    try:
        return await bus.publish(event_type, payload, correlation_id=correlation_id)
    finally:
        await bus.aclose()


def redrive(actor: Actor, key: bytes, ids: list[str]) -> Outcome:
    """Put dead letters back on their original streams (atomically per entry)."""

    def work() -> Outcome:
        chosen = check_ids(ids)
        pipe = client().pipeline(transaction=False)
        for entry_id in chosen:
            pipe.xrange(key, entry_id, entry_id, count=1)
        found = pipe.execute()
        run, moved, skipped, problems = script(REDRIVE), [], 0, []
        for entry_id, rows in zip(chosen, found, strict=True):
            fields = dict(zip(rows[0][1][::2], rows[0][1][1::2], strict=True)) if rows else {}
            original, _, problem = metadata(fields)
            if rows and problem:
                problems.append(f"{entry_id} ({problem})")
                continue
            answer = run(keys=[key, original], args=[entry_id, *DEAD_LETTER_FIELDS]) \
                if rows else 0
            if answer:
                moved.append(entry_id)
            else:
                skipped += 1
        notes = [f"{plural(skipped, 'entry')} skipped: gone meanwhile"] if skipped else []
        if problems:
            notes.append(f"refused {plural(len(problems), 'entry')}: {'; '.join(problems[:3])}")
        return Outcome(bool(moved) or not (skipped or problems),
                       f"Re-drove {plural(len(moved), 'dead letter')} to their streams"
                       + (f"; {'; '.join(notes)}" if notes else "") + ".",
                       len(moved), tuple(moved))

    return audited(actor, "redrive", key, work, ids=ids)


def dead_letter_ids(key: bytes, after: str | None, count: int) -> list[str]:
    """The next IDs of a dead-letter stream, for re-driving all of it in bounded steps."""
    rows = client().xrange(key, f"({after}" if after else "-", "+", count=count)
    return [row[0].decode() for row in rows]


def redrive_all(actor: Actor, key: bytes) -> Outcome:
    """Re-drive a budget's worth from the start; call again while the cursor is set."""
    ids = dead_letter_ids(key, None, conf.get("ACTION_CHUNK"))
    if not ids:
        return Outcome(True, "No dead letters left.")
    outcome = redrive(actor, key, ids)
    more = bool(dead_letter_ids(key, None, 1)) and outcome.count > 0
    return Outcome(outcome.ok, outcome.message, outcome.count, outcome.ids,
                   cursor="next" if more else None)
