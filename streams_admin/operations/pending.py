"""Actions on pending entries: ack, claim, requeue, dead-letter; bulk ones in bounded chunks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from streams_admin import conf, names
from streams_admin.bus import wire
from streams_admin.operations import (
    ActionError,
    Actor,
    Outcome,
    audited,
    check_ids,
    check_name,
    chunks,
    moves,
    plural,
)
from streams_admin.operations.scripts import DEAD_LETTER, REQUEUE
from streams_admin.redis import client
from streams_admin.values import id_key, parse_entry


def ack(actor: Actor, key: bytes, group: bytes, ids: list[str]) -> Outcome:
    def work() -> Outcome:
        chosen = check_ids(ids)
        done = sum(client().xack(key, group, *part) for part in chunks(chosen, 1000))
        gone = len(chosen) - done
        if gone:
            client().xpending(key, group)  # XACK says 0, not NOGROUP, for a destroyed group
        note = f"; {plural(gone, 'was', 'were')} no longer pending (acked or never delivered)" \
            if gone else ""
        return Outcome(True, f"Acknowledged {plural(done, 'entry')}{note}.", done)

    return audited(actor, "ack", key, work, group=group, ids=ids)


def ack_matching(actor: Actor, key: bytes, group: bytes, *, consumer: bytes | None,
                 min_idle_ms: int | None, after: str | None = None) -> Outcome:
    """Ack every pending entry the filter matches, a budget per request; cursor to go on."""

    def work() -> Outcome:
        r = client()
        done, cursor, budget = 0, after, conf.get("ACTION_BUDGET")
        while done < budget:
            rows: list[Any] = r.xpending_range(key, group, f"({cursor}" if cursor else "-", "+",
                                               conf.get("ACTION_CHUNK"), consumername=consumer,
                                               idle=min_idle_ms or None)
            if not rows:
                return Outcome(True, f"Acknowledged {plural(done, 'entry')}.", done)
            ids = [row["message_id"] for row in rows]
            done += r.xack(key, group, *ids)
            cursor = ids[-1].decode()
        return Outcome(True, f"Acknowledged {plural(done, 'entry')} so far…", done,
                       cursor=cursor)

    return audited(actor, "ack-matching", key, work, group=group, consumer=consumer,
                   arguments={"min_idle_ms": min_idle_ms, "after": after})


def claim(actor: Actor, key: bytes, group: bytes, ids: list[str], to: bytes | None,
          min_idle_ms: int) -> Outcome:
    """XCLAIM JUSTID: a manual hand-over is not a delivery, so delivery counts stay."""

    def work() -> Outcome:
        chosen = check_ids(ids)
        consumer = check_name(to, "consumer")
        claimed: list[str] = []
        for part in chunks(chosen, 1000):
            # JUSTID: the IDs. A list[str] will do: redis-py's list type is invariant.
            got: list[Any] = client().xclaim(key, group, consumer, min_idle_ms, part, justid=True)  # type: ignore[arg-type]
            claimed += [i.decode() for i in got]
        skipped = len(chosen) - len(claimed)
        note = (f"; {plural(skipped, 'entry')} not claimed: no longer pending, or taken by "
                f"a consumer less than {min_idle_ms // 1000} s ago") if skipped else ""
        return Outcome(True, f"Claimed {plural(len(claimed), 'entry')} to "
                       f"{names.show(consumer)}{note}.", len(claimed), tuple(claimed))

    return audited(actor, "claim", key, work, group=group, consumer=to, ids=ids,
                   arguments={"min_idle_ms": min_idle_ms})


def claim_idle(actor: Actor, key: bytes, group: bytes, *, source: bytes | None,
               to: bytes | None, min_idle_ms: int, after: str | None = None) -> Outcome:
    """Claim everything idle longer than min_idle_ms, from one consumer or the whole group
    (XAUTOCLAIM), a budget per request; cursor to go on. The dead-consumer fix."""

    def work() -> Outcome:
        consumer = check_name(to, "consumer")
        if source == consumer:
            return Outcome(False, "Pick a consumer other than the one holding the entries.")
        if source is None:
            return _autoclaim(key, group, consumer, min_idle_ms, after or "0-0")
        return _claim_from(key, group, source, consumer, min_idle_ms, after)

    return audited(actor, "claim-idle", key, work, group=group, consumer=to,
                   arguments={"from": names.show(source) if source else "(whole group)",
                              "min_idle_ms": min_idle_ms, "after": after})


def _autoclaim(key: bytes, group: bytes, to: bytes, min_idle_ms: int, start: str) -> Outcome:
    r, done, budget = client(), 0, conf.get("ACTION_BUDGET")
    while done < budget:
        # Raw reply (see redis.py): redis-py drops the cursor from a JUSTID answer.
        reply = r.execute_command("XAUTOCLAIM", key, group, to, min_idle_ms, start,
                                  "COUNT", conf.get("ACTION_CHUNK"), "JUSTID")
        start, claimed = reply[0].decode(), reply[1]
        done += len(claimed)
        if start == "0-0":
            return Outcome(True, f"Claimed {plural(done, 'entry')} to {names.show(to)}.", done)
    return Outcome(True, f"Claimed {plural(done, 'entry')} so far…", done, cursor=start)


def _claim_from(key: bytes, group: bytes, source: bytes, to: bytes, min_idle_ms: int,
                after: str | None) -> Outcome:
    r, done, budget = client(), 0, conf.get("ACTION_BUDGET")
    while done < budget:
        rows: list[Any] = r.xpending_range(key, group, f"({after}" if after else "-", "+",
                                           conf.get("ACTION_CHUNK"), consumername=source,
                                           idle=min_idle_ms or None)
        if not rows:
            return Outcome(True, f"Claimed {plural(done, 'entry')} from {names.show(source)} "
                           f"to {names.show(to)}.", done)
        ids = [row["message_id"] for row in rows]
        done += len(r.xclaim(key, group, to, min_idle_ms, ids, justid=True))
        after = ids[-1].decode()
    return Outcome(True, f"Claimed {plural(done, 'entry')} so far…", done, cursor=after)


@dataclass(frozen=True)
class CopyReach:
    """Another group of the stream, and how many of the selected entries it is already past
    (delivered them, or started after them): a requeued copy is a new entry it gets too."""

    group: bytes
    already_read: int


def requeue_reach(key: bytes, group: bytes, ids: list[str]) -> tuple[CopyReach, ...]:
    chosen = check_ids(ids)
    reach = []
    for g in client().xinfo_groups(key):
        if g["name"] != group:
            last = id_key(g["last-delivered-id"].decode())
            reach.append(CopyReach(g["name"], sum(id_key(i) <= last for i in chosen)))
    return tuple(reach)


def requeue(actor: Actor, key: bytes, group: bytes, ids: list[str], confirm: str = "") -> Outcome:
    """Append a copy (with requeued_from and requeue_count) and ack the original, atomically.
    Every group of the stream gets the copy: with other groups, the group's name is typed."""

    def work() -> Outcome:
        chosen = check_ids(ids)
        if requeue_reach(key, group, chosen) and confirm != names.show(group):
            raise ActionError("Other groups read this stream and will get the copies too: "
                              "type the group's name exactly to requeue anyway, or claim "
                              "the entries to a consumer of this group instead.")
        new, stale, gone = [], 0, 0
        for entry_id in chosen:
            answer = REQUEUE(client(), [key], [group, entry_id])
            if answer == 0:
                stale += 1
            elif answer == -1:
                gone += 1
            else:
                new.append(answer.decode())
        notes = [f"{plural(stale, 'entry')} no longer pending"] if stale else []
        notes += [f"{plural(gone, 'entry')} whose data is gone (ack or dead-letter those)"] \
            if gone else []
        return Outcome(bool(new) or not (stale or gone),
                       f"Requeued {plural(len(new), 'entry')} as new entries"
                       + (f"; skipped {', '.join(notes)}" if notes else "") + ".",
                       len(new), details={"new_ids": new[:20]})

    return audited(actor, "requeue", key, work, group=group, ids=ids)


