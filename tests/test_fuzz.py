"""Hostile values at every URL and every parameter, as every role: never a 5xx.

Every URL pattern of the app (read from the resolver, so a new one is covered without a
change here), GET and POST, gets generated path segments and query or form parameters: IDs
past 2^64, Unicode digits, newlines, "~" tokens, empty and huge strings, HTML, JSON nested
thousands deep, names of streams, groups and consumers that exist and that do not. Redis is
real and holds streams, groups, pending entries and dead letters (one malformed).

Deterministic (derandomize): 20 examples per URL and method, under a minute;
FUZZ_EXAMPLES=100 runs it longer; FUZZ_RANDOM=1 draws new examples each run.
"""

from __future__ import annotations

import base64
import inspect
import json
import logging
import os
import re
from collections.abc import Callable
from urllib.parse import quote, urlencode

import pytest
import redis
from django.test import Client
from django.urls import URLResolver, get_resolver
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams_admin import params
from streams_admin.filters import TailOptions
from streams_admin.models import AuditEntry
from streams_admin.values import id_parts
from tests.conftest import role_client

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))
RANDOM = os.environ.get("FUZZ_RANDOM")  # set: new examples each run, to look for more
TOP = 2**64 - 1
S, G, DLQ, BUS = b"orders", b"ship", b"agent:stream:deadletter:order.placed", \
    b"agent:stream:order.placed"
BINARY = b"\xff\x00bin/.."
TALLY = {"requests": 0, "5xx": 0}


READS = re.compile(r'(?:GET|POST|q|p|query)\s*(?:\.get(?:list)?\(|\[)\s*"(\w+)"')
NAMED = re.compile(r'name_field\(request, "(\w+)"\)')
# Fields that helpers read: found by the helper's name in the view's source.
HELPERS = {"selected(request)": {"ids"}, "idle_ms(request)": {"min_idle"},
           'idle_ms(request, "idle")': {"idle"}, "respond(request": {"next", "retry",
                                                                    "done_so_far"},
           "page_size(": {"size"}, "EntryFilter.from_query": {"q", "type", "field", "op", "value"},
           "_tail(request": {"from", "q", "type", "field", "op", "value"}}


def functions_of(view: Callable) -> list[Callable]:
    """The view and every function its decorators wrap or close over (the action a
    confirmation page posts to, the page function behind it)."""
    found, todo = [], [view]
    while todo:
        fn = todo.pop()
        if not inspect.isfunction(fn) or fn in found:
            continue
        found.append(fn)
        todo += [getattr(fn, "__wrapped__", None),
                 *(cell.cell_contents for cell in fn.__closure__ or ())]
    return found


def params_read(view: Callable) -> list[str]:
    """The parameter names a view reads, found in its source and its helpers' calls."""
    source = "".join(inspect.getsource(fn.__code__) for fn in functions_of(view))  # not unwrapped
    named = {f"{name}{end}" for name in NAMED.findall(source) for end in ("", "_token")}
    helped = {field for call, fields in HELPERS.items() if call in source for field in fields}
    return sorted({*READS.findall(source), *named, *helped})


def app_routes() -> dict[str, list[str]]:
    """Every route of the streams_admin URLconf (with its prefix in the project) and the
    parameters its view reads."""
    for entry in get_resolver().url_patterns:
        if isinstance(entry, URLResolver) and entry.namespace == "streams_admin":
            return {str(entry.pattern) + str(p.pattern): params_read(p.callback)
                    for p in entry.url_patterns}
    raise AssertionError("streams_admin is not in the project's URLconf")


ROUTES = app_routes()
PARAMS = sorted({name for names in ROUTES.values() for name in names})
SEGMENT = re.compile(r"<(?:(\w+):)?(\w+)>")


def token(name: bytes) -> str:
    return "~" + base64.urlsafe_b64encode(name).decode().rstrip("=")


