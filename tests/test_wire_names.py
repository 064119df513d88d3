"""The bus owns the wire format: the dashboard imports its names (streams_admin.bus.wire)
instead of spelling them again, so that a renamed field cannot leave one module behind."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from django.urls import reverse

from streams_admin import demo
from streams_admin.bus import wire
from streams_admin.redis import client
from tests.html import parse

PACKAGE = Path(wire.__file__).resolve().parent.parent
NAMES = {n.decode() for n in (*wire.ENVELOPE_FIELDS, wire.CORRELATION_ID,
                              *wire.DEAD_LETTER_FIELDS, wire.REQUEUED_FROM, wire.REQUEUE_COUNT)}
NAMES.add(wire.RESPONSE_STREAM)
# Names no other word is spelled like: caught as str literals too (a bare "data" or "error"
# is also a template's context key or a websocket message type, so those only as bytes).
DISTINCT = {name for name in NAMES if "_" in name}
KEY_PARTS = (wire.RESPONSE, wire.DEADLETTER, wire.IDEMPOTENCY)
# The publish form's fields are named after the envelope's, but they are HTML form fields.
ALLOWED = {("actions.py", "event_type"), ("actions.py", "correlation_id")}


def dashboard_modules() -> list[Path]:
    """Every module of the app but the bus's own (and migrations, which are history)."""
    return sorted(path for path in PACKAGE.rglob("*.py")
                  if not {"bus", "migrations"} & set(path.relative_to(PACKAGE).parts))


def literals(tree: ast.AST) -> list[ast.Constant]:
    """String and bytes literals, leaving out docstrings and text dict keys (the names of our
    own records: audit details, template contexts, log extras; entries' fields are bytes)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            skip.update(id(k) for k in node.keys
                        if isinstance(k, ast.Constant) and isinstance(k.value, str))
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)):
            skip.add(id(body[0].value))
    return [node for node in ast.walk(tree) if isinstance(node, ast.Constant)
            and isinstance(node.value, str | bytes) and id(node) not in skip]


def spelled(value: str | bytes) -> str | None:
    """The wire name a literal spells, if any."""
    if isinstance(value, bytes):
        text = value.decode("utf-8", "replace")
        if text in NAMES:
            return text
    else:
        text = value
        if text in DISTINCT:
            return text
        # Source in a string (the Lua scripts) names fields in quotes.
        quoted = next((n for n in NAMES if f'"{n}"' in text), None)
        if quoted:
            return quoted
    return next((part for part in KEY_PARTS if part in text), None)


def test_the_dashboard_spells_no_wire_name_of_its_own() -> None:
    found = []
    for path in dashboard_modules():
        relative = str(path.relative_to(PACKAGE))
        for node in literals(ast.parse(path.read_text(), str(path))):
            name = spelled(node.value)
            if name and (relative, name) not in ALLOWED:
                found.append(f"{relative}:{node.lineno}: {node.value[:60]!r}")
    assert not found, "wire names spelled outside streams_admin/bus/wire.py:\n" + "\n".join(found)


def test_the_scan_sees_what_it_looks_for() -> None:
    # A scan that finds nothing because it looks at nothing would pass above.
    assert len(dashboard_modules()) > 20
    assert PACKAGE / "values.py" in dashboard_modules()
    assert PACKAGE / "operations" / "pending.py" in dashboard_modules()
    assert not any("bus" in path.parts for path in dashboard_modules())
    source = ('x = {b"original_id": 1, "event_id": 2}; y = "agent:" + "deadletter:*"\n'
              'z = \'k == "consumer"\'; w = ("error", b"error", "delivery_count")')
    found = [spelled(node.value) for node in literals(ast.parse(source))]
    assert sorted(filter(None, found)) == ["consumer", "deadletter:", "delivery_count", "error",
                                           "original_id"]
    assert spelled(b"original_id") == "original_id"
    assert spelled("event_type") == "event_type" and spelled("error") is None


def test_the_bus_imports_nothing_from_django() -> None:
    for path in sorted((PACKAGE / "bus").glob("*.py")):
        assert not re.search(r"^\s*(from|import) django", path.read_text(), re.M), path


def test_the_dead_letter_page_shows_the_metadata_the_bus_writes(viewer_client, r) -> None:
    # The page reads the metadata by the bus's names (DeadLetter), not by names of its own.
    demo.seed(client())
    dead = wire.dead_letter_key(demo.PREFIX, "document.processed")
    page = viewer_client.get(reverse("streams_admin:dead-letters") + f"?key={dead}")
    rows = [row for rows in parse(page.content).tables for row in rows[1:]]
    letters = [row[1:] for row in rows if "max_deliveries" in row]
    assert len(letters) == 5
    assert {tuple(row[0:1]) + tuple(row[2:]) for row in letters} == {
        ("document.processed", "analytics-group / analytics-1", "5", "max_deliveries",
         "TimeoutError: parser timeout")}
