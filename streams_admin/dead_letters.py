"""Dead letters as the Dead letters screen and re-drive read them: where each came from, or
why that cannot be told. A dead letter is data in Redis like any other: untrusted."""

from __future__ import annotations

from dataclasses import dataclass

from streams_admin import names
from streams_admin.bus import wire
from streams_admin.values import Entry, Value, id_parts


@dataclass(frozen=True)
class DeadLetter:
    entry: Entry
    original_stream: bytes | None  # where a re-drive puts it back
    original_id: str | None  # its ID there (links to it)
    problem: str  # why it cannot be re-driven; "" when it can

    # The metadata the page shows, by the bus's names (the first field of each name).
    @property
    def event_type(self) -> Value | None:
        return self.entry.field(wire.EVENT_TYPE)

    @property
    def group(self) -> Value | None:
        return self.entry.field(wire.GROUP)

    @property
    def consumer(self) -> Value | None:
        return self.entry.field(wire.CONSUMER)

    @property
    def deliveries(self) -> Value | None:
        return self.entry.field(wire.DELIVERY_COUNT)

    @property
    def reason(self) -> Value | None:
        return self.entry.field(wire.REASON)

    @property
    def error(self) -> Value | None:
        return self.entry.field(wire.ERROR)


def metadata(fields: dict[bytes, bytes]) -> tuple[bytes | None, str | None, str]:
    """(original stream, original ID, problem) from a dead letter's fields (the last of a
    name: an operator's move appends the metadata after the entry's own fields)."""
    stream, raw_id = fields.get(wire.ORIGINAL_STREAM), fields.get(wire.ORIGINAL_ID)
    if not stream:
        return None, None, f"no {wire.name(wire.ORIGINAL_STREAM)} field: nowhere to re-drive it to"
    if raw_id is None:  # written by hand, not by the bus: nothing to link, still re-drivable
        return stream, None, ""
    try:
        text_id = raw_id.decode("ascii")
    except UnicodeDecodeError:
        text_id = ""
    if id_parts(text_id) is None:
        shown = names.show(raw_id)[:60]
        return stream, None, (f"malformed: {wire.name(wire.ORIGINAL_ID)} “{shown}” is not an "
                              "entry ID")
    return stream, text_id, ""


def dead_letter(entry: Entry) -> DeadLetter:
    stream, original_id, problem = metadata({name.raw: value.raw for name, value in entry.fields})
    return DeadLetter(entry, stream, original_id, problem)
