"""Counting entries for a preview, within a budget.

Redis has no command that counts the entries in an ID range: only walking them does, at
~3 µs an entry (1,000,000 entries held Redis 2.5-4 s in one script, blocking every client).
So a preview walks at most PREVIEW_BUDGET entries in all, in calls of at most
PREVIEW_STEP entries or PREVIEW_STEP_MS each, and says "≥ N" where it had to stop.
"""

from __future__ import annotations

from dataclasses import dataclass

from streams_admin import conf
from streams_admin.operations.scripts import COUNT_STEP
from streams_admin.redis import client, node_client
from streams_admin.values import id_key, text_id


@dataclass(frozen=True)
class Count:
    """A number of entries: exact, or a lower bound when counting stopped at the budget."""

    value: int
    at_least: bool = False

    def __add__(self, other: Count) -> Count:
        return Count(self.value + other.value, self.at_least or other.at_least)

    def __bool__(self) -> bool:
        """True when there may be any: like an int, and "≥ 0" may be more."""
        return self.value > 0 or self.at_least

    def __str__(self) -> str:
        return f"≥ {self.value}" if self.at_least else str(self.value)


@dataclass(frozen=True)
class Walk:
    count: int
    last: str | None  # the last ID reached
    finished: bool  # reached the end of the range, or `upto`


class Budget:
    """Entries one preview may still walk; shared by all its counts."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.left: int = conf.get("PREVIEW_BUDGET")

    def walk(self, command: str, start: str, end: str, *, upto: int | None = None,
             cap: int | None = None, group: bytes = b"") -> Walk:
        """From start towards end (bounds in the command's order), until the range ends,
        `upto` entries were counted, or this walk's share (`cap`) of the budget is spent."""
        allowed = min(self.left, cap if cap is not None else self.left)
        goal = allowed if upto is None else min(upto, allowed)
        count, last = 0, None
        step, micros = conf.get("PREVIEW_STEP"), int(conf.get("PREVIEW_STEP_MS") * 1000)
        while count < goal:
            n, reached, ended = COUNT_STEP(client(), [self.key], [
                command, start, end, min(step, goal - count), micros, group])
            count, self.left = count + n, self.left - n
            if reached:
                last = reached.decode()
                start = f"({last}"
            if ended:
                return Walk(count, last, True)
        return Walk(count, last, upto is not None and count >= upto)

    def count(self, command: str, start: str, end: str, *, cap: int | None = None,
              group: bytes = b"") -> Count:
        walked = self.walk(command, start, end, cap=cap, group=group)
        return Count(walked.count, not walked.finished)


def xinfo(key: bytes) -> tuple[dict, list[dict]]:
    """XINFO STREAM and GROUPS at one moment (MULTI): length, ends and groups agree. On a
    cluster, on the node holding the key: a cluster's own MULTI skips the replies' parsing."""
    pipe = node_client(key).pipeline(transaction=True)
    pipe.xinfo_stream(key)
    pipe.xinfo_groups(key)
    info, groups = pipe.execute()
    return info, groups


def end_id(info: dict, which: str) -> str | None:
    """The ID of XINFO STREAM's "first-entry" or "last-entry"."""
    entry = info.get(which)
    return text_id(entry[0]) if entry else None


def later(bound: str, entry_id: str | None) -> str:
    """The later of an XRANGE start bound ("-", "X" or "(X") and "just after entry_id"."""
    if entry_id is None:
        return bound
    if bound == "-" or id_key(bound.lstrip("(")) <= id_key(entry_id):
        return f"({entry_id}"
    return bound
