"""What the live tail sends: rows, and entries messages bounded in bytes whatever Redis holds.

Daphne refuses to send a websocket message over 1 MiB, and a tail whose send fails stalls for
good (its ack window never reopens). So a row over ROW_BYTES goes out as a short row that
links to the entry, and an entries message holds rows up to MESSAGE_BYTES: a bigger batch
(a catch-up from an old ID, one XREAD of large entries) goes out as several messages.
Rows are JSON strings, ASCII only (json.dumps escapes the rest): their characters are bytes.
"""

from __future__ import annotations

import heapq
import json
import logging
from collections.abc import Iterable
from itertools import chain, repeat

from django.utils.html import escape

from streams_admin import conf, html, names
from streams_admin.tail import Frame, shorten
from streams_admin.values import Entry, human_bytes, id_key

log = logging.getLogger(__name__)

MESSAGE_BYTES = 256 << 10  # rows in one entries message (one row may reach ROW_BYTES alone)
ROW_BYTES = 128 << 10  # an encoded row bigger than this is replaced by a link to the entry
LINK_CHARS = 2048  # a stream whose URL is longer (a huge key name) gets no link in that row


def render_row(key: bytes, entry: Entry) -> str:
    return html.entry_row(key, entry, conf.get("PREVIEW_CHARS"), show_stream=True)


def encoded_row(key: bytes, entry: Entry) -> str:
    """The row as a JSON string: encoded once per entry, then joined into every message."""
    try:
        row = json.dumps(render_row(key, entry))
    except Exception:  # whatever the entry holds, the tail goes on: the entry page may show it
        log.exception("could not render entry %s of %r", entry.id, key[:200])
        return json.dumps(stand_in_row(key, entry.id, "Could not be shown live"))
    if len(row) <= ROW_BYTES:
        return row
    too_large = f"Too large to show live ({human_bytes(len(row))})"
    return json.dumps(stand_in_row(key, entry.id, too_large))


def stand_in_row(key: bytes, entry_id: str, why: str) -> str:
    """A row in place of one that cannot go live: the stream, the ID, a link to the entry."""
    base = html.stream_url(key)
    url = f"{base}entries/{entry_id}/"
    eid = escape(entry_id)

    def link(href: str, text: str) -> str:
        return f'<a href="{escape(href)}">{text}</a>' if len(href) <= LINK_CHARS else text

    return (f'<tr data-id="{eid}"><td class="key small">'
            f'{link(base, escape(shorten(names.show(key))))}</td>'
            f'<td class="id">{link(url, eid)}</td><td colspan="3" class="muted small">'
            f'{escape(why)}: {link(url, "open the entry")}.'
            f'</td></tr>')


def by_token(positions: dict[bytes, str]) -> dict[str, str]:
    """Positions as the page keeps them: {stream token: ID}."""
    return {names.to_token(key): at for key, at in positions.items()}


def entries_messages(frames: list[Frame], firehose: bool,
                     budget: int = MESSAGE_BYTES) -> list[str]:
    """The messages for frames (oldest first), without their opening {"type", "seq", which
    the sender adds: each holds rows up to `budget` characters.

    The rows are JSON strings already, so a message is joined, not encoded, per viewer; it
    reads exactly as json.dumps would write it. A firehose's rows of several streams come in
    ID order, as one stream's would, with each stream's position. Every message but the last
    says where it ends (its last row) and counts its rows as read; the last one carries the
    rest: the frames' last ID (shown or not) and what was read past the rows shown.
    """
    last_id = max((f.last_id for f in frames), key=id_key)
    read = sum(f.read for f in frames)
    ends = {frame.key: frame.last_id for frame in frames}  # oldest first: the last wins
    merge = firehose and len(frames) > 1
    if sum(f.size + 2 * len(f.rows) for f in frames) <= budget:  # the usual case: one message
        if merge:
            ordered = heapq.merge(*(zip(f.order, f.rows, strict=True) for f in frames))
            rows = ", ".join(row for _, row in ordered)
        else:
            rows = ", ".join(f.joined for f in frames if f.rows)
        return [_message(rows, firehose, ends, last_id, read)]
    items = [zip(f.order, f.rows, repeat(f.key)) for f in frames]
    chunks = _chunks(heapq.merge(*items) if merge else chain.from_iterable(items), budget)
    messages = []
    for chunk in chunks[:-1]:
        (ms, seq), _, _ = chunk[-1]
        messages.append(_message(", ".join(row for _, row, _ in chunk), firehose,
                                 {key: f"{m}-{s}" for (m, s), _, key in chunk}, f"{ms}-{seq}",
                                 len(chunk)))
        read -= len(chunk)
    rows = ", ".join(row for _, row, _ in chunks[-1])
    return [*messages, _message(rows, firehose, ends, last_id, read)]


def _chunks(items: Iterable[tuple[tuple[int, int], str, bytes]], budget: int
            ) -> list[list[tuple[tuple[int, int], str, bytes]]]:
    """Items in runs of rows up to budget characters (a row alone may pass it)."""
    chunks: list[list[tuple[tuple[int, int], str, bytes]]] = [[]]
    size = 0
    for item in items:
        if chunks[-1] and size + len(item[1]) + 2 > budget:
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += len(item[1]) + 2
    return chunks


def _message(rows: str, firehose: bool, positions: dict[bytes, str], last_id: str,
             read: int) -> str:
    where = f'"positions": {json.dumps(by_token(positions))}, ' if firehose else ""
    return f'"rows": [{rows}], {where}"last_id": {json.dumps(last_id)}, "read": {read}}}'
