"""The names on the wire: envelope fields, dead-letter and requeue fields, key names.

The bus owns its wire format; the dashboard reads and writes the same entries and keys, so
it imports these names instead of spelling them again (tests/test_wire_names.py checks).
Names are bytes, as Redis returns them; `str` copies are for the few places that need text
(the envelope dict the bus publishes, Lua source, templates). Changing one changes the wire
format: tests/bus/test_wire.py pins it. No Django here: the bus runs without it.
"""

from __future__ import annotations

# The spec's envelope: one event is one entry with these fields (correlation_id optional).
EVENT_ID = b"event_id"
EVENT_TYPE = b"event_type"
TIMESTAMP = b"timestamp"
DATA = b"data"
CORRELATION_ID = b"correlation_id"
ENVELOPE_FIELDS = (EVENT_ID, EVENT_TYPE, TIMESTAMP, DATA)
# A request's data names the stream its reply goes to (a key inside the JSON, so text).
RESPONSE_STREAM = "response_stream"

# What a dead letter holds after the original entry's fields.
ERROR = b"error"
REASON = b"reason"
DELIVERY_COUNT = b"delivery_count"
ORIGINAL_STREAM = b"original_stream"
ORIGINAL_ID = b"original_id"
GROUP = b"group"
CONSUMER = b"consumer"
DEAD_LETTERED_AT = b"dead_lettered_at"
DEAD_LETTER_FIELDS = (ERROR, REASON, DELIVERY_COUNT, ORIGINAL_STREAM, ORIGINAL_ID, GROUP,
                      CONSUMER, DEAD_LETTERED_AT)

# What a requeued copy holds after the original entry's fields (operations/pending.py).
REQUEUED_FROM = b"requeued_from"
REQUEUE_COUNT = b"requeue_count"

# Key names, after the bus's prefix (`agent:stream:`): see envelope.Keys.
RESPONSE = "response:"  # {prefix}response:{correlation_id}
DEADLETTER = "deadletter:"  # {prefix}deadletter:{event_type}
IDEMPOTENCY = "idempotency:"  # {base}idempotency:{group}:{event_type}:{event_id}


def name(raw: bytes) -> str:
    """A field name as text (for dict keys, Lua source and templates)."""
    return raw.decode()


def hash_tag(event_type: str) -> str:
    """`{event_type}`: on Redis Cluster only the part in braces picks the slot, so a stream,
    its dead-letter stream and its idempotency markers named with it share one slot (and one
    MULTI or script), and each event type still lands on its own slot (the load spreads)."""
    return "{" + event_type + "}"


def untag(name: str) -> str:
    return name[1:-1] if name.startswith("{") and name.endswith("}") else name


def event_type_of(prefix: bytes, key: bytes) -> bytes | None:
    """The event type a bus stream's name carries, in either naming: `task.created` for
    `agent:stream:task.created` and for the hash-tag naming `agent:stream:{task.created}`.
    None for a key outside the prefix, and for dead-letter and response streams (not an
    event type's stream). Bytes: the dashboard's keys are (names may be any bytes)."""
    name = key[len(prefix):] if key.startswith(prefix) else b""
    if not name or name.startswith((DEADLETTER.encode(), RESPONSE.encode())):
        return None
    return name[1:-1] if is_tagged(name) else name


def is_tagged(name: bytes) -> bool:
    """Whether a name after the prefix is the hash-tag naming's `{event_type}` (Redis takes
    no tag from an empty `{}`)."""
    return len(name) > 2 and name.startswith(b"{") and name.endswith(b"}")


def stream_key(prefix: str, event_type: str) -> str:
    return f"{prefix}{event_type}"


def response_key(prefix: str, correlation_id: str) -> str:
    return f"{prefix}{RESPONSE}{correlation_id}"


def dead_letter_key(prefix: str, event_type: str) -> str:
    return f"{prefix}{DEADLETTER}{event_type}"


def dead_letter_pattern(prefix: str) -> str:
    """The SCAN pattern of every dead-letter stream under a prefix."""
    return f"{prefix}{DEADLETTER}*"


def idempotency_key(prefix: str, group: str, event_type: str, event_id: str) -> str:
    """The idempotency marker of one event in one group.

    A string key, so it stays out of the streams' namespace: `agent:stream:*` lists streams
    only, `agent:idempotency:*` holds the markers.
    """
    base = prefix.removesuffix("stream:") if prefix.endswith(":stream:") else prefix
    return f"{base}{IDEMPOTENCY}{group}:{event_type}:{event_id}"
