"""The wire format: the spec's envelope, stream names, and decoding of untrusted entries.

An event is one stream entry with the fields `event_id` (UUID), `event_type`, `timestamp`
(ISO 8601 UTC) and `data` (a JSON string) -- exactly what the spec's plain redis-py publisher
writes, so both feed the same consumers. Entries may come from anyone: every field may be
missing, binary, or invalid JSON, and decoding must not crash.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from streams_admin.bus import wire
from streams_admin.bus.wire import RESPONSE

# The envelope's field names as text: the keys of the dict `encode` returns.
_EVENT_ID, _EVENT_TYPE, _TIMESTAMP, _DATA, _CORRELATION_ID = (
    wire.name(n) for n in (*wire.ENVELOPE_FIELDS, wire.CORRELATION_ID))

Fields = dict[bytes, bytes]


class MalformedEntry(ValueError):
    """The entry's `data` is not JSON: retrying cannot help, so it is dead-lettered at once."""


@dataclass
class Envelope:
    """One delivered event, as a handler that asks for it sees it.

    Not frozen: a frozen dataclass's __init__ is measurably slower, and one is made per event.
    """

    event_id: str
    event_type: str
    timestamp: str
    data: Any
    stream: str = ""
    entry_id: str = ""
    delivery_count: int = 1
    correlation_id: str | None = None
    raw: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    @cached_property
    def fields(self) -> dict[str, str]:
        """All the entry's fields as text (decoded on demand: handlers rarely need them)."""
        return {text(k): text(v) for k, v in self.raw.items()}

    @property
    def response_stream(self) -> str | None:
        value = self.data.get(wire.RESPONSE_STREAM) if isinstance(self.data, dict) else None
        return value if isinstance(value, str) else None


def text(value: bytes | str) -> str:
    """Redis gives bytes (or str under decode_responses); names and ids are shown as text."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


_last_stamp: tuple[int, str] = (0, "")


def now_iso() -> str:
    """Now with millisecond precision and "Z", as in the spec's example event."""
    global _last_stamp
    ms = time.time_ns() // 1_000_000
    if ms != _last_stamp[0]:  # under load many events share a millisecond: format it once
        moment = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
        _last_stamp = (ms, moment.replace("+00:00", "Z"))
    return _last_stamp[1]


def new_event_id() -> str:
    """A random (version 4) UUID; formatted by hand, twice as fast as str(uuid.uuid4())."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}
_dumps = json.JSONEncoder(separators=(",", ":")).encode  # built once, not per event


def encode(
    event_type: str, data: Any, *, event_id: str | None = None,
    correlation_id: str | None = None,
) -> dict[str, str]:
    """The stream entry for one event. json.dumps fails here, in the caller, not in Redis."""
    fields = {
        _EVENT_ID: event_id or new_event_id(),
        _EVENT_TYPE: event_type,
        _TIMESTAMP: now_iso(),
        _DATA: _dumps(data),
    }
    if correlation_id is not None:
        fields[_CORRELATION_ID] = correlation_id
    return fields


def decode(stream: str, entry_id: str, raw: Any, delivery_count: int = 1) -> Envelope:
    """An envelope from an entry's fields; raises MalformedEntry if `data` is not JSON.

    An entry without `data` (written by something that ignores the envelope) gets all its
    fields as `data`, so a handler can still look at it.
    """
    raw = _as_bytes(raw or {})
    data_field = raw.get(wire.DATA)
    if data_field is None:
        data: Any = {text(k): text(v) for k, v in raw.items()}
    else:
        try:
            data = json.loads(data_field)
        except ValueError as error:
            raise MalformedEntry(f"data is not JSON: {error}") from None
    correlation_id = raw.get(wire.CORRELATION_ID)
    return Envelope(
        event_id=_field(raw, wire.EVENT_ID) or entry_id,
        event_type=_field(raw, wire.EVENT_TYPE),
        timestamp=_field(raw, wire.TIMESTAMP),
        data=data,
        stream=stream,
        entry_id=entry_id,
        delivery_count=delivery_count,
        correlation_id=None if correlation_id is None else text(correlation_id),
        raw=raw,
    )


def _field(raw: dict[bytes, bytes], name: bytes) -> str:
    value = raw.get(name)
    return value.decode("utf-8", "replace") if value else ""


def _as_bytes(raw: dict[Any, Any]) -> dict[bytes, bytes]:
    """Entries from a decode_responses=True client have str keys and values; make them bytes."""
    if not raw or isinstance(next(iter(raw)), bytes):
        return raw
    return {_bytes(k): _bytes(v) for k, v in raw.items()}


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def time_to_id(moment: datetime) -> str:
    """The smallest stream ID at or after a moment (stream IDs start with Unix milliseconds)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return f"{int(moment.timestamp() * 1000)}-0"


@dataclass(frozen=True)
class Keys:
    """Stream names under one prefix (the spec's `agent:stream:`); with `hash_tags` the event
    type is named `{event_type}` in its stream, dead-letter and marker keys (one slot each)."""

    prefix: str
    hash_tags: bool = False

    def _tag(self, event_type: str) -> str:
        return wire.hash_tag(event_type) if self.hash_tags else event_type

    def stream(self, event_type: str) -> str:
        return wire.stream_key(self.prefix, self._tag(event_type))

    def response(self, correlation_id: str) -> str:
        return wire.response_key(self.prefix, correlation_id)

    def is_response(self, key: str) -> bool:
        # Replies only go to response streams: an event must not make us write to any key.
        return key.startswith(self.prefix + RESPONSE) and len(key) > len(self.prefix + RESPONSE)

    def deadletter(self, event_type: str) -> str:
        return wire.dead_letter_key(self.prefix, self._tag(event_type))

    def event_type(self, stream: str) -> str:
        name = stream[len(self.prefix):] if stream.startswith(self.prefix) else stream
        return wire.untag(name) if self.hash_tags else name

    def done(self, group: str, event_type: str, event_id: str) -> str:
        """The idempotency marker of one event in one group (see wire.idempotency_key)."""
        return wire.idempotency_key(self.prefix, group, self._tag(event_type), event_id)
