"""Bounded rendering: what a page shows of an entry is bounded in fields and bytes whatever
Redis holds; the rest is a link ("N more fields…", "N more bytes…") or a download."""

from __future__ import annotations

import tracemalloc
from html.parser import HTMLParser

import pytest
import redis
from django.urls import reverse

from streams_admin.consumers import render_row
from streams_admin.html import value
from streams_admin.values import Value, parse_entry
from tests.html import table

MB = 1 << 20
BIG = bytes(range(256)) * (10 * MB // 256)  # invalid UTF-8, control characters, every byte
HOSTILE = "<script>alert('x')</script>&\"&amp;"


class _Text(HTMLParser):
    """The text a browser shows, and whether the markup is well formed (every tag closed)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open.pop() == tag, f"</{tag}> closes nothing"

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def shown_text(markup: str) -> str:
    parser = _Text()
    parser.feed(markup)
    parser.close()
    assert parser.open == [], f"unclosed {parser.open}"
    return "".join(parser.text)


def add_wide(r: redis.Redis, key: str, entries: int, width: int) -> None:
    pipe = r.pipeline(transaction=False)
    for _ in range(entries):
        pipe.xadd(key, {f"f{n:05d}": f"v{n}" for n in range(width)})
    pipe.execute()


def test_stream_page_of_entries_with_10000_fields_is_bounded(viewer_client, r) -> None:
    add_wide(r, "wide", 50, 10_000)
    page = viewer_client.get(reverse("streams_admin:stream", args=[b"wide"]))
    assert page.status_code == 200
    assert len(page.content) < 2 * MB  # it was 57 MB
    rows = table(page.content, 1)
    assert len(rows) == 50
    assert all("9,980 more fields…" in row[-1] for row in rows)
    assert "f00019" in rows[0][-1] and "f00020" not in rows[0][-1]


def test_entry_with_a_10mb_binary_value_is_bounded_and_downloads_whole(viewer_client, r) -> None:
    entry_id = r.xadd("blob", {"name": "report.bin", "payload": BIG, "after": "tail"}).decode()
    url = reverse("streams_admin:entry", args=[b"blob", entry_id])
    page = viewer_client.get(url).content.decode()
    assert len(page) < MB
    assert "binary" in page and "10,475,760 more bytes…" in page  # 10 MB less the 10,000 shown
    full = viewer_client.get(url + "?full=1").content.decode()
    assert len(full) < 2 * MB  # it was 62 MB
    assert "tearray(" not in full  # the value's bytes as escapes, not a Python repr
    download = f"{url}fields/1/download/"
    assert f'href="{download}"' in full
    assert "Copy as XADD" in full and "no command here" in full  # and why
    got = viewer_client.get(download)
    assert got.status_code == 200
    assert got["Content-Type"] == "application/octet-stream"
    assert got["Content-Length"] == str(len(BIG))
    assert got["Content-Disposition"] == f'attachment; filename="blob-{entry_id}-field1.bin"'
    assert b"".join(got) == BIG
    first = viewer_client.get(f"{url}fields/0/download/")
    assert b"".join(first) == b"report.bin"


def test_download_of_a_missing_entry_or_field_is_a_404(viewer_client, r) -> None:
    entry_id = r.xadd("blob", {"a": "1"}).decode()
    url = reverse("streams_admin:entry", args=[b"blob", entry_id])
    assert viewer_client.get(f"{url}fields/1/download/").status_code == 404
    missing = reverse("streams_admin:entry", args=[b"blob", "1-1"])
    assert viewer_client.get(f"{missing}fields/0/download/").status_code == 404
    r.set("text", "a string, not a stream")
    not_stream = reverse("streams_admin:entry", args=[b"text", "1-1"])
    assert viewer_client.get(f"{not_stream}fields/0/download/").status_code == 404


def test_download_is_staff_only_and_scoped(client, viewer_client, r, settings) -> None:
    entry_id = r.xadd("other", {"a": "secret"}).decode()
    url = reverse("streams_admin:entry", args=[b"other", entry_id]) + "fields/0/download/"
    settings.STREAMS_ADMIN = {"KEY_PATTERN": "app:*"}
    assert viewer_client.get(url).status_code == 404
    viewer_client.logout()
    settings.STREAMS_ADMIN = {}
    assert viewer_client.get(url).status_code == 302  # to the login page


def test_entry_page_pages_through_fields(viewer_client, r) -> None:
    r.xadd("wide", {f"f{n:05d}": f"v{n}" for n in range(2_500)})
    entry_id = r.xrange("wide")[0][0].decode()
    url = reverse("streams_admin:entry", args=[b"wide", entry_id])
    first = viewer_client.get(url).content.decode()
    assert "f00999" in first and "f01000" not in first
    assert f'<a href="{url}?fields_from=1000">1,500 more fields…</a>' in first
    second = viewer_client.get(url + "?fields_from=1000").content.decode()
    assert "f00999" not in second and "f01000" in second and "f01999" in second
    assert "500 more fields…" in second


@pytest.mark.parametrize("limit", [1, 5, 6, 7, 12, 13, 40, 199, 200])
def test_html_is_cut_before_escaping_never_inside_an_escape(limit: int) -> None:
    raw = (HOSTILE * 20).encode()
    out = value(Value(raw), limit, "/more/")
    assert "<script" not in out
    left = len(raw) - limit
    assert shown_text(out) == f"{HOSTILE * 20}"[:limit] + f"… {left:,} more bytes…"


def test_cut_utf8_keeps_whole_characters_and_binary_does_not_crash() -> None:
    text = "流" * 100  # 3 bytes each
    out = value(Value(text.encode()), 10, "/more/")
    assert shown_text(out).startswith("流流流…") and "binary" not in out
    junk = b"\xff\x00\xe6\xb5" * 1000
    for limit in range(1, 12):
        out = value(Value(junk), limit, "/more/")
        assert shown_text(out)  # renders, escaped, with its hex
        assert "binary" in out


def test_every_budget_path_keeps_html_escaped(viewer_client, r) -> None:
    big_html = HOSTILE * 100_000  # 3.5 MB of markup
    envelope = {"event_id": HOSTILE, "event_type": HOSTILE, "timestamp": HOSTILE,
                "data": big_html}
    entry_id = r.xadd("hostile", {**envelope, HOSTILE: big_html}).decode()
    add_wide(r, "hostile", 1, 50)
    r.xadd("hostile", {HOSTILE * 100: HOSTILE * 100})
    url = reverse("streams_admin:entry", args=[b"hostile", entry_id])
    pages = [reverse("streams_admin:stream", args=[b"hostile"]), url, url + "?full=1",
             url + "?fields_from=3", url + "?fields_from=4&full=1"]
    for page in pages:
        body = viewer_client.get(page).content.decode()
        assert len(body) < 2 * MB, page
        assert "<script>alert" not in body, page
        assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in body, page


def test_tail_rows_are_bounded(db) -> None:
    flat = [b"payload", BIG]
    for n in range(10_000):
        flat += [f"f{n}".encode(), HOSTILE.encode()]
    row = render_row(b"live", parse_entry([b"1-1", flat]))
    assert len(row) < 20_000
    assert "9,981 more fields…" in shown_text(row)  # 10,001 less the 20 shown
    assert "<script" not in row


def test_a_row_with_huge_json_data_previews_it(viewer_client, r) -> None:
    data = '{"items": [' + ",".join(['"x"'] * 3_000_000) + "]}"  # 12 MB of JSON
    r.xadd("events", {"event_id": "e1", "event_type": "big", "timestamp": "t", "data": data})
    page = viewer_client.get(reverse("streams_admin:stream", args=[b"events"])).content
    assert len(page) < 100_000
    assert "more bytes…" in table(page, 1)[0][-1]


def test_dead_letters_are_bounded(viewer_client, r) -> None:
    dlq = "agent:stream:deadletter:job"
    for _ in range(20):
        r.xadd(dlq, {"original_stream": "jobs", "original_id": "1-1", "event_type": "job",
                     "group": "g", "consumer": "c", "delivery_count": "5", "reason": "failed",
                     "error": "Traceback " + "x" * MB})
    page = viewer_client.get(reverse("streams_admin:dead-letters") + f"?key={dlq}")
    assert page.status_code == 200
    assert len(page.content) < 200_000  # each error was 1 MB
    row = table(page.content, 1)[0]
    assert row[-1] == "Traceback " + "x" * 190 + "…"


def test_pending_rows_are_bounded(viewer_client, r) -> None:
    consumer = "c" * 100_000  # a name is any bytes, and as big as a value
    for n in range(50):
        r.xadd("q", {"n": str(n)})
    r.xgroup_create("q", "g", id="0")
    r.xreadgroup("g", consumer, {"q": ">"})
    page = viewer_client.get(reverse("streams_admin:group", args=[b"q", b"g"]))
    assert page.status_code == 200
    assert len(page.content) < MB  # 50 rows of the name were 5 MB
    pending = table(page.content, 1)
    assert len(pending) == 50 and pending[0][1] == "c" * 1000 + "…"


def test_the_entry_page_of_a_10mb_entry_holds_only_what_it_shows(viewer_client, r) -> None:
    # The whole entry used to be held twice over: XRANGE's reply, and XINFO STREAM's
    # first-entry and last-entry (the same entry here). Python's own allocations are counted.
    entry_id = r.xadd("blob", {"payload": BIG}).decode()
    url = reverse("streams_admin:entry", args=[b"blob", entry_id])
    viewer_client.get(url)  # warm: imports, templates
    tracemalloc.start()
    try:
        assert viewer_client.get(url).status_code == 200
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * MB
