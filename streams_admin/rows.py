"""Pages of entries (the stream page, its search, the dead letters), each entry kept as
bounded.read_ranges reads it off the socket: the bytes its row shows, whatever the entry
holds, and the size of the rest.

A stream page of 10 entries of 10 MB held 100 MB (twice that while redis-py parsed it), and
50 entries of 10,000 fields took 150 MB and seconds to build objects the row never shows.
"""

from __future__ import annotations

from dataclasses import dataclass

from streams_admin import conf
from streams_admin.bounded import Fields, read_ranges
from streams_admin.bus import wire
from streams_admin.filters import EntryFilter
from streams_admin.values import ENVELOPE_FIELDS, Entry, Value, human_bytes

# The metadata the bus (bus/handling.py) and the dashboard's dead-letter action
# (operations/pending.py) write, after the original fields, and the dead-letter page shows.
DEAD_LETTER_FIELDS = frozenset((*wire.DEAD_LETTER_FIELDS, wire.EVENT_TYPE))
# Bytes kept of any name: one more than the longest name looked for, so a cut name is never
# taken for one (a 17-byte "dead_lettered_atX" cut to 16 bytes would be).
PEEK = 1 + max(len(name) for name in (*ENVELOPE_FIELDS, *DEAD_LETTER_FIELDS))
TEXT_BYTES = 1024  # of event_id, event_type, timestamp (Envelope's preview) and named fields


class RowFields:
    """html.entry_row's rule, kept while reading: of the first ROW_FIELDS fields, names and
    values up to PREVIEW_CHARS each and ROW_BYTES in all, in order (html.fields). Fields a
    page shows apart keep their own allowance instead: the envelope's among the first
    ROW_FIELDS (data whole up to ROW_BYTES, the JSON a row pretty-prints), and `named` ones
    wherever they are (a dead letter's metadata). Never less than the row shows: fields shown
    apart do not spend the budget here, while html.entry_row spends data's."""

    def __init__(self, entry_id: str, count: int, named: frozenset[bytes] = frozenset()) -> None:
        self.id, self.count, self.named = entry_id, count, named
        self.fields, self.most = conf.get("ROW_FIELDS"), conf.get("PREVIEW_CHARS")
        self.left, self.data_bytes = conf.get("ROW_BYTES"), max(conf.get("ROW_BYTES"), self.most)
        self.pairs: list[tuple[Value, Value]] = []
        self.seen: set[bytes] = set()  # names already shown apart: a duplicate is a field
        self.at = self.size = 0
        self.name: Value | None = None  # the current field's name, if the field is kept
        self.apart = 0  # bytes kept of the current value when its field is shown apart
        self.limit = 0  # bytes kept of the current item
        self.upto = 1 << 62 if named else 2 * self.fields  # named ones may come anywhere

    def _budget(self) -> int:
        return min(self.most, self.left) if self.left > 0 else 0

    def keep(self, position: int, length: int) -> int:
        within = position // 2 < self.fields
        if position % 2 == 0:
            self.limit = self._budget() if within else 0
            return max(self.limit, PEEK) if within or self.named else 0
        if self.apart:
            return self.apart
        self.limit = self._budget() if within else 0
        return self.limit

    def add(self, kept: bytearray, length: int) -> None:
        within, is_name = self.at // 2 < self.fields, self.at % 2 == 0
        self.at, self.size = self.at + 1, self.size + length
        got = Value(bytes(kept), length - len(kept))
        if is_name:
            self.apart = self._apart(got, within)
            if self.apart:
                self.seen.add(got.raw)
            elif within:
                self.left -= min(length, self.limit)
            self.name = got if within or self.apart else None
            return
        if self.name is not None:
            self.pairs.append((self.name, got))
        if within and not self.apart:
            self.left -= min(length, self.limit)

    def skip(self, size: int) -> None:
        self.size += size

    def _apart(self, name: Value, within: bool) -> int:
        raw = name.raw
        if name.cut or raw in self.seen:
            return 0
        envelope = (self.data_bytes if raw == wire.DATA else max(TEXT_BYTES, self.most)) \
            if within and raw in ENVELOPE_FIELDS else 0
        return max(envelope, TEXT_BYTES if raw in self.named else 0)

    def entry(self) -> Entry:
        return Entry(self.id, tuple(self.pairs), field_count=self.count, stored_size=self.size)


