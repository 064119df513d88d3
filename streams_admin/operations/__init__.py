"""The WRITE model: every change an operator can make, validated and audited.

Callers (views) check permissions first; each operation here writes one audit row whatever
happens, and turns Redis' answers (a group destroyed in another tab, an entry acked by its
consumer meanwhile) into an Outcome with a message a person can act on, never a 500.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import redis
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from streams_admin import conf, names, params
from streams_admin.models import AuditEntry

log = logging.getLogger(__name__)


class ActionError(Exception):
    """Input that cannot be acted on; its text is shown to the user."""


@dataclass(frozen=True)
class Actor:
    user: AbstractBaseUser | AnonymousUser
    address: str | None


@dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str
    count: int = 0  # entries (or things) changed
    ids: tuple[str, ...] = ()  # what was changed, for the audit row
    cursor: str | None = None  # set when a long job has more to do: continue from here
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def unfinished(self) -> bool:
        return self.cursor is not None


FRIENDLY = {
    "NOGROUP": "That consumer group does not exist any more (destroyed meanwhile?).",
    "BUSYGROUP": "A group with that name already exists.",
    "WRONGTYPE": "That key is not a stream (any more).",
    "no such key": "The stream does not exist any more.",
    "requires the key to exist": "The stream does not exist any more.",
}


# What Redis adds to an error raised inside a script: its SHA and line (7.0+ after the text,
# 6.x before it; Valkey 9 leaves out the SHA). Meaningless to a reader: the message drops it.
SCRIPT_NOISE = re.compile(r"\s*script: (?:[0-9a-f]{40}, )?on @user_script:\d+\.?\s*\Z"
                          r"|\AError running script \(call to f_[0-9a-f]{40}\): @user_script:\d+: "
                          r"(?:@user_script:\d+: )?(?:ERR )?")


def friendly(error: redis.RedisError) -> str:
    if isinstance(error, redis.ConnectionError | redis.TimeoutError):
        return "Redis is not answering; nothing was changed. Try again."
    text = str(error)
    for marker, message in FRIENDLY.items():
        if marker in text:
            return message
    text = SCRIPT_NOISE.sub("", text).strip().rstrip(".")
    return f"Redis refused: {text[:300]}."


def audited(actor: Actor, action: str, key: bytes, work: Callable[[], Outcome], *,
            group: bytes | None = None, consumer: bytes | None = None,
            ids: Iterable[str] = (), arguments: dict[str, Any] | None = None) -> Outcome:
    """Run work(), record what really happened, and answer with an Outcome."""
    try:
        outcome = work()
    except ActionError as exc:
        outcome = Outcome(False, str(exc))
    except redis.RedisError as exc:
        log.warning("%s on %r failed: %s", action, key, exc)
        outcome = Outcome(False, friendly(exc))
    asked = list(ids)
    touched = list(outcome.ids) or asked
    sample = conf.get("AUDIT_SAMPLE")
    user = actor.user if getattr(actor.user, "pk", None) else None
    AuditEntry.objects.create(  # type: ignore[misc]  # a pk: a saved AUTH_USER_MODEL user
        user=user, username=getattr(actor.user, "username", "") or "anonymous",
        address=actor.address, action=action, key=key, key_text=names.show(key)[:500],
        group=names.show(group)[:500] if group is not None else "",
        consumer=names.show(consumer)[:500] if consumer is not None else "",
        ids=touched[:sample], id_count=max(len(touched), outcome.count),
        arguments={**(arguments or {}), **({"asked_ids": len(asked)} if asked else {}),
                   **outcome.details},
        ok=outcome.ok, result=outcome.message,
    )
    return outcome


def check_ids(ids: Iterable[str]) -> list[str]:
    try:
        chosen = params.entry_ids(ids)
    except params.BadParam as exc:
        raise ActionError(str(exc)) from exc
    if not chosen:
        raise ActionError("Select at least one entry.")
    return chosen


def check_name(name: bytes | None, what: str) -> bytes:
    if not name:
        raise ActionError(f"Give a {what} name.")
    return name


def chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def plural(count: int, word: str, many: str | None = None) -> str:
    """ "1 entry", "2 entries"; `many` for words that do not just take -s or -ies."""
    if count == 1:
        return f"{count:,} {word}"
    return f"{count:,} {many or (word[:-1] + 'ies' if word.endswith('y') else word + 's')}"
