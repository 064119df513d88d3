"""Keys, group and consumer names are bytes; these helpers carry them through URLs and pages.

A readable name goes into the URL as it is; any other (invalid UTF-8, "/", control
characters, a leading "~", "." or "..") goes as "~" + base64url, so every name round-trips.
"""

from __future__ import annotations

import base64
import binascii
import re
from functools import lru_cache

from streams_admin import conf

_UNSAFE = {".", ".."}


def _readable(name: bytes) -> str | None:
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text or text in _UNSAFE or text.startswith("~") or "/" in text:
        return None
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        return None
    return text


def to_token(name: bytes) -> str:
    text = _readable(name)
    if text is not None:
        return text
    return "~" + base64.urlsafe_b64encode(name).decode("ascii").rstrip("=")


def from_token(token: str) -> bytes:
    if not token.startswith("~"):
        return token.encode("utf-8")
    raw = token[1:]
    try:
        return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not a name token: {token!r}") from exc


class NameConverter:
    """URL converter: one path segment <-> bytes."""

    regex = r"[^/]+"

    def to_python(self, value: str) -> bytes:
        return from_token(value)

    def to_url(self, value: bytes) -> str:
        return to_token(value)


@lru_cache(maxsize=64)
def glob(pattern: str) -> re.Pattern[bytes]:
    """A Redis glob (as SCAN MATCH reads it) as a regex over bytes: * ? [abc] [^a-z] \\x."""
    p = pattern.encode("utf-8")
    out: list[bytes] = []
    i = 0
    while i < len(p):
        c = p[i:i + 1]
        if c == b"*":
            out.append(b".*")
        elif c == b"?":
            out.append(b".")
        elif c == b"[":
            i += 1
            negate = p[i:i + 1] == b"^"
            i += negate
            items: list[bytes] = []
            while i < len(p) and p[i:i + 1] != b"]":
                if p[i:i + 1] == b"\\" and i + 1 < len(p):
                    i += 1
                    items.append(re.escape(p[i:i + 1]))
                elif p[i + 1:i + 2] == b"-" and i + 2 < len(p):
                    low, high = sorted((p[i], p[i + 2]))
                    items.append(re.escape(bytes([low])) + b"-" + re.escape(bytes([high])))
                    i += 2
                else:
                    items.append(re.escape(p[i:i + 1]))
                i += 1
            if items:
                out.append((b"[^" if negate else b"[") + b"".join(items) + b"]")
            else:  # "[]" matches nothing, "[^]" any one byte
                out.append(b"." if negate else b"(?!)")
        elif c == b"\\" and i + 1 < len(p):
            i += 1
            out.append(re.escape(p[i:i + 1]))
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile(b"".join(out) + rb"\Z", re.DOTALL)


def in_scope(key: bytes) -> bool:
    """Is this stream one the dashboard shows (settings KEY_PATTERN)?"""
    pattern = conf.get("KEY_PATTERN")
    return pattern == "*" or glob(pattern).match(key) is not None


def out_of_scope(key: bytes) -> str:
    return (f"{show(key)} is not among the streams this dashboard shows (keys matching "
            f"{conf.get('KEY_PATTERN')}, set by STREAMS_ADMIN_KEY_PATTERN).")


_LINE_BREAKS_AND_TABS = str.maketrans("", "", "\n\r\t")


def is_printable(raw: bytes) -> bool:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return text.isprintable() or text.translate(_LINE_BREAKS_AND_TABS).isprintable()


def escape(raw: bytes) -> str:
    """Printable UTF-8 as it is; anything else as Python-style \\x escapes, so no byte hides."""
    return raw.decode("utf-8") if is_printable(raw) else repr(raw)[2:-1]


def show(name: bytes) -> str:
    """Text to show for a key, group or consumer name."""
    return escape(name)
