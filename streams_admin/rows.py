"""What a page of entries keeps of each entry while bounded.read_ranges reads it off the
socket: the bytes its row shows, whatever the entry holds, and the size of the rest.

A stream page of 10 entries of 10 MB held 100 MB (twice that while redis-py parsed it), and
50 entries of 10,000 fields took 150 MB and seconds to build objects the row never shows.
"""

from __future__ import annotations

from streams_admin import conf
from streams_admin.values import ENVELOPE_FIELDS, Entry, Value

# The metadata the bus (bus/handling.py) and the dashboard's dead-letter action
# (operations/pending.py) write, after the original fields, and the dead-letter page shows.
DEAD_LETTER_FIELDS = frozenset((b"error", b"reason", b"delivery_count", b"original_stream",
                                b"original_id", b"group", b"consumer", b"dead_lettered_at",
                                b"event_type"))
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
        envelope = (self.data_bytes if raw == b"data" else max(TEXT_BYTES, self.most)) \
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
