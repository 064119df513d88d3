"""What users type: parsed and checked in one place, with a message for them when it is wrong.

Entry IDs, times, durations, names and JSON from query strings, forms and URLs all come through
here, so no hostile value (an ID past 2^64, Unicode digits, a trailing newline, a 100,000-digit
number, JSON nested 100,000 deep) reaches Redis or a parser that would answer with a 500.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from itertools import accumulate

from django.http import QueryDict

from streams_admin import conf, names
from streams_admin.values import ID_RE, MAX_ID_PART, id_parts, parse_time

__all__ = ["ID_RE", "BadParam"]  # ID_RE: the live tail's resume check reads it from here

# Digits bounded before any conversion: float("9" * 100_000) is inf, and int(inf) raises.
DURATION_RE = re.compile(r"\s*([0-9]{1,12}(?:\.[0-9]{1,6})?)\s*(ms|s|m|h|d)?\s*\Z")
UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
MAX_DURATION_MS = 100 * 365 * 86_400_000  # Redis takes up to 2^63 ms; a century says enough
MAX_JSON_DEPTH = 64  # the entry page pretty-prints data recursively; services nest far less
MAX_JSON_CHARS = 1 << 20  # an event typed into a form; every viewer of the stream reads it
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH = {"[": 1, "{": 1, "]": -1, "}": -1}
LAST_ID = f"{MAX_ID_PART}-{MAX_ID_PART}"


class BadParam(ValueError):
    """A parameter the user typed that means nothing; its text is shown to them."""


def page_size(query: QueryDict) -> int:
    sizes = conf.get("PAGE_SIZES")
    size = whole_number(query.get("size"), 0)
    return size if size in sizes else conf.get("PAGE_SIZE")


def page_number(text: str | None) -> int:
    """A 1-based page number; anything else is the first page."""
    return max(1, whole_number(text, 1))


def _shown(text: str) -> str:
    return text if len(text) <= 60 else text[:60] + "…"


def entry_id(text: str | None) -> str | None:
    """A stream entry ID the user gave (a cursor), as Redis writes it; None when empty."""
    if not text:
        return None
    parts = id_parts(text)
    if parts is None:
        raise BadParam(f"“{_shown(text)}” is not a stream entry ID (like 1700000000000-0, each "
                       f"part at most {MAX_ID_PART}).")
    ms, seq = parts
    return f"{ms}" if seq is None else f"{ms}-{seq}"


def entry_ids(texts: Iterable[str]) -> list[str]:
    """Selected entry IDs, each checked, duplicates dropped, in order."""
    chosen = [text.strip() for text in texts if text.strip()]
    bad = [text for text in chosen if id_parts(text) is None]
    if bad:
        raise BadParam(f"Not entry IDs: {', '.join(_shown(text) for text in bad[:5])}.")
    return list(dict.fromkeys(entry_id(text) or "" for text in chosen))


def before_id(text: str | None) -> str | None:
    """A cursor that entries come before (the caller makes it exclusive, "(" + it): refused at
    0-0, below which nothing lies and which Redis refuses as an exclusive upper bound."""
    cursor = entry_id(text)
    if cursor is not None and id_parts(cursor) == (0, 0):
        raise BadParam("Nothing comes before 0-0, the lowest entry ID.")
    return cursor


def after_id(text: str | None) -> str | None:
    """A cursor that entries come after (exclusive): refused at the highest possible ID,
    after which nothing lies and which Redis refuses as an exclusive lower bound."""
    cursor = entry_id(text)
    if cursor == LAST_ID:
        raise BadParam(f"Nothing comes after {LAST_ID}, the highest entry ID.")
    return cursor


def moment_ms(text: str) -> int:
    """A date-time as milliseconds since 1970 (UTC unless it says so), as an ID's first part."""
    ms = parse_time(text)
    if ms is None or not 0 <= ms <= MAX_ID_PART:
        raise BadParam(f"“{_shown(text.strip())}” is neither an entry ID nor a date-time like "
                       "2026-11-28T10:00.")
    return ms


def id_or_time(text: str) -> str:
    """An upper bound for "jump to": an entry ID, or a date-time (UTC unless it says so)."""
    if id_parts(text.strip()) is not None:
        return entry_id(text.strip()) or ""
    return f"{moment_ms(text)}-{MAX_ID_PART}"


def whole_number(text: str | None, default: int) -> int:
    """A count the user typed (ASCII digits, below 2^63 as Redis counts take); else default."""
    text = (text or "").strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        return default
    return int(text)


def duration_ms(text: str | None) -> int | None:
    """A minimum idle time like "90", "90s", "5m", "2h" (plain numbers are seconds)."""
    if not text or not text.strip():
        return None
    match = DURATION_RE.match(text)
    if not match:
        raise BadParam(f"“{_shown(text)}” is not a duration (try 30s, 5m, 2h).")
    ms = int(float(match[1]) * UNIT_MS[match[2] or "s"])
    if ms > MAX_DURATION_MS:
        raise BadParam(f"“{_shown(text)}” is longer than a century; try a shorter duration.")
    return ms


def json_value(text: str) -> object:
    """JSON the user typed. Its nesting is measured first (brackets outside strings), since
    json.loads recurses once per level and deep data breaks everything that reads it later."""
    if len(text) > MAX_JSON_CHARS:
        raise BadParam(f"The data is longer than {MAX_JSON_CHARS:,} characters.")
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    if max(accumulate(_DEPTH[ch] for ch in brackets), default=0) > MAX_JSON_DEPTH:
        raise BadParam(f"The data is nested deeper than {MAX_JSON_DEPTH} levels.")
    try:
        return json.loads(text)
    except RecursionError as exc:  # not reached with the bound above; a last guard
        raise BadParam("The data is nested too deeply.") from exc
    except ValueError as exc:
        raise BadParam(f"The data is not valid JSON: {exc}.") from exc


def name(text: str | None) -> bytes | None:
    if not text:
        return None
    try:
        return names.from_token(text)
    except ValueError as exc:
        raise BadParam(str(exc)) from exc
