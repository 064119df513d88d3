"""The fast paths that render entries must give exactly what the plain code would."""

from __future__ import annotations

import html
import json

import pytest

from streams_admin.html import _e
from streams_admin.values import pretty_json


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
