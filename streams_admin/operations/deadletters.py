"""Dead letters back on their streams: re-drive selected ones, or all in bounded steps.

A dead letter is data anyone could write: one naming a stream outside KEY_PATTERN, or with
malformed metadata, is refused and stays where it is; the audit row names every target."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from streams_admin import conf, names
from streams_admin.bus import wire
from streams_admin.dead_letters import metadata
from streams_admin.operations import Actor, Outcome, audited, check_ids, moves, plural
from streams_admin.operations.scripts import REDRIVE
from streams_admin.redis import client


def _dead_letters(key: bytes, ids: list[str]) -> list[tuple[str, bytes | None, str]]:
    """Each dead letter's original stream (None: gone meanwhile), and why it cannot be
    re-driven ("" when it can: see dead_letters.metadata)."""
    pipe = client().pipeline(transaction=False)
    for entry_id in ids:
        pipe.xrange(key, entry_id, entry_id, count=1)
    found: list[tuple[str, bytes | None, str]] = []
    for entry_id, rows in zip(ids, pipe.execute(), strict=True):
        if not rows:
            found.append((entry_id, None, ""))
            continue
        original, _, problem = metadata(dict(zip(rows[0][1][::2], rows[0][1][1::2],
                                                 strict=True)))
        found.append((entry_id, original, problem))
    return found


def redrive(actor: Actor, key: bytes, ids: list[str]) -> Outcome:
    """Put dead letters back on their original streams (atomically per entry). A dead letter
    is data anyone could write: one naming a stream outside KEY_PATTERN is refused, never
    written (nor created) there."""
    targets: dict[str, int] = {}
    refused: dict[str, int] = {}

    def work() -> Outcome:
        moved, skipped, problems, two_steps = [], 0, [], 0
        for entry_id, original, problem in _dead_letters(key, check_ids(ids)):
            if problem:
                problems.append(f"{entry_id} ({problem})")
            elif original is None:
                skipped += 1
            elif not names.in_scope(original):
                _tally(refused, original)
            elif _move(key, entry_id, original):
                moved.append(entry_id)
                _tally(targets, original)
                two_steps += not moves.atomic(key, original)
            else:
                skipped += 1
        outcome = _redriven(moved, skipped, refused, targets, problems)
        how = moves.said(len(moved) - two_steps, two_steps)
        return replace(outcome, message=outcome.message[:-1] + how + ".") if how else outcome

    return audited(actor, "redrive", key, work, ids=ids,
                   arguments={"targets": targets, "refused_targets": refused})


def _move(key: bytes, entry_id: str, original: bytes) -> int | bytes:
    """One script when both streams share a slot; on a cluster otherwise, two steps."""
    if moves.atomic(key, original):
        return REDRIVE(client(), [key, original], [entry_id, *wire.DEAD_LETTER_FIELDS])
    return moves.redrive(key, entry_id, original)


TARGETS_KEPT = 20  # target streams named in one audit row


def _tally(counts: dict[str, int], target: bytes) -> None:
    name = names.show(target)[:500]
    if name in counts or len(counts) < TARGETS_KEPT:
        counts[name] = counts.get(name, 0) + 1


def _redriven(moved: list[str], skipped: int, refused: dict[str, int],
              targets: dict[str, int], problems: list[str]) -> Outcome:
    notes = [f"{plural(skipped, 'entry')} skipped: gone meanwhile"] if skipped else []
    if problems:
        notes.append(f"refused {plural(len(problems), 'entry')}: {'; '.join(problems[:3])}")
    if refused:
        verb = "is" if len(refused) == 1 else "are"
        notes.append(f"{plural(sum(refused.values()), 'entry')} refused: "
                     f"{', '.join(sorted(refused))} {verb} outside the streams this dashboard "
                     f"covers ({conf.get('KEY_PATTERN')}); left in the dead-letter stream")
    where = f" to {', '.join(sorted(targets))}" if targets else ""
    return Outcome((bool(moved) or not skipped) and not refused and not problems,
                   f"Re-drove {plural(len(moved), 'dead letter')}{where}"
                   + (f"; {'; '.join(notes)}" if notes else "") + ".",
                   len(moved), tuple(moved))


def dead_letter_ids(key: bytes, after: str | None, count: int) -> list[str]:
    """The next IDs of a dead-letter stream, for re-driving all of it in bounded steps."""
    rows: Any = client().xrange(key, f"({after}" if after else "-", "+", count=count)  # raw pairs
    return [row[0].decode() for row in rows]


def redrive_all(actor: Actor, key: bytes, after: str | None = None) -> Outcome:
    """Re-drive a chunk after the cursor; call again while the cursor is set. The cursor
    moves past what was refused or skipped, which stays behind in the stream."""
    ids = dead_letter_ids(key, after, conf.get("ACTION_CHUNK"))
    if not ids:
        return Outcome(True, "No dead letters left.")
    outcome = redrive(actor, key, ids)
    more = bool(dead_letter_ids(key, ids[-1], 1))
    return Outcome(outcome.ok, outcome.message, outcome.count, outcome.ids,
                   cursor=ids[-1] if more else None)