hostile_ids = st.one_of(
    st.sampled_from(["0-0", "0", "1-0", "2-0", "3-0", "5-0", "1", f"{TOP}-{TOP}", f"{TOP}",
                     f"{TOP + 1}-0", f"0-{TOP + 1}", "99999999999999999999-0", "1-1\n",
                     "1-1\r\n", " 1-1 ",
                     "\u0661\u0662\u0663", "\uff11-\uff10", "-1", "1-", "-", "+", "$", ">", "*",
                     "1-*", "1e5", "0x10", "1_000-0", "(1-0", "1-0-0", ""]),
    st.tuples(st.integers(0, 2**70), st.integers(0, 2**70)).map(lambda t: f"{t[0]}-{t[1]}"),
)
hostile_numbers = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.text("0123456789.", min_size=1, max_size=30),
    st.sampled_from(["9" * 100_000, "9" * 5000 + "d", "1e309", "nan", "inf", "-0", "\u00b2",
                     "\u0661\u0662", "5m", "2h", "1.5d", "90", "0.0000001ms", "36500d"]),
)
hostile_names = st.sampled_from([
    "orders", "ship", "c1", "c2", "missing", "agent:stream:order.placed",
    DLQ.decode(), token(BINARY), token(S), "~", "~!!", "~AAAA", "~" + "A" * 5000, ".", "..",
    "a/b", "plain", "<b>x</b>", "%2F", "line\nbreak",
])
hostile_json = st.one_of(
    st.integers(1, 5000).map(lambda n: "[" * n + "]" * n),
    st.sampled_from(['{"a":' * 3000 + "1" + "}" * 3000, "{", '"\\ud800"', "[1,", "NaN",
                     '{"response_stream": "agent:stream:response:x"}', "1" * 5000]),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                 lambda inner: st.lists(inner, max_size=3)
                 | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                 max_leaves=10).map(json.dumps),
)
hostile_times = st.one_of(
    st.sampled_from(["2026-11-28T10:00", "0001-01-01", "9999-12-31T23:59:59-23:59",
                     "1970-01-01T00:00", "1969-12-31T23:59:59", "now", "2026-11-28T10:00Z",
                     "2026-W48-1", "\uff12\uff10\uff12\uff16-01-01"]),
    st.datetimes().map(lambda d: d.isoformat()),
)
hostile_values = st.one_of(
    hostile_ids, hostile_numbers, hostile_names, hostile_names, hostile_json, hostile_times,
    st.text(max_size=40),
    st.sampled_from(["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "x" * 100_000,
                     "maxlen", "minid", "1", "on", "orders", "ship", "contains", "last",
                     "http://evil.example/", "//evil.example/", "/streams/orders/"]),
)
hostile_segments = {"name": hostile_names | st.text(max_size=20), "str": hostile_ids,
                    "int": st.sampled_from(["0", "1", "2", "3", str(2**64), "9" * 5000])
                    | st.integers(0, 10**30).map(str)}
# Streams with their groups and consumers, so most paths reach the view and not a 404.
SCENES = [{"key": "orders", "group": "ship", "consumer": "c1"},
          {"key": "agent:stream:order.placed", "group": "workers", "consumer": "w1"},
          {"key": token(BINARY), "group": token(BINARY), "consumer": "nobody"},
          {"key": DLQ.decode(), "group": "none", "consumer": "c1"}]


def form(route: str) -> st.SearchStrategy[dict]:
    """Parameters the route's view reads, mostly, and now and then any other."""
    read = st.sampled_from(ROUTES[route]) if ROUTES[route] else st.nothing()  # none: a file
    return st.dictionaries(read | st.sampled_from(PARAMS),
                           hostile_values | st.lists(hostile_values, min_size=1, max_size=3),
                           max_size=6)


def seed(r: redis.Redis) -> None:
    """Streams, groups, consumers, pending entries and dead letters, one of them malformed."""
    r.flushall()
    pipe = r.pipeline(transaction=False)
    for n in range(1, 6):
        pipe.xadd(S, {"n": str(n)}, id=f"{n}-0")
        pipe.xadd(BUS, {"event_id": f"e{n}", "event_type": "order.placed",
                        "timestamp": "2026-11-28T10:00:00+00:00", "data": json.dumps({"n": n})})
    pipe.xgroup_create(S, G, id="0")
    pipe.xreadgroup(G, "c1", {S: ">"}, count=3)
    pipe.xgroup_createconsumer(S, G, "c2")
    pipe.xgroup_create(BUS, "workers", id="0")
    pipe.xreadgroup("workers", "w1", {BUS: ">"}, count=2)
    pipe.xadd(BINARY, {b"\xff": b"\x00"})
    pipe.xgroup_create(BINARY, BINARY, id="0")
    pipe.xadd(DLQ, {"original_stream": BUS, "original_id": "1-0", "data": "{}"})
    pipe.xadd(DLQ, {"original_stream": BUS, "original_id": "a/b", "data": "{}"})
    pipe.xadd(DLQ, {"original_stream": "", "original_id": "", "data": "{}"})
    pipe.set("plain", "not a stream")
    pipe.execute()


