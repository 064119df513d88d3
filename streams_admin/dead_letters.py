"""Dead letters as the Dead letters screen and re-drive read them: where each came from, or
why that cannot be told. A dead letter is data in Redis like any other: untrusted."""

from __future__ import annotations

from dataclasses import dataclass

from streams_admin import names
from streams_admin.values import Entry, id_parts


@dataclass(frozen=True)
class DeadLetter:
    entry: Entry
    original_stream: bytes | None  # where a re-drive puts it back
    original_id: str | None  # its ID there (links to it)
    problem: str  # why it cannot be re-driven; "" when it can


def metadata(fields: dict[bytes, bytes]) -> tuple[bytes | None, str | None, str]:
    """(original stream, original ID, problem) from a dead letter's fields (the last of a
    name: an operator's move appends the metadata after the entry's own fields)."""
    stream, raw_id = fields.get(b"original_stream"), fields.get(b"original_id")
    if not stream:
        return None, None, "no original_stream field: nowhere to re-drive it to"
    if raw_id is None:  # written by hand, not by the bus: nothing to link, still re-drivable
        return stream, None, ""
    try:
        text_id = raw_id.decode("ascii")
    except UnicodeDecodeError:
        text_id = ""
    if id_parts(text_id) is None:
        shown = names.show(raw_id)[:60]
        return stream, None, f"malformed: original_id “{shown}” is not an entry ID"
    return stream, text_id, ""


def dead_letter(entry: Entry) -> DeadLetter:
    stream, original_id, problem = metadata({name.raw: value.raw for name, value in entry.fields})
    return DeadLetter(entry, stream, original_id, problem)
