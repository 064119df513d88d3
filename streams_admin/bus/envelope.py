"""The wire format: the spec's envelope, stream names, and decoding of untrusted entries.

An event is one stream entry with the fields `event_id` (UUID), `event_type`, `timestamp`
(ISO 8601 UTC) and `data` (a JSON string) -- exactly what the spec's plain redis-py publisher
writes, so both feed the same consumers. Entries may come from anyone: every field may be
missing, binary, or invalid JSON, and decoding must not crash.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

RESPONSE = "response:"
DEADLETTER = "deadletter:"

Fields = dict[bytes, bytes]


class MalformedEntry(ValueError):
    """The entry's `data` is not JSON: retrying cannot help, so it is dead-lettered at once."""


@dataclass(frozen=True)
class Envelope:
    """One delivered event, as a handler that asks for it sees it."""

    event_id: str
    event_type: str
    timestamp: str
    data: Any
    stream: str = ""
    entry_id: str = ""
    delivery_count: int = 1
    correlation_id: str | None = None
    fields: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def response_stream(self) -> str | None:
        value = self.data.get("response_stream") if isinstance(self.data, dict) else None
        return value if isinstance(value, str) else None


def text(value: bytes | str) -> str:
    """Redis gives bytes (or str under decode_responses); names and ids are shown as text."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def now_iso() -> str:
    # Millisecond precision with "Z", as in the spec's example event.
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_event_id() -> str:
    return str(uuid.uuid4())


def encode(
    event_type: str, data: Any, *, event_id: str | None = None,
    correlation_id: str | None = None,
) -> dict[str, str]:
    """The stream entry for one event. json.dumps fails here, in the caller, not in Redis."""
    fields = {
        "event_id": event_id or new_event_id(),
        "event_type": event_type,
        "timestamp": now_iso(),
        "data": json.dumps(data, separators=(",", ":")),
    }
    if correlation_id is not None:
        fields["correlation_id"] = correlation_id
    return fields


def decode(stream: str, entry_id: str, raw: Any, delivery_count: int = 1) -> Envelope:
    """An envelope from an entry's fields; raises MalformedEntry if `data` is not JSON.

    An entry without `data` (written by something that ignores the envelope) gets all its
    fields as `data`, so a handler can still look at it.
    """
    fields = {text(k): text(v) for k, v in (raw or {}).items()}
    if "data" in fields:
        try:
            data = json.loads(fields["data"])
        except ValueError as error:
            raise MalformedEntry(f"data is not JSON: {error}") from None
    else:
        data = dict(fields)
    return Envelope(
        event_id=fields.get("event_id") or entry_id,
        event_type=fields.get("event_type", ""),
        timestamp=fields.get("timestamp", ""),
        data=data,
        stream=stream,
        entry_id=entry_id,
        delivery_count=delivery_count,
        correlation_id=fields.get("correlation_id"),
        fields=fields,
    )


def time_to_id(moment: datetime) -> str:
    """The smallest stream ID at or after a moment (stream IDs start with Unix milliseconds)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return f"{int(moment.timestamp() * 1000)}-0"


@dataclass(frozen=True)
class Keys:
    """Stream names under one prefix (the spec's `agent:stream:`)."""

    prefix: str

    def stream(self, event_type: str) -> str:
        return f"{self.prefix}{event_type}"

    def response(self, correlation_id: str) -> str:
        return f"{self.prefix}{RESPONSE}{correlation_id}"

    def is_response(self, key: str) -> bool:
        # Replies only go to response streams: an event must not make us write to any key.
        return key.startswith(self.prefix + RESPONSE) and len(key) > len(self.prefix + RESPONSE)

    def deadletter(self, event_type: str) -> str:
        return f"{self.prefix}{DEADLETTER}{event_type}"

    def event_type(self, stream: str) -> str:
        return stream[len(self.prefix):] if stream.startswith(self.prefix) else stream

    def done(self, group: str, event_type: str, event_id: str) -> str:
        """The idempotency marker of one event in one group."""
        return f"{self.prefix}idempotency:{group}:{event_type}:{event_id}"