def dead_letter_key(key: bytes, fields: dict[bytes, bytes]) -> bytes:
    """Where the bus puts an event's dead letters (wire.dead_letter_key): by the entry's
    event_type, else by its stream's name after the prefix. Names may be any bytes."""
    prefix = conf.get("BUS_PREFIX").encode()
    rest = key[len(prefix):] if key.startswith(prefix) else key
    named = wire.event_type_of(prefix, key)
    event_type = fields.get(wire.EVENT_TYPE) or named or rest
    if named is not None and wire.is_tagged(rest):  # the hash-tag naming's
        event_type = wire.hash_tag(event_type.decode("latin-1")).encode("latin-1")
    return prefix + wire.DEADLETTER.encode() + event_type


def dead_letter(actor: Actor, key: bytes, group: bytes, ids: list[str],
                reason: str = "") -> Outcome:
    """Move entries to the bus's dead-letter stream (with the bus's metadata) and ack them."""
    who = getattr(actor.user, "username", "") or "anonymous"

    def work() -> Outcome:
        chosen = check_ids(ids)
        pipe = client().pipeline(transaction=False)
        for entry_id in chosen:
            pipe.xrange(key, entry_id, entry_id, count=1)
        entries = {i: parse_entry(found[0]) if found else None
                   for i, found in zip(chosen, pipe.execute(), strict=True)}
        moved, skipped, two_steps = [], 0, 0
        for entry_id, entry in entries.items():
            fields = {n.raw: v.raw for n, v in entry.fields} if entry else {}
            metadata: list[bytes | str] = [
                wire.ERROR, f"moved by {who} from the dashboard: {reason or 'no reason given'}",
                wire.REASON, b"operator", wire.ORIGINAL_STREAM, key, wire.ORIGINAL_ID, entry_id,
                wire.GROUP, group, wire.DEAD_LETTERED_AT, datetime.now(UTC).isoformat(),
            ]
            target = dead_letter_key(key, fields)
            if moves.atomic(key, target):
                answer = DEAD_LETTER(client(), [key, target], [group, entry_id, *metadata])
            else:  # streams in different cluster slots: no script spans both
                answer = moves.dead_letter(key, group, entry_id, target, metadata)
            if isinstance(answer, bytes):
                moved.append(entry_id)
                two_steps += not moves.atomic(key, target)
            else:
                skipped += 1
        note = f"; {plural(skipped, 'entry')} skipped: no longer pending or data gone" \
            if skipped else ""
        how = moves.said(len(moved) - two_steps, two_steps)
        return Outcome(bool(moved), f"Moved {plural(len(moved), 'entry')} to the dead-letter "
                       f"stream{how}{note}.", len(moved), tuple(moved))

    return audited(actor, "dead-letter", key, work, group=group, ids=ids,
                   arguments={"reason": reason})