class SearchFields:
    """What a search matches on: the first ENTRY_FIELDS fields and ENTRY_BYTES of the entry
    (what its entry page shows), each value up to what is left; and the row, kept alongside."""

    def __init__(self, entry_id: str, count: int) -> None:
        self.id, self.count = entry_id, count
        self.fields, self.left = conf.get("ENTRY_FIELDS"), conf.get("ENTRY_BYTES")
        self.row = RowFields(entry_id, count)
        self.items: list[Value] = []
        self.partly = count > self.fields  # searched only in part
        self.wanted = self.for_row = 0
        self.upto = max(2 * self.fields, self.row.upto)

    def keep(self, position: int, length: int) -> int:
        self.wanted = min(length, self.left) if position // 2 < self.fields else 0
        self.for_row = self.row.keep(position, length)
        return max(self.wanted, self.for_row)

    def add(self, kept: bytearray, length: int) -> None:
        self.row.add(kept[:self.for_row], length)
        if len(self.items) < 2 * self.fields:
            self.items.append(Value(bytes(kept[:self.wanted]), length - self.wanted))
            self.left -= self.wanted
            self.partly = self.partly or self.wanted < length

    def skip(self, size: int) -> None:
        self.row.skip(size)

    def searched(self) -> Entry:
        pairs = tuple(zip(self.items[::2], self.items[1::2], strict=True))
        return Entry(self.id, pairs, field_count=self.count)


class Nothing:
    """An entry read only to learn it is there (a page's probe past its edge)."""

    upto = 0

    def keep(self, position: int, length: int) -> int:
        return 0

    def add(self, kept: bytearray, length: int) -> None:
        pass

    def skip(self, size: int) -> None:
        pass


@dataclass(frozen=True)
class EntriesPage:
    entries: tuple[Entry, ...]  # newest first; each as its row shows it (RowFields)
    newer: str | None  # cursor: the page above starts after this ID
    older: str | None  # cursor: the page below starts before this ID
    scanned: int = 0  # a search: entries it looked at (at most SEARCH_BUDGET)
    searched_to: str | None = None  # a search: the oldest ID it looked at
    partly_searched: int = 0  # a search: entries bigger than what it reads of each

    @property
    def partly_note(self) -> str:
        n = self.partly_searched
        if not n:
            return ""
        return (f"{n:,} entr{'y' if n == 1 else 'ies'} searched only in part: the first "
                f"{conf.get('ENTRY_FIELDS'):,} fields and {human_bytes(conf.get('ENTRY_BYTES'))}"
                " of each, what an entry page shows.")


SEARCH_CHUNK = 500  # entries per XREVRANGE while searching


def _flip(bound: str) -> str:
    """The complementary bound: "(X" (exclusive) becomes "X", and "X" becomes "(X"."""
    return bound[1:] if bound.startswith("(") else "(" + bound


