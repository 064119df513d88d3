"""The charts' data: a stream's, a group's (and its consumers'), and the overview's sparklines,
as JSON read from the dashboard's database (never from Redis: history outlives a stream, and
a chart still draws while Redis is down).

Permission and scope as the pages (views.screen: may_view on the target served, a key outside
KEY_PATTERN is a 404). Output is bounded: at most HISTORY_MAX_POINTS points a series,
CHART_CONSUMERS consumers (the response says how many were left out), SPARK_STREAMS streams.
A response is kept for one step of its range (10 s up to 6 h, 10 min for 7 days), and requests
for it at the same moment share one computation: 50 people on the same group page read its
history once (a 7-day read of a group and 10 consumers: ~90 daily rows of 10-minute points,
and only today's decoded again in a later step: history._unpacked).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse, JsonResponse

from streams_admin import conf, names, targets
from streams_admin.flight import SingleFlight
from streams_admin.trends import history, sampler
from streams_admin.trends.models import Series
from streams_admin.views import screen

CHART_CONSUMERS = 10  # consumers drawn in "pending per consumer"
SPARK_STREAMS = 100  # streams one sparklines request may ask for
SPARK_GROUPS = 500  # group series read for their worst lag, over all the streams asked
LABEL_BYTES = 120  # of a consumer's name, in a legend
SPARK_POINTS = 120  # a sparkline is ~100 px wide
# The JSON of each chart asked lately, by target, step and names: a table per range, as a
# table forgets what is older than the freshness of the request that leads (its range's step).
charts = {name: SingleFlight() for name in history.RANGES}
STREAM_COLUMNS = ("length", "added")
GROUP_COLUMNS = ("read", "lag", "time_lag_ms", "pending", "oldest_ms", "consumers")


def bad_range(request: HttpRequest) -> JsonResponse | None:
    """A 400 naming the ranges there are, or None when ?range is one of them (or absent)."""
    chosen = request.GET.get("range", "1h")
    if chosen in history.RANGES:
        return None
    shown = chosen[:40].encode("unicode_escape").decode("ascii")
    return JsonResponse({"error": f"Unknown range {shown!r}: use one of "
                                  f"{', '.join(history.RANGES)}."}, status=400)


def forget() -> None:
    """Every kept chart (tests, benchmarks)."""
    for table in charts.values():
        table.clear()
    _notes.clear()


def cached(request: HttpRequest, parts: list[bytes], build: Callable[[str, int], dict]
           ) -> HttpResponse:
    return HttpResponse(chart_json(request.GET.get("range", "1h"), parts, build),
                        content_type="application/json")


def chart_json(chosen: str, parts: list[bytes], build: Callable[[str, int], dict]) -> bytes:
    """build(range, now)'s JSON, computed once per step of the range by one request in this
    process: those arriving meanwhile wait for it, later ones reuse it (flight.py). The key
    holds the step's number, so a series served is at most one step (one bucket) old."""
    now = int(time.time())
    step = history.step_of(chosen)
    digest = hashlib.sha256(b"".join(len(p).to_bytes(8, "big") + p for p in parts)).digest()
    key = (targets.current_name(), now // step, digest)
    # orjson: ~8x faster than json on 20,000 numbers and Nones (a 7-day group chart)
    return charts[chosen].run(key, step, lambda: orjson.dumps(build(chosen, now)))


# As django.utils.html.json_script: JSON in a <script> element cannot end it, whatever the
# names in it (a consumer named "</script>").
SCRIPT_ESCAPES = ((b"&", b"\\u0026"), (b"<", b"\\u003C"), (b">", b"\\u003E"))


def embedded(chosen: str, key: bytes, group: bytes | None = None) -> str:
    """A page's chart data for its range, as the text of a <script type="application/json">
    (charts.js draws it at once: no second request; a range switched to is fetched). The
    same JSON as the history endpoints', kept as theirs is; the page checked the permission."""
    body = chart_json(chosen, *(_stream_chart(key) if group is None else _group_chart(key, group)))
    for raw, escaped in SCRIPT_ESCAPES:
        body = body.replace(raw, escaped)
    return body.decode()


def _values(found: history.History, names_: dict[str, str]) -> dict[str, tuple]:
    """Chart name -> values (integers; rates to a thousandth, and ms / 1000 that print as
    short as they are), None all along for a series without any."""
    return {out: found.values.get(name) or (None,) * len(found.times)
            for out, name in names_.items()}


def _label(name: bytes) -> str:
    """A consumer's name for a legend: a name may be as long as a value, a legend line not."""
    return names.show(name[:LABEL_BYTES]) + ("…" if len(name) > LABEL_BYTES else "")


def _frame(found: history.History) -> dict[str, Any]:
    return {"range": found.range, "step": found.step, "times": found.times}


NOTE_KEPT = 5.0  # seconds a process reuses what the sampler is doing (its charts are older)
_notes: dict[str, tuple[float, dict[str, Any]]] = {}


def sampler_note() -> dict[str, Any]:
    """What the sampler is doing, for a chart with nothing (or nothing new) to draw: two
    small queries of the dashboard's database (its lease, its status rows), no Redis; kept
    NOTE_KEPT seconds (the chart it goes with is kept a step of its range, 10 s or more)."""
    target, now = targets.current_name(), time.monotonic()
    kept = _notes.get(target)
    if kept is None or now - kept[0] > NOTE_KEPT:
        kept = _notes[target] = (now, _sampler_note(target))
    return kept[1]


def _sampler_note(target: str) -> dict[str, Any]:
    state = sampler.state()
    mine = next((t for t in state.targets if t.target == target), None)
    return {"running": state.running, "sampled": mine.last_success if mine else None,
            "failing": mine.last_error if mine and mine.failing else "",
            "interval": conf.get("SAMPLE_INTERVAL")}


@screen
def stream_history(request: HttpRequest, key: bytes) -> HttpResponse:
    if (refused := bad_range(request)) is not None:
        return refused
    return cached(request, *_stream_chart(key))


Chart = tuple[list[bytes], Callable[[str, int], dict]]  # its key's parts, what builds it


def _stream_chart(key: bytes) -> Chart:
    def build(chosen: str, now: int) -> dict:
        found, = history.histories(targets.current_name(), [(key, None, None)], chosen, now,
                                   columns=STREAM_COLUMNS)
        return {**_frame(found), "sampler": sampler_note(),
                "series": _values(found, {"length": "length", "in_rate": "in_rate"})}

    return [b"s", key], build


@screen
def group_history(request: HttpRequest, key: bytes, group: bytes) -> HttpResponse:
    if (refused := bad_range(request)) is not None:
        return refused
    return cached(request, *_group_chart(key, group))


def _group_chart(key: bytes, group: bytes) -> Chart:
    def build(chosen: str, now: int) -> dict:
        target = targets.current_name()
        # one more than drawn: a count only when there are more (most groups have fewer)
        consumers = history.consumers_of(target, key, group, limit=CHART_CONSUMERS + 1)
        total = history.consumer_count(target, key, group) if len(consumers) > \
            CHART_CONSUMERS else len(consumers)
        consumers = consumers[:CHART_CONSUMERS]
        found, *each = history.histories(
            target, [(key, group, None), *[(key, group, c) for c in consumers]], chosen, now,
            columns=GROUP_COLUMNS)
        series = _values(found, {name: name for name in (
            "lag", "worst_lag", "time_lag_s", "worst_time_lag_s", "pending", "oldest_pending_s",
            "worst_oldest_pending_s", "out_rate", "consumers")})
        return {**_frame(found), "sampler": sampler_note(), "series": series, "consumers": {
            "names": [_label(c) for c in consumers],
            "pending": [_values(c, {"pending": "pending"})["pending"] for c in each],
            "left_out": total - len(consumers)}}

    return [b"g", key, group], build


@screen
def sparklines(request: HttpRequest) -> HttpResponse:
    """In-rate and worst lag (of all the stream's groups) of each stream asked (?key=TOKEN,
    repeated; the overview's visible streams) in one request."""
    if (refused := bad_range(request)) is not None:
        return refused
    tokens = request.GET.getlist("key")
    if len(tokens) > SPARK_STREAMS:
        return JsonResponse({"error": f"At most {SPARK_STREAMS} streams at once."}, status=400)
    keys: dict[str, bytes] = {}
    for token in tokens:
        try:
            key = names.from_token(token)
        except ValueError:
            return JsonResponse({"error": "Not a stream name token."}, status=400)
        if names.in_scope(key):  # another one gets nothing, as the overview would not list it
            keys[token] = key

    def build(chosen: str, now: int) -> dict:
        return _sparklines(keys, chosen, now)

    return cached(request, [b"o", *sorted(keys.values())], build)


def _sparklines(keys: dict[str, bytes], chosen: str, now: int) -> dict[str, Any]:
    target = targets.current_name()
    groups = _groups_of(target, list(keys.values()))
    wanted = [(key, None, None) for key in keys.values()] + [(s, g, None) for s, g in groups]
    found = history.histories(target, wanted, chosen, now, columns=("added", "lag"),
                              max_points=SPARK_POINTS)
    by_stream = dict(zip(keys.values(), found[:len(keys)], strict=True))
    worst: dict[bytes, list] = {}
    for (stream, _), series in zip(groups, found[len(keys):], strict=True):
        lags = series.values.get("worst_lag") or series.values.get("lag") or \
            (None,) * len(series.times)
        worst[stream] = [_max(a, b) for a, b in zip(worst.get(stream, lags), lags, strict=True)]
    frame: dict[str, Any] = _frame(found[0]) if found else {"range": chosen, "times": []}
    return {**frame, "sampler": sampler_note(), "streams": {
        token: {"in_rate": _values(by_stream[key], {"in_rate": "in_rate"})["in_rate"],
                "worst_lag": worst.get(key, [None] * len(frame["times"]))}
        for token, key in keys.items()}}


def _max(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else max(a, b)


def _groups_of(target: str, streams: list[bytes]) -> list[tuple[bytes, bytes]]:
    """The groups with a history of these streams (SPARK_GROUPS at most, in one query)."""
    if not streams:
        return []
    rows = Series.objects.filter(target=target, kind=Series.GROUP, stream__in=streams).order_by(
        "id").values_list("stream", "group")[:SPARK_GROUPS]
    return [(bytes(s), bytes(g)) for s, g in rows]
