"""READ: which actions the Redis user's ACL forbids, and why, so pages show them disabled.

Asked with `ACL DRYRUN user command args…` (Redis 7.0+; the user needs `+acl|dryrun`, see the
README's ACL lines): one pipeline for a page's actions, each answer kept ACL_TTL seconds per
user, action and key (an ACL can differ per key pattern). Where DRYRUN is missing or refused
nothing is known beforehand: the action runs, Redis answers NOPERM, and that answer is learned
the same way. Nothing here changes Redis: DRYRUN runs nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping

import redis

from streams_admin import conf
from streams_admin.bus import connect
from streams_admin.redis import UNAVAILABLE, node_client

ACL_TTL = 10.0  # seconds an answer is kept: an ACL change shows within this
K, G, C, ID = "{key}", "g", "c", "0-0"  # a command's arguments: the key is the page's own
SCRIPT = ("EVALSHA", "0" * 40, "1", K)  # a script runs only what the user may run inside it

# The commands each action sends (scripts: the commands inside them too).
COMMANDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "ack": (("XACK", K, G, ID),),
    "ack-matching": (("XACK", K, G, ID),),
    "claim": (("XCLAIM", K, G, C, "0", ID),),
    "claim-idle": (("XAUTOCLAIM", K, G, C, "0", ID),),
    "requeue": (SCRIPT, ("XADD", K, "*", "f", "v"), ("XACK", K, G, ID)),
    "dead-letter": (SCRIPT, ("XADD", K, "*", "f", "v"), ("XACK", K, G, ID)),
    "publish": (("XADD", K, "*", "f", "v"),),
    "create-group": (("XGROUP", "CREATE", K, G, "$"),),
    "create-consumer": (("XGROUP", "CREATECONSUMER", K, G, C),),
    "redrive": (SCRIPT, ("XADD", K, "*", "f", "v"), ("XDEL", K, ID)),
    "set-id": (("XGROUP", "SETID", K, G, "$"), ("MULTI",)),  # previews: MULTI … EXEC
    "destroy-group": (("XGROUP", "DESTROY", K, G),),
    "delete-consumer": (("XGROUP", "DELCONSUMER", K, G, C),),
    "trim": (("XTRIM", K, "MAXLEN", "0"), ("MULTI",)),
    "delete-entries": (("XDEL", K, ID),),
    "delete-stream": (("UNLINK", K),),
}

# (URL, user, action, key) -> (until when the answer holds, the command refused or "").
_answers: dict[tuple[str, str, str, bytes], tuple[float, str]] = {}
_no_dryrun: dict[tuple[str, str], float] = {}  # until when DRYRUN is known to be refused


def user() -> str:
    return connect.username(conf.redis_url(), conf.redis_options())


def reason(command: str) -> str:
    return (f"The Redis user “{user()}” may not run {command} (its ACL): "
            "this action is disabled.")


def refusal(action: str, key: bytes | None) -> str:
    """Why the Redis ACL forbids action on key ("" when allowed or not known)."""
    command = forbidden((action,), key).get(action)
    return reason(command) if command else ""


def forbidden(actions: tuple[str, ...], key: bytes | None) -> dict[str, str]:
    """The refused ones among actions on key, each with the command the ACL refuses."""
    key = key or conf.get("BUS_PREFIX").encode()
    now, who = time.monotonic(), (conf.redis_url(), user())
    known = {a: _answers.get((*who, a, key)) for a in actions}
    missing = [a for a, answer in known.items() if answer is None or answer[0] < now]
    if missing and _no_dryrun.get(who, 0.0) < now:
        known |= _dry_run(missing, key, who, now)
    return {a: answer[1] for a, answer in known.items()
            if answer is not None and answer[0] >= now and answer[1]}


def _dry_run(actions: list[str], key: bytes, who: tuple[str, str],
             now: float) -> dict[str, tuple[float, str]]:
    asked = [(a, command) for a in actions for command in COMMANDS.get(a, ())]
    try:
        pipe = node_client(key).pipeline(transaction=False)
        for _, command in asked:
            pipe.execute_command("ACL", "DRYRUN", who[1],
                                 *(key if part == K else part for part in command))
        replies = pipe.execute(raise_on_error=False)
    except (*UNAVAILABLE, redis.RedisError):
        return {}  # Redis down: the page's own reads give the banner
    if any(isinstance(reply, Exception) for reply in replies):  # 6.2, or DRYRUN refused
        _no_dryrun[who] = now + ACL_TTL
        return {}
    found = {a: (now + ACL_TTL, "") for a in actions}
    for (action, command), reply in zip(asked, replies, strict=True):
        if reply not in (b"OK", "OK") and not found[action][1]:
            found[action] = (now + ACL_TTL, _name(command))
    if len(_answers) > 10_000:  # many keys seen: start over rather than grow
        _answers.clear()
    for action, answer in found.items():
        _answers[(*who, action, key)] = answer
    return found


def _name(command: tuple[str, ...]) -> str:
    return " ".join(command[:2]) if command[0] == "XGROUP" else command[0]


def learn(action: str, key: bytes | None, message: str) -> str:
    """A NOPERM answer Redis gave the action: shown disabled from now on, for a while.
    Returns what to tell the user instead of Redis's sentence ("" when not a NOPERM)."""
    if "NOPERM" not in message and "no permissions" not in message:
        return ""
    key = key or conf.get("BUS_PREFIX").encode()
    command = _name(COMMANDS.get(action, ((action.upper(),),))[0])
    _answers[(conf.redis_url(), user(), action, key)] = (time.monotonic() + ACL_TTL, command)
    return reason(command)


class Refusals(Mapping[str, str]):
    """For templates: `acl.ack` is why ack is disabled ("" when it is not); `acl` is true
    when some action is. Asked once, when a template first looks."""

    def __init__(self, key: bytes | None) -> None:
        self.key = key
        self._found: dict[str, str] | None = None  # action -> command refused

    def _all(self) -> dict[str, str]:
        if self._found is None:
            self._found = forbidden(tuple(COMMANDS), self.key)
        return self._found

    def __getitem__(self, action: str) -> str:
        action = action.replace("_", "-")
        if action not in COMMANDS:  # not an action: a template's `acl.commands`, say
            raise KeyError(action)
        command = self._all().get(action)
        return reason(command) if command else ""

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    @property
    def commands(self) -> str:
        """What the user may not run, for the page's note."""
        return ", ".join(sorted(set(self._all().values())))