def entries_page(key: bytes, count: int, *, before: str = "+", after: str | None = None,
                 named: frozenset[bytes] = frozenset()) -> EntriesPage:
    """A page of entries, newest first: at or before `before`, or just after `after`.

    Bounds take Redis range syntax ("(" makes one exclusive). One round trip: the page and
    a one-entry probe that tells whether anything lies beyond its other edge. Each entry is
    kept as its row shows it (RowFields, with the `named` fields wherever they are).
    """
    if after is not None:
        page, probe = _read_page([("XRANGE", key, after, "+", "COUNT", count + 1),
                                  ("XREVRANGE", key, _flip(after), "-", "COUNT", 1)], named)
        rows = page[::-1]
        extra = len(rows) > count
        rows = rows[-count:] if rows else rows
        newer = rows[0].id if extra else None
        older = rows[-1].id if rows and probe else None
        return EntriesPage(tuple(rows), newer, older)
    probing = [("XRANGE", key, _flip(before), "+", "COUNT", 1)] if before != "+" else []
    rows, probe = _read_page([("XREVRANGE", key, before, "-", "COUNT", count + 1), *probing],
                             named)
    older = rows[count - 1].id if len(rows) > count else None
    rows = rows[:count]
    newer = rows[0].id if rows and probe else None
    return EntriesPage(tuple(rows), newer, older)


def dead_letters_page(key: bytes, count: int, *, before: str = "+") -> EntriesPage:
    """A page of a dead-letter stream: rows, and the metadata the bus appends after the
    original fields (rows.DEAD_LETTER_FIELDS) however many fields come before it."""
    return entries_page(key, count, before=before, named=DEAD_LETTER_FIELDS)


def _read_page(commands: list[tuple[object, ...]], named: frozenset[bytes]
               ) -> tuple[list[Entry], int]:
    """The first command's entries as rows, and how many entries the second (a probe) found."""
    page: list[Entry] = []
    probed = 0

    def start(index: int, entry_id: str, count: int) -> Fields:
        return RowFields(entry_id, count, named) if index == 0 else Nothing()

    def done(index: int, fields: Fields) -> bool:
        nonlocal probed
        if isinstance(fields, RowFields):
            page.append(fields.entry())
        else:
            probed += 1
        return True

    read_ranges(commands, start, done)
    return page, probed


class _Search:
    """One search_page call's state, entry by entry as bounded.read_ranges reads them."""

    def __init__(self, match: EntryFilter, count: int) -> None:
        self.match, self.count = match, count
        self.found: list[Entry] = []
        self.scanned = self.partly = self.chunk = 0
        self.oldest: str | None = None

    def start(self, index: int, entry_id: str, count: int) -> SearchFields:
        return SearchFields(entry_id, count)

    def done(self, index: int, fields: Fields) -> bool:
        assert isinstance(fields, SearchFields)
        self.scanned, self.chunk, self.oldest = self.scanned + 1, self.chunk + 1, fields.id
        self.partly += fields.partly
        if self.match.matches(fields.searched()):
            self.found.append(fields.row.entry())
        return len(self.found) < self.count

    def page(self, older: str | None) -> EntriesPage:
        return EntriesPage(tuple(self.found), None, older, self.scanned, self.oldest,
                           self.partly)


def search_page(key: bytes, match: EntryFilter, count: int, *, before: str = "+",
                budget: int | None = None) -> EntriesPage:
    """Up to `count` entries that match, newest first, at or before `before`.

    Looks at no more than `budget` entries (SEARCH_BUDGET) per call, in chunks: `older` is
    where the next call goes on, whether the page filled or the budget ran out; None once the
    stream's start is reached.

    It matches on what the entry page shows of each entry (ENTRY_FIELDS fields, ENTRY_BYTES),
    not on the whole entry: whole entries meant holding a chunk of them at once (500 x 10 MB),
    and no read may cost more than its page. A match further into a bigger entry is missed, so
    the page says how many entries were searched only in part.
    """
    budget = budget or conf.get("SEARCH_BUDGET")
    search = _Search(match, count)
    cursor = before
    while search.scanned < budget:
        want = min(SEARCH_CHUNK, budget - search.scanned)
        search.chunk = 0
        read_ranges([("XREVRANGE", key, cursor, "-", "COUNT", want)], search.start, search.done)
        if len(search.found) == count:
            return search.page(search.oldest)
        if search.chunk < want:  # the stream's first entry was reached
            return search.page(None)
        cursor = f"({search.oldest}"
    return search.page(search.oldest)
