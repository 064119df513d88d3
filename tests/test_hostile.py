"""Everything in Redis is untrusted: HTML is escaped everywhere, any bytes render and link."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
import redis
from django.urls import resolve, reverse

from streams_admin import demo, names
from tests.html import table

SCRIPT = "<script>alert('x')</script>"
NAMES = [b"plain", b"with space", b"a/b/c", b"..", b".", b"~tilde", b"%41",
         b"caf\xc3\xa9 \xe6\xb5\x81", b"\xff\xfe\x00bin", b"", b"?q=1#frag", b"<b>x</b>",
         b"line\nbreak"]


@pytest.mark.parametrize("name", NAMES)
def test_names_round_trip_through_urls(name: bytes) -> None:
    url = reverse("streams_admin:group", args=[name, name])
    match = resolve(unquote(url))  # the server decodes the path before routing
    assert match.kwargs == {"key": name, "group": name}


@pytest.mark.parametrize("name", NAMES)
def test_streams_with_any_key_open_from_the_overview(viewer_client, r: redis.Redis, name) -> None:
    r.xadd(name, {b"f\xff": b"v\x00"})
    r.xgroup_create(name, name, id="0")
    overview = viewer_client.get("/").content.decode()
    url = reverse("streams_admin:stream", args=[name])
    assert f'href="{url}"' in overview.replace("&amp;", "&")
    page = viewer_client.get(url)
    assert page.status_code == 200
    cell = table(page.content, 1)[0][3]
    assert cell == "binary f\\xffhex66 ff binary v\\x00hex76 00"  # escaped text, then hex
    group = viewer_client.get(reverse("streams_admin:group", args=[name, name]))
    assert group.status_code == 200


def test_html_in_keys_groups_consumers_fields_and_values_is_escaped(viewer_client, r) -> None:
    key = f"s:{SCRIPT}"
    entry_id = r.xadd(key, {SCRIPT: SCRIPT, "data": f'{{"x": "{SCRIPT}"}}',
                            "event_id": SCRIPT, "event_type": SCRIPT, "timestamp": SCRIPT})
    r.xgroup_create(key, SCRIPT, id="0")
    r.xreadgroup(SCRIPT, SCRIPT, {key: ">"})
    pages = [
        "/",
        reverse("streams_admin:stream", args=[key.encode()]),
        reverse("streams_admin:entry", args=[key.encode(), entry_id.decode()]),
        reverse("streams_admin:group", args=[key.encode(), SCRIPT.encode()]),
    ]
    for url in pages:
        body = viewer_client.get(url).content.decode()
        assert "<script>alert" not in body, url
        assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in body, url


def test_duplicate_field_names_are_kept_in_order(viewer_client, r) -> None:
    entry_id = r.execute_command("XADD", "d", "*", "a", "1", "b", "2", "a", "3").decode()
    page = viewer_client.get(reverse("streams_admin:entry", args=[b"d", entry_id])).content
    text = page.decode()
    assert text.index(">a<") < text.index(">b<") < text.rindex(">a<")
    command = 'XADD "d" * "a" "1" "b" "2" "a" "3"'.replace('"', "&quot;")
    assert command in text


def test_long_values_are_cut_with_more_bytes_and_a_download(viewer_client, r) -> None:
    entry_id = r.xadd("big", {"v": "x" * 1_000_000}).decode()
    stream_page = viewer_client.get(reverse("streams_admin:stream", args=[b"big"])).content.decode()
    assert len(stream_page) < 50_000
    assert "999,800 more bytes…" in stream_page
    entry_url = reverse("streams_admin:entry", args=[b"big", entry_id])
    assert len(viewer_client.get(entry_url).content) < 100_000
    full = viewer_client.get(entry_url + "?full=1").content.decode()
    assert 300_000 > len(full) > 256 * 1024  # the page's budget, and a download for the rest
    assert f'href="{entry_url}fields/0/download/"' in full


def test_demo_data_renders_everywhere_and_is_idempotent(viewer_client, r) -> None:
    made = demo.seed(r)
    assert len(made) == 8 and demo.seed(r) == []
    for key in r.scan_iter(_type="stream"):
        page = viewer_client.get(reverse("streams_admin:stream", args=[key]))
        assert page.status_code == 200, key
        for group in r.xinfo_groups(key):
            url = reverse("streams_admin:group", args=[key, group["name"]])
            assert viewer_client.get(url).status_code == 200, (key, group["name"])
    assert "<script>alert" not in viewer_client.get("/").content.decode()


def test_show_escapes_control_characters() -> None:
    assert names.show(b"a\x00b") == "a\\x00b"
    assert names.show("流".encode()) == "流"
