"""Entries as the pages show them: bytes kept faithfully, decoded once, envelopes recognised."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from streams_admin import conf, names
from streams_admin.bus import wire

ENVELOPE_FIELDS = wire.ENVELOPE_FIELDS
# [0-9], not \d (which takes any Unicode digit), and \Z, not $ (which matches before a final
# newline): Redis takes exactly this, each part at most MAX_ID_PART.
ID_RE = re.compile(r"\A[0-9]{1,20}(?:-[0-9]{1,20})?\Z")
MAX_ID_PART = 2**64 - 1


def id_parts(text: str) -> tuple[int, int | None] | None:
    """An entry ID's milliseconds and sequence (None when left out, as in "1700000000000"), or
    None when Redis would refuse it as an ID."""
    if not ID_RE.match(text):
        return None
    ms, _, seq = text.partition("-")
    parts = int(ms), int(seq) if seq else None
    return None if max(part or 0 for part in parts) > MAX_ID_PART else parts


def id_time(entry_id: str) -> datetime | None:
    """An entry ID's milliseconds part as a UTC time (None for 0-0 and IDs past year 9999)."""
    try:
        ms = int(entry_id.split("-", 1)[0])
        return datetime.fromtimestamp(ms / 1000, tz=UTC) if ms else None
    except (ValueError, OverflowError, OSError):
        return None


def id_key(entry_id: str) -> tuple[int, int]:
    """An entry ID as Redis orders it: "5-10" comes after "5-9"."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def text_id(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode("ascii") if isinstance(value, bytes) else value


def human_duration(ms: int | None) -> str:
    if ms is None or ms < 0:
        return "never" if ms == -1 else "n/a"
    seconds = ms // 1000
    if seconds < 1:
        return f"{ms} ms"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(parts[:2])


def human_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""  # unreachable


@dataclass(frozen=True)
class Value:
    """A field name or value: any bytes; a bounded read keeps only the first ones."""

    raw: bytes
    cut: int = 0  # bytes Redis holds past `raw` (the entry page reads a prefix of huge values)

    def __str__(self) -> str:
        return self.text

    @cached_property
    def is_text(self) -> bool:
        return names.is_printable(self.raw)

    @cached_property
    def text(self) -> str:
        """UTF-8 as is; invalid bytes and control characters as escapes."""
        return names.escape(self.raw)

    @property
    def size(self) -> int:
        return len(self.raw) + self.cut

    @property
    def size_text(self) -> str:
        return human_bytes(self.size)

    def head(self, limit: int) -> bytes:
        """The first `limit` bytes, not cutting a UTF-8 character in two."""
        if len(self.raw) <= limit and not self.cut:
            return self.raw
        return _drop_cut_character(self.raw[:limit])

    def preview(self, limit: int) -> str:
        """The first `limit` bytes as text: a preview decodes (and escapes) only what it shows,
        so its cost is its size, not the value's (escapes make binary 4x longer)."""
        return names.escape(self.head(limit))

    def is_long(self, limit: int) -> bool:
        return self.size > limit

    def hex(self, limit: int = 4096) -> str:
        data = self.raw[:limit]
        return " ".join(data[i : i + 16].hex(" ") for i in range(0, len(data), 16))

    @property
    def name_token(self) -> str:
        return names.to_token(self.raw)


def _drop_cut_character(data: bytes) -> bytes:
    """Without the UTF-8 character cut short at its end, if there is one."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80 or byte > 0xF4:  # ASCII, or never UTF-8: nothing to keep whole
            return data
        if byte >= 0xC0:  # the lead byte: does all of its character fit?
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return data[:-back] if need > back else data
    return data


_FLAT_ITEMS_ON_LINES = json.JSONEncoder(ensure_ascii=False, separators=(",\n  ", ": "))


def pretty_json(data: object) -> str:
    """json.dumps(data, indent=2), several times faster for a flat object or array (the usual
    event data): indent= makes json use its pure-Python encoder, separators= keeps the C one,
    and a JSON string never holds a raw newline, so the separator can only land between items.
    """
    items = data.values() if isinstance(data, dict) else data if isinstance(data, list) else None
    if not items or any(isinstance(item, dict | list) for item in items):
        return json.dumps(data, indent=2, ensure_ascii=False)
    text = _FLAT_ITEMS_ON_LINES.encode(data)
    return f"{text[0]}\n  {text[1:-1]}\n{text[-1]}"


@dataclass(frozen=True)
class Envelope:
    """The spec's event envelope: event_id, event_type, timestamp and JSON data."""

    event_id: str
    event_type: str
    timestamp: str
    data: Value

    @cached_property
    def _parsed(self) -> tuple[object | None, bool | None]:
        if self.data.cut:
            return None, None  # only part of it was read: nobody can tell
        try:
            return json.loads(self.data.raw), True
        except ValueError:
            return None, False

    @property
    def data_json(self) -> object | None:
        return self._parsed[0]

    @property
    def data_is_json(self) -> bool | None:
        """Whether data is JSON; None when only part of it was read."""
        return self._parsed[1]

    @cached_property
    def pretty_data(self) -> str:
        if not self.data_is_json:
            return self.data.text
        return pretty_json(self.data_json)

    @property
    def response_stream(self) -> str | None:
        if isinstance(self.data_json, dict):
            stream = self.data_json.get(wire.RESPONSE_STREAM)
            return stream if isinstance(stream, str) else None
        return None


