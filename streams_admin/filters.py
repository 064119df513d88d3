"""What a live tail lets through: parsed once from the socket's query, applied server-side."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs

from streams_admin import names, params
from streams_admin.values import MAX_ID_PART, Entry, id_parts

MAX_SEQ = MAX_ID_PART
FILTER_PARAMS = ("type", "field", "op", "value", "q")  # EntryFilter.from_query reads these


def id_before(entry_id: str) -> str:
    """The greatest ID below entry_id (a checked one), so "(id_before(X)" starts a range at X
    inclusive; "0-0" for 0-0 itself, which no entry can have."""
    parts = id_parts(entry_id)
    if parts is None:
        raise ValueError(f"not an entry ID: {entry_id!r}")
    ms, seq = parts
    if seq:
        return f"{ms}-{seq - 1}"
    return f"{ms - 1}-{MAX_SEQ}" if ms > 0 else "0-0"


@dataclass(frozen=True)
class EntryFilter:
    event_type: str = ""
    field: str = ""
    op: str = "eq"  # "eq" or "contains"
    value: str = ""
    text: str = ""  # case-insensitive, in any field name or value

    @classmethod
    def from_query(cls, q: Mapping[str, str]) -> EntryFilter:
        """From the parameters the tail and stream pages use: type, field, op, value, q."""
        return cls(
            event_type=q.get("type", "").strip(),
            field=q.get("field", "").strip(),
            op="contains" if q.get("op") == "contains" else "eq",
            value=q.get("value", ""),
            text=q.get("q", "").strip(),
        )

    def __bool__(self) -> bool:
        return bool(self.event_type or self.field or self.text)

    def matches(self, entry: Entry) -> bool:
        if self.event_type:
            envelope = entry.envelope
            if envelope is None or envelope.event_type != self.event_type:
                return False
        if self.field and not any(
            name.text == self.field and self._value_matches(value.text)
            for name, value in entry.fields
        ):
            return False
        if self.text:
            needle = self.text.lower()
            return any(needle in name.text.lower() or needle in value.text.lower()
                       for name, value in entry.fields)
        return True

    def _value_matches(self, text: str) -> bool:
        return self.value in text if self.op == "contains" else text == self.value


@dataclass(frozen=True)
class TailOptions:
    keys: tuple[bytes, ...]  # one stream, or none when following a pattern
    pattern: str
    since: str | None  # send entries after this ID first, then continue live
    filter: EntryFilter
    resume: bool = False  # a firehose page that reconnects sends each stream's position first

    @classmethod
    def from_query(cls, query_string: bytes) -> TailOptions:
        q = {k: v[-1] for k, v in parse_qs(query_string.decode("latin-1")).items()}
        key = params.name(q.get("key"))
        pattern = q.get("pattern", "").strip()
        if key is None and not pattern:
            raise params.BadParam("Say which stream to tail (key) or which keys (pattern).")
        if key is not None and not names.in_scope(key):
            raise params.BadParam(names.out_of_scope(key))
        return cls(
            keys=(key,) if key is not None else (),
            pattern="" if key is not None else pattern,
            since=_since(q),
            filter=EntryFilter.from_query(q),
            resume=key is None and q.get("resume") == "1",
        )


def _since(q: dict[str, str]) -> str | None:
    """"after" (exclusive, what a reconnecting page sends) or "from" (an ID or time, inclusive)."""
    if after := params.after_id(q.get("after")):
        return after
    start = q.get("from", "").strip()
    if not start or start == "now":
        return None
    if id_parts(start) is not None:
        return id_before(params.entry_id(start) or start)
    return id_before(f"{params.moment_ms(start)}-0")

