"""Query parameters: parsed and checked, with a message for the user when they are wrong."""

from __future__ import annotations

import re

from django.http import QueryDict

from streams_admin import conf, names
from streams_admin.values import ID_RE, parse_time

DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


class BadParam(ValueError):
    """A parameter the user typed that means nothing; its text is shown to them."""


def page_size(query: QueryDict) -> int:
    sizes = conf.get("PAGE_SIZES")
    try:
        size = int(query.get("size", conf.get("PAGE_SIZE")))
    except ValueError:
        return conf.get("PAGE_SIZE")
    return size if size in sizes else conf.get("PAGE_SIZE")


def entry_id(text: str | None) -> str | None:
    """A stream ID the user gave (as a cursor), or None; "(" exclusive prefix not allowed."""
    if not text:
        return None
    if not ID_RE.match(text):
        raise BadParam(f"“{text}” is not a stream entry ID (like 1700000000000-0).")
    return text


def id_or_time(text: str) -> str:
    """An upper bound for "jump to": an entry ID, or a date-time (UTC unless it says so)."""
    text = text.strip()
    if ID_RE.match(text):
        return text
    ms = parse_time(text)
    if ms is None or ms < 0:
        raise BadParam(f"“{text}” is neither an entry ID nor a date-time like 2026-11-28T10:00.")
    return f"{ms}-18446744073709551615"


def duration_ms(text: str | None) -> int | None:
    """A minimum idle time like "90", "90s", "5m", "2h" (plain numbers are seconds)."""
    if not text or not text.strip():
        return None
    match = DURATION_RE.match(text)
    if not match:
        raise BadParam(f"“{text}” is not a duration (try 30s, 5m, 2h).")
    return int(float(match[1]) * UNIT_MS[match[2] or "s"])


def name(text: str | None) -> bytes | None:
    if not text:
        return None
    try:
        return names.from_token(text)
    except ValueError as exc:
        raise BadParam(str(exc)) from exc