@dataclass(frozen=True)
class Entry:
    id: str
    fields: tuple[tuple[Value, Value], ...]  # in order, duplicates kept
    # A bounded read (streams.entry_slice) holds fields[first_field:] of field_count, and the
    # entry's size in Redis; -1: `fields` is the whole entry. A page's row (rows.RowFields)
    # holds the first fields, and fields it looks for by name further on.
    first_field: int = 0
    field_count: int = -1
    stored_size: int = -1

    @property
    def time(self) -> datetime | None:
        return id_time(self.id)

    @property
    def size(self) -> int:
        if self.stored_size >= 0:
            return self.stored_size
        return sum(name.size + value.size for name, value in self.fields)

    @property
    def total_fields(self) -> int:
        return self.field_count if self.field_count >= 0 else len(self.fields)

    @property
    def is_whole(self) -> bool:
        """Every field and every byte of the entry was read."""
        return (self.first_field == 0 and self.total_fields == len(self.fields)
                and not any(name.cut or value.cut for name, value in self.fields))

    def field(self, name: bytes) -> Value | None:
        """The first field of that name (the bus's dead-letter metadata, say), or None."""
        return next((value for key, value in self.fields if key.raw == name), None)

    @cached_property
    def envelope(self) -> Envelope | None:
        # Among the first ROW_FIELDS only, as a list row reads it (rows.RowFields): an entry
        # looks the same on a bounded page, in the tail and on its own page.
        by_name: dict[bytes, Value] = {}
        for name, value in self.fields[:conf.get("ROW_FIELDS")]:
            if not name.cut:
                by_name.setdefault(name.raw, value)
        if self.first_field or not all(field in by_name for field in ENVELOPE_FIELDS):
            return None
        event_id, event_type, timestamp = (by_name[f].preview(1024) for f in ENVELOPE_FIELDS[:3])
        return Envelope(event_id, event_type, timestamp, data=by_name[wire.DATA])

    @property
    def data_position(self) -> int:
        """The position of the field the envelope's data comes from."""
        return next(self.first_field + i for i, (name, _) in enumerate(self.fields)
                    if name.raw == wire.DATA and not name.cut)

    @property
    def other_fields(self) -> tuple[tuple[Value, Value], ...]:
        """Fields beyond the envelope's first four (the page shows them under it)."""
        seen: set[bytes] = set()
        rest = []
        for name, value in self.fields:
            if name.raw in ENVELOPE_FIELDS and name.raw not in seen:
                seen.add(name.raw)
                continue
            rest.append((name, value))
        return tuple(rest)

    def xadd_command(self, key: bytes) -> str:
        """The redis-cli command that adds this entry again (shell-quoted)."""
        parts = ["XADD", _cli_quote(key), "*"]
        for name, value in self.fields:
            parts += [_cli_quote(name.raw), _cli_quote(value.raw)]
        return " ".join(parts)


def _cli_quote(raw: bytes) -> str:
    """redis-cli's double-quoted string syntax, which takes \\xHH escapes for any byte."""
    out = []
    for byte in raw:
        ch = chr(byte)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 32 <= byte < 127:
            out.append(ch)
        else:
            out.append(f"\\x{byte:02x}")
    return '"' + "".join(out) + '"'


def parse_entry(item: Sequence[Any]) -> Entry:
    entry_id, flat = item
    pairs = tuple((Value(flat[i]), Value(flat[i + 1])) for i in range(0, len(flat), 2))
    return Entry(id=text_id(entry_id) or "", fields=pairs)


def parse_time(text: str) -> int | None:
    """Milliseconds for an ISO date-time (UTC unless it says otherwise), else None."""
    text = text.strip()
    if not text.isascii() or len(text) > 64:  # ISO forms are shorter; this bounds the work
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)
