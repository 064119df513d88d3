"""Rendering entries: the fast paths give what the plain code would, and everything is escaped."""

from __future__ import annotations

import html
import json

import pytest

from streams_admin.html import Budget, _e, entry_row, fields, value
from streams_admin.values import Entry, Value, parse_entry, pretty_json


@pytest.mark.parametrize("data", [
    {"n": 0, "source": "bench"}, {}, [], [1, 2, "a,\n  b"], {"a": {"b": 1}}, [{"a": 1}],
    {"é": "ü\u2028", "x": None, "y": 1.5, "z": True}, "text", 5, None, {"k": []},
    {'a,\n  "b': "c"},
])
def test_pretty_json_is_json_dumps_with_indent_2(data: object) -> None:
    assert pretty_json(data) == json.dumps(data, indent=2, ensure_ascii=False)


@pytest.mark.parametrize("text", ["plain", "", "<b>", "a & b", "\"'", "ü <é>"])
def test_escaping_matches_html_escape(text: str) -> None:
    assert _e(text) == html.escape(text, quote=True)


HOSTILE = b"<script>alert('x')</script>&\""


def hostile_entry(data: bytes) -> Entry:
    fields = [b"event_id", HOSTILE, b"event_type", HOSTILE, b"timestamp", HOSTILE,
              b"data", data, HOSTILE, HOSTILE + b"\xff", HOSTILE * 100, b"x"]
    return parse_entry([b"1-0", fields])


@pytest.mark.parametrize("data", [HOSTILE, json.dumps({"<b>": HOSTILE.decode()}).encode()])
def test_rows_values_and_fields_escape_everything_from_redis(data: bytes) -> None:
    # The template tags mark these safe: nothing from Redis may come through unescaped.
    entry = hostile_entry(data)
    whole = [entry_row(HOSTILE, entry, 10, select=True, show_stream=True),
             entry_row(HOSTILE, entry, 10_000), value(Value(HOSTILE), 100),
             fields(entry.fields, Budget(1000, 1 << 20, 1 << 20))]
    for out in [*whole, value(Value(HOSTILE), 5)]:
        assert "<script" not in out and "<b>" not in out and "'x'" not in out
    assert all("&lt;script&gt;" in out for out in whole)
