"""Keys, group and consumer names are bytes; these helpers carry them through URLs and pages.

A readable name goes into the URL as it is; any other (invalid UTF-8, "/", control
characters, a leading "~", "." or "..") goes as "~" + base64url, so every name round-trips.
"""

from __future__ import annotations

import base64
import binascii

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
