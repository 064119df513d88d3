"""Entries as HTML, written in Python: the stream page, the entry page and the live tail show
entries through these functions, so a tailed row looks exactly like a page's row.

Why not a template: the live tail renders thousands of rows a second in Daphne's event loop,
and the equivalent Django template took ~0.85 ms a row, these take a small fraction of that.
Everything from Redis passes through `_e` (HTML-escaped, quotes included).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from html import escape

from django.urls import get_script_prefix, reverse

from streams_admin import conf, names
from streams_admin.bus import wire
from streams_admin.values import ENVELOPE_FIELDS, Entry, Envelope, Value

BINARY_BADGE = ('<span class="badge warn" title="Not printable UTF-8: bytes shown as \\x escapes">'
                'binary</span> ')
HEX_LIMIT = 4096
PRETTY_LIMIT = 65536  # JSON data is pretty-printed in a row only when smaller (and in budget)
_EVENT_ID = wire.name(wire.EVENT_ID)  # the tooltip of the event ID names its field


_SPECIAL = re.compile("[&<>\"']")


def _e(text: str) -> str:
    """HTML-escaped, quotes included (most text has nothing to escape: checked first, fast)."""
    return escape(text, quote=True) if _SPECIAL.search(text) else text


@lru_cache(maxsize=4096)
def _stream_url(key: bytes, prefix: str) -> str:  # prefix: part of the cache key only
    return reverse("streams_admin:stream", args=[key])


def stream_url(key: bytes) -> str:
    return _stream_url(key, get_script_prefix())


@dataclass(frozen=True)
class Budget:
    """What one entry may put on a page: so many fields, so many bytes of their names and
    values in all, and of any one of them (a row's is small, the entry page's larger)."""

    fields: int
    size: int
    value: int

    @classmethod
    def row(cls, limit: int) -> Budget:
        return cls(conf.get("ROW_FIELDS"), conf.get("ROW_BYTES"), limit)

    @classmethod
    def entry_page(cls, full: bool) -> Budget:
        size = conf.get("ENTRY_BYTES")
        one = size if full else conf.get("ENTRY_PREVIEW_CHARS")
        return cls(conf.get("ENTRY_FIELDS"), size, one)


def value(v: Value, limit: int, more_url: str = "") -> str:
    """A name or value: UTF-8 as text, anything else flagged binary with \\x escapes + hex.

    Only its first `limit` bytes are decoded and shown (cut before escaping, so no escape or
    tag is cut in two), then "N more bytes…", linking to `more_url` if there is one.
    """
    shown = v.head(limit)
    left = v.size - len(shown)
    out = f'<span class="mono">{_e(names.escape(shown))}{"…" if left else ""}</span>'
    if left:
        note = f"{left:,} more bytes…"
        out += (f' <a class="small nowrap" href="{_e(more_url)}" title="{v.size_text} in all">'
                f"{note}</a>" if more_url else f' <span class="small muted nowrap">{note}</span>')
    if names.is_printable(shown):
        return out
    dumped = shown[:HEX_LIMIT]
    more = f"\n… {v.size - len(dumped):,} more bytes" if v.size > len(dumped) else ""
    hex_dump = f"<details><summary>hex</summary><pre>{Value(dumped).hex()}{more}</pre></details>"
    return f"{BINARY_BADGE}{out}{hex_dump}"


def _no_link(position: int, v: Value) -> str:
    return ""


def fields(pairs: tuple[tuple[Value, Value], ...], budget: Budget,
           more: Callable[[int, Value], str] = _no_link, *, first: int = 0,
           total: int | None = None, rest_url: str = "") -> str:
    """The fields in order, duplicates kept, as far as the budget goes; then "N more fields…"
    (linking to `rest_url`). `more(position, value)` links a cut value to the rest of it;
    `first` is the position of pairs[0] in the entry, `total` the entry's field count."""
    cells, left, shown = [], budget.size, 0
    for name, v in pairs:
        if shown == budget.fields or left <= 0:
            break
        name_limit = min(budget.value, left)
        left -= min(name.size, name_limit)
        value_limit = min(budget.value, left)
        left -= min(v.size, value_limit)
        cells.append(f'\n<div class="fname">{value(name, name_limit)}</div>'
                     f'\n<div class="fvalue">{value(v, value_limit, more(first + shown, v))}</div>')
        shown += 1
    hidden = (len(pairs) if total is None else total - first) - shown
    if hidden > 0:
        note = f"{hidden:,} more field{'s' if hidden > 1 else ''}…"
        cells.append(f'\n<div class="fmore small"><a href="{_e(rest_url)}">{note}</a></div>'
                     if rest_url else f'\n<div class="fmore small muted">{note}</div>')
    return f'<div class="fields">{"".join(cells)}</div>'


