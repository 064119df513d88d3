"""Bounded list pages: a page of entries holds what its rows show, whatever the entries hold
(the stream page, its search, the dead letters). Python's own allocations are counted with
tracemalloc, as tests/test_rendering.py does for the entry page."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable

import redis
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams_admin import conf, html, streams
from streams_admin.redis import client
from streams_admin.rows import DEAD_LETTER_FIELDS
from streams_admin.templatetags.streams_admin import clip
from streams_admin.values import Value, parse_entry
from tests.html import table
from tests.test_rendering import BIG, HOSTILE, MB, add_wide

BIG_HTML = (HOSTILE * (10 * MB // len(HOSTILE))).encode()  # 10 MB of markup
ESCAPED = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;"


def peak_of(get: Callable[[], object]) -> int:
    get()  # warm: imports, templates
    tracemalloc.start()
    try:
        get()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_page_of_ten_10mb_entries_holds_only_its_rows(viewer_client, r) -> None:
    for n in range(10):
        r.xadd("blobs", {"name": f"report{n}", "payload": BIG if n % 2 else BIG_HTML})
    url = reverse("streams_admin:stream", args=[b"blobs"])
    pages: list[bytes] = []
    peak = peak_of(lambda: pages.append(viewer_client.get(url).content))
    assert peak < 3 * MB  # it held the 100 MB, twice over while redis-py parsed it
    body = pages[-1].decode()
    rows = table(pages[-1], 1)
    assert len(rows) == 10
    left = len(BIG) - len(Value(BIG).head(200))  # not cutting a UTF-8 character in two
    assert all(f"{left:,} more bytes…" in row[-1] for row in rows[::2])  # binary
    assert all(f"{len(BIG_HTML) - 200:,} more bytes…" in row[-1] for row in rows[1::2])
    assert body.count(">binary</span>") == 5
    assert "<script>alert" not in body and ESCAPED in body


def test_a_page_of_50_entries_of_10000_fields_allocates_little(viewer_client, r) -> None:
    add_wide(r, "wide", 50, 10_000)
    url = reverse("streams_admin:stream", args=[b"wide"])
    pages: list[bytes] = []
    assert peak_of(lambda: pages.append(viewer_client.get(url).content)) < 5 * MB  # was 151 MB
    rows = table(pages[-1], 1)
    assert len(rows) == 50
    assert all("9,980 more fields…" in row[-1] for row in rows)
    assert "f00019" in rows[0][-1] and "f00020" not in rows[0][-1]


def dead_letter(original: dict, n: int) -> dict:
    """What the bus writes (bus/handling.py): the original fields, then its metadata."""
    return {**original, "error": "ValueError: " + HOSTILE, "reason": "max_deliveries",
            "delivery_count": "5", "original_stream": "orders", "original_id": f"{n + 1}-0",
            "group": "billing", "consumer": "worker-1", "dead_lettered_at": "2026-12-01T10:00"}


def test_dead_letters_of_huge_entries_are_bounded_and_show_their_metadata(viewer_client,
                                                                           r) -> None:
    dlq = "agent:stream:deadletter:order.created"
    wide = {f"extra{n:04d}": "x" for n in range(1_000)}  # the metadata is 1,004 fields in
    for n in range(5):
        original = {"event_id": f"e{n}", "event_type": "order.created", "timestamp": "t",
                    "data": BIG, **wide}
        r.xadd(dlq, dead_letter(original, n))
    url = reverse("streams_admin:dead-letters") + f"?key={dlq}"
    pages: list[bytes] = []
    assert peak_of(lambda: pages.append(viewer_client.get(url).content)) < 3 * MB  # was 110 MB
    body = pages[-1].decode()
    rows = table(pages[-1], 1)
    assert len(rows) == 5
    assert rows[0][1:] == ["order.created", "orders 5-0", "billing / worker-1", "5",
                           "max_deliveries", "ValueError: " + HOSTILE]
    assert 'href="/streams/orders/entries/5-0/"' in body
    assert "<script>alert" not in body and ESCAPED in body


def test_search_reads_a_bounded_part_of_each_entry_and_says_so(viewer_client, r) -> None:
    for n in range(10):
        r.xadd("blobs", {"kind": "hit" if n % 3 == 0 else "miss", "payload": BIG_HTML})
    r.xadd("blobs", {"payload": b"x" * MB + b"needle"})  # past what a search reads
    url = reverse("streams_admin:stream", args=[b"blobs"]) + "?field=kind&value=hit"
    pages: list[bytes] = []
    assert peak_of(lambda: pages.append(viewer_client.get(url).content)) < 4 * MB  # was 200 MB
    rows = table(pages[-1], 1)
    assert len(rows) == 4 and all(row[-1].startswith("kind hit payload") for row in rows)
    body = pages[-1].decode()
    assert "11 entries searched only in part: the first 1,000 fields and 256.0 KB" in body
    assert "<script>alert" not in body and ESCAPED in body
    missed = viewer_client.get(reverse("streams_admin:stream", args=[b"blobs"]) + "?q=needle")
    assert "No entries match here." in missed.content.decode()


def test_a_search_that_fills_its_page_mid_chunk_leaves_the_next_read_sound(viewer_client,
                                                                            r) -> None:
    for n in range(40):
        r.xadd("s", {"n": str(n), "pad": "y" * MB})
    base = reverse("streams_admin:stream", args=[b"s"])
    pages: list[bytes] = []
    assert peak_of(lambda: pages.append(viewer_client.get(base + "?q=n&size=20").content)) \
        < 3 * MB  # it read the 40 MB chunk whole
    newest = [str(n) for n in range(39, 19, -1)]
    assert [row[-1].split()[1] for row in table(pages[-1], 1)] == newest
    again = table(viewer_client.get(base + "?size=20").content, 1)  # the rest was never read
    assert [row[-1].split()[1] for row in again] == newest
    r.set("text", "a string")
    try:
        streams.entries_page(b"text", 10)
    except redis.ResponseError:
        pass
    else:
        raise AssertionError("XREVRANGE on a string is WRONGTYPE")
    assert streams.entries_page(b"nothing", 10).entries == ()
    assert len(streams.entries_page(b"s", 10).entries) == 10


# Rows of bounded pages look exactly like rows of whole entries: fields of every shape, sizes
# on each side of every budget (PREVIEW_CHARS 200, ROW_BYTES 4096, envelope texts 1024).
SIZES = [0, 1, 17, 199, 200, 201, 1023, 1024, 1025, 4095, 4096, 4097, 20_000]
NAMES = [b"event_id", b"event_type", b"timestamp", b"data", b"reason", b"original_stream",
         b"dead_lettered_at", b"dead_lettered_atX", b"f", "流".encode() * 7, b"\xff\x00<b>"]


@st.composite
def values(draw: st.DrawFn) -> bytes:
    size = draw(st.sampled_from(SIZES))
    kind = draw(st.sampled_from(["text", "utf8", "binary", "html", "json"]))
    if kind == "json":
        return json.dumps({"k": "v" * size}).encode()
    unit = {"text": b"a", "utf8": "流".encode(), "binary": b"\xff\x00", "html": HOSTILE.encode()}
    return (unit[kind] * (size // len(unit[kind]) + 1))[:size]


fields_strategy = st.lists(st.tuples(st.sampled_from(NAMES) | st.binary(max_size=30), values()),
                           min_size=1, max_size=30)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(fields_strategy, min_size=1, max_size=4))
def test_rows_of_a_bounded_page_are_the_rows_of_the_whole_entries(r, entries) -> None:
    r.delete("shapes")
    for pairs in entries:
        flat = [item for pair in pairs for item in pair]  # duplicate names kept, in order
        r.execute_command("XADD", "shapes", "*", *flat)
    whole = [parse_entry(item) for item in client().xrevrange("shapes")]  # duplicates kept
    limit = conf.get("PREVIEW_CHARS")
    for page in (streams.entries_page(b"shapes", 10), streams.dead_letters_page(b"shapes", 10)):
        assert [e.id for e in page.entries] == [e.id for e in whole]
        for got, want in zip(page.entries, whole, strict=True):
            assert html.entry_row(b"shapes", got, limit) == html.entry_row(b"shapes", want, limit)
            held = sum(len(n.raw) + len(v.raw) for n, v in got.fields)
            assert held <= 5 * 4096 + 40 * 20  # whatever the entry: envelope, budget, names
            assert got.size == want.size and got.total_fields == want.total_fields
    for got, want in zip(streams.dead_letters_page(b"shapes", 10).entries, whole, strict=True):
        for name in sorted(DEAD_LETTER_FIELDS):
            shown, kept = want.field(name), got.field(name)
            assert (shown is None) == (kept is None)
            if shown is not None and kept is not None:
                assert (clip(kept), kept.size) == (clip(shown), shown.size)
                assert kept.raw == shown.raw or shown.size > 1000


def test_an_envelope_among_the_first_fields_is_still_recognised(viewer_client, r) -> None:
    extra = {f"x{n}": "v" for n in range(5_000)}
    r.xadd("ev", {"event_id": "e-1", "event_type": "order.created", "timestamp": "t",
                  "data": json.dumps({"total": 12}), **extra})
    page = streams.entries_page(b"ev", 10)
    entry = page.entries[0]
    assert entry.envelope is not None and entry.envelope.event_type == "order.created"
    assert entry.envelope.data_json == {"total": 12}
    assert len(entry.fields) == conf.get("ROW_FIELDS")  # not the 5,004
    row = table(viewer_client.get(reverse("streams_admin:stream", args=[b"ev"])).content, 1)[0]
    assert "order.created" in row[2] and "e-1" in row[2]
    assert "4,984 more fields…" in row[-1]  # 5,000 others less the 16 shown


def test_envelope_fields_past_the_first_row_fields_make_no_envelope_anywhere(r) -> None:
    # Found by the property above: 20 fields first, then the envelope's four.
    filler = [item for n in range(conf.get("ROW_FIELDS")) for item in (f"f{n}", "v")]
    r.execute_command("XADD", "late", "*", *filler, "event_id", "e-1", "event_type", "t.x",
                      "timestamp", "1", "data", "{}")
    whole = parse_entry(client().xrevrange("late")[0])
    bounded = streams.entries_page(b"late", 10).entries[0]
    assert whole.envelope is None and bounded.envelope is None
    limit = conf.get("PREVIEW_CHARS")
    assert html.entry_row(b"late", bounded, limit) == html.entry_row(b"late", whole, limit)
