"""Moving an entry between two streams (dead-letter, re-drive) on a cluster.

One script over both keys is atomic, but a cluster runs a script only when all its keys
hash to one slot (CROSSSLOT otherwise). So where the two streams share a slot (a {tag} in
both names, or a standalone server) the move stays one atomic script; otherwise it goes in
two steps in an order that may duplicate but never loses: first the copy is added to the
target, carrying where it came from (stream and ID), then the source is acked or deleted.
A failure between the steps leaves the source in place; the retry finds its own copy among
the target's newest COPY_LOOKBACK entries and does not add it again (older than that, or
two operators at once: a duplicate, which consumers of an at-least-once bus already meet).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import redis
from redis.cluster import key_slot

from streams_admin import names
from streams_admin.bus import wire
from streams_admin.operations import ActionError, plural
from streams_admin.operations.scripts import COPY_ONCE
from streams_admin.redis import client, is_cluster

COPY_LOOKBACK = 100  # newest entries of the target a retry looks through for its own copy

ATOMIC = "atomic"
TWO_STEPS = "two steps on this cluster: may duplicate, never loses"

# What a re-driven copy carries on a cluster in two steps: the dead-letter stream and ID.
REDRIVEN_FROM = b"redriven_from"
REDRIVEN_ID = b"redriven_id"


def atomic(source: bytes, target: bytes) -> bool:
    """Whether one script may move an entry from source to target."""
    return not is_cluster() or key_slot(source) == key_slot(target)


def how(source: bytes, targets: Iterable[bytes]) -> str:
    """What a page says of moves from source to targets: "" on a standalone server."""
    if not is_cluster():
        return ""
    kinds = [atomic(source, target) for target in set(targets)]
    if not kinds or all(kinds):
        return ATOMIC if kinds else ""
    if not any(kinds):
        return TWO_STEPS
    return f"{ATOMIC} where both streams share a slot, otherwise {TWO_STEPS}"


def said(count_atomic: int, count_two_steps: int) -> str:
    """The result message's note on how the entries moved ("" when not a cluster)."""
    if not is_cluster() or not (count_atomic or count_two_steps):
        return ""
    parts = [f"{plural(count_atomic, 'entry')} {ATOMIC}"] if count_atomic else []
    parts += [f"{plural(count_two_steps, 'entry')} in {TWO_STEPS}"] if count_two_steps else []
    return f" ({'; '.join(parts)})"


def _copy(target: bytes, markers: list[bytes | str], fields: list[bytes | str]) -> bytes:
    new_id, _ = COPY_ONCE(client(), [target], [COPY_LOOKBACK, *markers, *fields])
    return new_id


def dead_letter(key: bytes, group: bytes, entry_id: str, target: bytes,
                metadata: list[bytes | str]) -> int | bytes:
    """DEAD_LETTER's work in two steps: the answers of that script (0: no longer pending,
    -1: data gone, else the dead letter's ID). metadata carries original_stream/_id."""
    r = client()
    pending = r.xpending_range(key, group, entry_id, entry_id, 1)
    if not pending:
        return 0
    found: Any = r.xrange(key, entry_id, entry_id, count=1)  # raw pairs (redis._keep_pairs)
    if not found:
        return -1
    fields = [*found[0][1], *metadata,
              wire.DELIVERY_COUNT, str(pending[0]["times_delivered"]),
              wire.CONSUMER, pending[0]["consumer"]]
    new_id = _copy(target, [wire.ORIGINAL_STREAM, key, wire.ORIGINAL_ID, entry_id], fields)
    _second_step(lambda: r.xack(key, group, entry_id), entry_id, target, "acked")
    return new_id


def redrive(key: bytes, entry_id: str, original: bytes) -> int | bytes:
    """REDRIVE's work in two steps: 0 when the dead letter is gone, else the new entry's ID.
    The copy carries redriven_from/redriven_id (the dead letter) so a retry knows it."""
    r = client()
    found: Any = r.xrange(key, entry_id, entry_id, count=1)  # raw pairs (redis._keep_pairs)
    if not found:
        return 0
    skip = {*wire.DEAD_LETTER_FIELDS, REDRIVEN_FROM, REDRIVEN_ID}
    flat = found[0][1]
    fields = [part for name, value in zip(flat[::2], flat[1::2], strict=True)
              if name not in skip for part in (name, value)] or [wire.DATA, b"null"]
    markers: list[bytes | str] = [REDRIVEN_FROM, key, REDRIVEN_ID, entry_id]
    new_id = _copy(original, markers, [*fields, *markers])
    _second_step(lambda: r.xdel(key, entry_id), entry_id, original, "deleted")
    return new_id


def _second_step(step: Callable[[], object], entry_id: str, target: bytes, done: str) -> None:
    """Redis failing between the steps: say what is where (never "nothing was changed")."""
    try:
        step()
    except redis.RedisError as exc:
        raise ActionError(
            f"Stopped between the two steps ({type(exc).__name__}): {entry_id} is copied to "
            f"{names.show(target)} but not yet {done}. Nothing is lost: try again, and the "
            f"retry finds that copy instead of adding another.") from exc