@pytest.fixture
def clients(client, django_user_model, db) -> dict[str, Client]:
    made = {"anonymous": Client()}
    for role in ("viewer", "operator", "admin"):
        made[role] = role_client(Client(), django_user_model, f"Streams {role}", role)
    admin = django_user_model.objects.get(username="admin")
    admin.is_superuser = True
    admin.save()
    for each in made.values():
        each.raise_request_exception = False  # a 500 is what a user would get: count it
    return made


class Refusals(logging.Handler):
    """Counts the requests that reached Redis with something it refused (views.screen's
    last guard): each is a parse this layer should have done."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record.getMessage())


@pytest.fixture(scope="module")
def refusals():
    handler = Refusals()
    logger = logging.getLogger("streams_admin.views")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


@pytest.fixture(scope="module", autouse=True)
def tally():
    yield
    print(f"\nfuzz: {TALLY['requests']} requests, {TALLY['5xx']} with a 5xx")


def path_for(route: str, segments: dict[str, str]) -> str:
    return "/" + SEGMENT.sub(lambda m: quote(segments[m[2]], safe="~"), route)


def check(response, role: str, method: str, path: str, data: dict, before: int,
          refused_in_views: list[str]) -> None:
    TALLY["requests"] += 1
    where = f"{role} {method} {path[:300]!r} {str(data)[:500]}"
    if response.status_code >= 500:
        TALLY["5xx"] += 1
        exc = getattr(response, "exc_info", None)
        raise AssertionError(f"{response.status_code} for {where}: {exc and exc[1]!r}")
    if role == "anonymous":
        assert response.status_code != 200, where
    said = response.content.decode(errors="replace") + response.get("HX-Trigger", "")
    refused = AuditEntry.objects.filter(id__gt=before, result__contains="Redis refused")
    # Redis never refuses what the parsing layer let through (a refusal is a bug to fix here)
    assert "Redis refused" not in said and not refused.exists() and not refused_in_views, \
        f"{where}: {list(refused.values_list('result', flat=True)) or refused_in_views}"


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize("route", list(ROUTES))
@settings(max_examples=EXAMPLES, deadline=None, derandomize=RANDOM is None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(data=st.data())
def test_no_input_gives_a_5xx(clients, r, refusals, route, method, data) -> None:
    seed(r)
    converters = SEGMENT.findall(route)
    scene = data.draw(st.sampled_from([*SCENES, None]), label="scene")
    segments = {name: data.draw(hostile_segments[kind or "str"], label=name)
                if scene is None or name not in scene else scene[name]
                for kind, name in converters}
    role = data.draw(st.sampled_from(sorted(clients)), label="role")
    fields = data.draw(form(route), label="fields")
    htmx = data.draw(st.sampled_from([{}, {"HTTP_HX_REQUEST": "true"},
                                      {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "entries"}]),
                     label="headers")
    path = path_for(route, segments)
    before = AuditEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0
    refusals.seen.clear()
    # Followed as a browser does, so a message lands on the page it was meant for.
    response = getattr(clients[role], method)(path, fields, follow=role != "anonymous", **htmx)
    check(response, role, method, path, fields, before, refusals.seen)


TAIL_QUERY = st.dictionaries(
    st.sampled_from(["key", "pattern", "after", "from", "resume", "type", "field", "op", "value",
                     "q"]),
    hostile_values, max_size=5)


@settings(max_examples=20 * EXAMPLES, deadline=None, derandomize=RANDOM is None, database=None,
          suppress_health_check=[HealthCheck.data_too_large, HealthCheck.large_base_example,
                                 HealthCheck.too_slow])
@given(query=TAIL_QUERY)
def test_a_tail_socket_query_is_parsed_or_refused_in_words(query: dict[str, str]) -> None:
    """The live tail's websocket (not a URL pattern above) reads its options from the query:
    either they are refused with a message, or it starts after an ID Redis takes."""
    try:
        options = TailOptions.from_query(urlencode(query).encode())
    except params.BadParam:
        return
    since = options.since
    assert since is None or (id_parts(since) is not None and since != params.LAST_ID), since