def entry_link(url: str, full: bool, first: int) -> Callable[[int, Value], str]:
    """On the entry page, a cut value links to the page with ?full=1 if the rest fits the
    page's budget, else to its download."""
    fits = conf.get("ENTRY_BYTES")
    again = f"{url}?full=1" + (f"&fields_from={first}" if first else "")

    def more(position: int, v: Value) -> str:
        return again if not full and v.size <= fits else f"{url}fields/{position}/download/"

    return more


def entry_fields(e: Entry, url: str, full: bool) -> str:
    """The entry page's fields: a slice of them (?fields_from=N), within its budget."""
    budget = Budget.entry_page(full)
    nxt = e.first_field + min(len(e.fields), budget.fields)
    query = f"?fields_from={nxt}" + ("&full=1" if full else "")
    return fields(e.fields, budget, entry_link(url, full, e.first_field), first=e.first_field,
                  total=e.total_fields, rest_url=url + query)


def entry_row(key: bytes, e: Entry, limit: int, *, select: bool = False,
              show_stream: bool = False) -> str:
    """One <tr> of an entries table: [checkbox] [stream] ID, time, event, data / fields.

    Bounded by Budget.row(limit) however big the entry: the rest is on its entry page."""
    base = stream_url(key)
    url = f"{base}entries/{e.id}/"  # as streams_admin/urls.py has it
    eid = _e(e.id)  # Redis only makes digits-digits, but a reply is still untrusted
    cells = []
    if select:
        cells.append(f'<td class="sel"><input type="checkbox" name="ids" value="{eid}" '
                     f'aria-label="select {eid}" form="entries-form"></td>')
    if show_stream:
        cells.append(f'<td class="key small"><a href="{_e(base)}">'
                     f'{_e(names.show(key))}</a></td>')
    moment = e.time
    when = moment.isoformat(" ", "milliseconds")[:23] if moment else "n/a"
    cells.append(f'<td class="id"><a href="{_e(url)}">{eid}</a></td>'
                 f'<td class="nowrap small">{when}</td>')
    budget = Budget.row(limit)
    link = _entry_page_link(url)
    env = e.envelope
    if env is None:
        shown = fields(e.fields, budget, link, total=e.total_fields, rest_url=url)
        cells.append(f'<td class="muted small">–</td><td>{shown}</td>')
        return f'<tr data-id="{eid}">{"".join(cells)}</tr>'
    cells.append(f'<td class="small"><span class="badge" title="timestamp {_e(env.timestamp)}">'
                 f'{_e(env.event_type)}</span><br><span class="mono muted nowrap" '
                 f'title="{_EVENT_ID}">{_e(env.event_id)}</span></td>')
    shown, used = _row_data(env, budget, url)
    rest = e.other_fields
    left = Budget(budget.fields - len(ENVELOPE_FIELDS), budget.size - used, limit)
    unread = e.total_fields - len(e.fields)  # a page's row holds only the fields it shows
    extra = fields(rest, left, link, total=len(rest) + unread, rest_url=url) \
        if rest or unread else ""
    cells.append(f"<td>{shown}{extra}</td>")
    return f'<tr data-id="{eid}">{"".join(cells)}</tr>'


def _entry_page_link(url: str) -> Callable[[int, Value], str]:
    return lambda position, v: url


def _row_data(env: Envelope, budget: Budget, url: str) -> tuple[str, int]:
    """A row's event data, and the bytes of the budget it used. JSON is checked (and
    pretty-printed) only when all of it fits the row: a bigger one is a preview."""
    data, limit = env.data, budget.value
    if data.size > min(budget.size, PRETTY_LIMIT):
        return value(data, limit, url), min(data.size, limit)
    if not env.data_is_json:
        return f'<span class="badge warn">data is not JSON</span> {value(data, limit, url)}', \
            min(data.size, limit)
    summary = _e(data.preview(limit)) + ("…" if data.is_long(limit) else "")
    body = f"<pre>{_e(env.pretty_data)}</pre>"
    return f'<details><summary class="mono">{summary}</summary>{body}</details>', data.size
