"""One function view per screen; htmx requests get the screen's partial."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

import redis
from django.contrib.auth.decorators import user_passes_test
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils.http import content_disposition_header
from django.views.decorators.cache import never_cache
from django_htmx.middleware import HtmxDetails

from streams_admin import conf, html, names, params, pending, permissions, streams, targets
from streams_admin import overview as overview_model
from streams_admin.bus import wire
from streams_admin.dead_letters import dead_letter
from streams_admin.filters import FILTER_PARAMS, EntryFilter
from streams_admin.models import AuditEntry
from streams_admin.operations import friendly, moves
from streams_admin.operations.pending import dead_letter_key
from streams_admin.target_status import statuses as target_statuses
from streams_admin.trends import health as trend_health
from streams_admin.values import id_parts

log = logging.getLogger(__name__)


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def screen(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Staff login required, never cached; a missing stream, group or entry is a 404 page,
    and so is a stream outside the keys the dashboard shows (KEY_PATTERN)."""

    @wraps(view)
    def wrapper(request: HtmxHttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if "key" in kwargs and not names.in_scope(kwargs["key"]):
            raise Http404(names.out_of_scope(kwargs["key"]))
        try:
            return view(request, *args, **kwargs)
        except streams.NotFound as exc:
            raise Http404(f"{names.show(exc.args[0])} does not exist (any more).") from exc
        except params.BadParam as exc:
            return render(request, "streams_admin/bad_request.html", {"error": str(exc)},
                          status=400)
        except redis.ResponseError as exc:  # input params let through: a 400 with Redis' words
            log.warning("Redis refused %s: %s", request.get_full_path()[:200], exc)
            return render(request, "streams_admin/bad_request.html",
                          {"error": friendly(exc)}, status=400)

    # Looked up per request: the rule lives in permissions.py alone (a test swaps it there).
    return never_cache(user_passes_test(_may_view)(wrapper))


def _may_view(user: Any) -> bool:
    """Whether user may see this target; one who may see another one gets a 403 instead of
    the login page."""
    if permissions.may_view(user):
        return True
    if permissions.viewable(user):
        raise PermissionDenied("You may not view this target.")
    return False


def _render(request: HtmxHttpRequest, template: str, partial: str, context: dict) -> HttpResponse:
    # A request aimed at the partial (paging, filters) gets just that; a refresh of the whole
    # screen after an action (hx-select on the page's wrapper) gets the page.
    if request.htmx and request.htmx.target == partial:
        template += f"#{partial}"
    return render(request, template, context)


@screen
def overview(request: HtmxHttpRequest) -> HttpResponse:
    q = request.GET
    sort = q.get("sort", "name") if q.get("sort") in overview_model.SORTS else "name"
    page = params.page_number(q.get("page"))
    shared = overview_model.shared_overview(query=q.get("q", ""), sort=sort,
                                            desc=q.get("desc") == "1", page=page)
    context = {"overview": shared.overview, "as_of": shared.taken, "q": q.get("q", ""),
               "sort": sort, "desc": q.get("desc") == "1", "server": shared.server,
               "thresholds": _thresholds(), "freshness": conf.get("OVERVIEW_FRESHNESS"),
               "row_health": shared.health}
    return _render(request, "streams_admin/overview.html", "streams", context)


def _thresholds() -> dict[str, int]:
    return {name.lower(): conf.get(name) for name in
            ("LAG_THRESHOLD", "IDLE_THRESHOLD_MS", "POISON_DELIVERIES")}


@screen
def stream(request: HtmxHttpRequest, key: bytes) -> HttpResponse:
    q = request.GET
    size = params.page_size(q)
    server = streams.server()
    info = streams.stream(key, server)
    match = EntryFilter.from_query(q)
    error = ""
    try:
        if match:  # a search: newest first from the cursor, SEARCH_BUDGET entries at most
            before = params.before_id(q.get("before"))
            bound = (params.id_or_time(q["at"]) if q.get("at")
                     else f"({before}" if before else "+")
            page = streams.search_page(key, match, size, before=bound)
        elif q.get("at"):
            page = streams.entries_page(key, size, before=params.id_or_time(q["at"]))
        elif after := params.after_id(q.get("after")):
            page = streams.entries_page(key, size, after=f"({after}")
        elif before := params.before_id(q.get("before")):
            page = streams.entries_page(key, size, before=f"({before}")
        else:
            page = streams.entries_page(key, size)
    except params.BadParam as exc:
        error, page = str(exc), streams.entries_page(key, size)
    prefix = conf.get("BUS_PREFIX").encode()
    event_type = wire.event_type_of(prefix, key)
    context = {"stream": info, "page": page, "size": size, "sizes": conf.get("PAGE_SIZES"),
               # The publish form writes to this stream: its type, in its naming.
               "event_type": names.show(event_type) if event_type is not None else "",
               "hash_tag": event_type is not None and wire.is_tagged(key[len(prefix):]),
               "at": q.get("at", ""), "error": error, "server": server,
               "match": match, "form": {name: q.get(name, "") for name in FILTER_PARAMS},
               "tail_query": urlencode({
                   **({"after": info.last_id} if info.last_id and info.length else {}),
                   **{name: q[name] for name in FILTER_PARAMS if q.get(name)}}),
               "preview_chars": conf.get("PREVIEW_CHARS")}
    return _render(request, "streams_admin/stream.html", "entries", context)


@screen
def entry(request: HtmxHttpRequest, key: bytes, entry_id: str) -> HttpResponse:
    if id_parts(entry_id) is None:
        raise Http404("Not an entry ID.")
    server = streams.server()
    info = streams.stream(key, server)
    full = request.GET.get("full") == "1"
    budget = html.Budget.entry_page(full)
    first = _field_position(request.GET.get("fields_from"))
    found = streams.entry_slice(key, entry_id, first, budget.fields, budget.size, budget.value)
    whole = found is not None and found.is_whole
    context = {
        "stream": info,
        "entry_id": entry_id,
        "entry": found,
        "xadd": found.xadd_command(key) if whole and (full or found.size <= XADD_LIMIT) else "",  # type: ignore[union-attr]  # whole: found
        "xadd_fits": found is not None and found.total_fields <= budget.fields
        and found.size <= budget.size,
        "budget": budget,
        "poison": conf.get("POISON_DELIVERIES"),
        "pending_in": pending.entry_pending(key, entry_id, info.groups),
        "dead_letter_move": moves.how(key, [dead_letter_key(key, {})]),
        "full": full,
        "preview_chars": budget.value,
        "server": server,
    }
    return render(request, "streams_admin/entry.html", context)


def _field_position(text: str | None) -> int:
    """?fields_from=N: the entry page shows fields from position N on (0 if it is no number)."""
    return int(text) if text and text.isascii() and text.isdigit() and len(text) < 10 else 0


XADD_LIMIT = 65536  # bigger entries give the command with ?full=1 (if within ENTRY_BYTES)


@screen  # type: ignore[arg-type]  # a StreamingHttpResponse goes through screen() as it is
def download(request: HtmxHttpRequest, key: bytes, entry_id: str,
             position: int) -> StreamingHttpResponse:
    """One field's value, whole, as a file (the pages show a budget of it). Sent in chunks
    from an async iterator: under ASGI, Django reads a sync iterator whole into a list first."""
    if id_parts(entry_id) is None:
        raise Http404("Not an entry ID.")
    data = streams.field_value(key, entry_id, position)
    response = StreamingHttpResponse(_chunks(data), content_type="application/octet-stream")
    response["Content-Length"] = str(len(data))
    name = f"{names.to_token(key)}-{entry_id}-field{position}.bin"
    response["Content-Disposition"] = content_disposition_header(
        as_attachment=True, filename=SAFE_FILENAME.sub("_", name)[-120:])
    return response


SAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]")
DOWNLOAD_CHUNK = 256 * 1024


async def _chunks(data: bytearray) -> AsyncIterator[bytes]:
    view = memoryview(data)
    for offset in range(0, len(data), DOWNLOAD_CHUNK):
        yield bytes(view[offset:offset + DOWNLOAD_CHUNK])


@screen
def group(request: HtmxHttpRequest, key: bytes, group: bytes) -> HttpResponse:
    q = request.GET
    size = params.page_size(q)
    server = streams.server()
    info = streams.stream(key, server)
    detail = pending.group_detail(info, streams.group(info, group))
    error = ""
    try:
        consumer, min_idle = params.name(q.get("consumer")), params.duration_ms(q.get("idle"))
        after = params.after_id(q.get("after"))
    except params.BadParam as exc:
        error, consumer, min_idle, after = str(exc), None, None, None
    page = pending.pending_page(info, group, size, after=after, consumer=consumer,
                                min_idle_ms=min_idle)
    context = {"stream": info, "detail": detail, "page": page, "consumer": consumer,
               "idle": q.get("idle", ""), "size": size, "sizes": conf.get("PAGE_SIZES"),
               "error": error, "server": server, "thresholds": _thresholds(),
               "trend": trend_health.trend(targets.current_name(), key, group),
               # By the dead-letter stream named after this stream (one event type per
               # stream, the bus's way): "" on a standalone server, where it is one script.
               "dead_letter_move": moves.how(key, [dead_letter_key(key, {})])}
    return _render(request, "streams_admin/group.html", "pending", context)


TAIL_PARAMS = ("from", *FILTER_PARAMS)


def _tail(request: HtmxHttpRequest, stream_info: streams.StreamInfo | None,
          ws_query: dict[str, str]) -> HttpResponse:
    ws_query |= {name: request.GET[name] for name in TAIL_PARAMS if request.GET.get(name)}
    context = {"stream": stream_info, "ws_query": urlencode(ws_query), "server": streams.server(),
               "form": {name: request.GET.get(name, "") for name in TAIL_PARAMS},
               "pattern": ws_query.get("pattern", ""), "max_rows": conf.get("TAIL_MAX_ROWS")}
    return render(request, "streams_admin/tail.html", context)


@screen
def tail(request: HtmxHttpRequest, key: bytes) -> HttpResponse:
    """One stream, live; `after` continues exactly from an entry the stream page showed."""
    info = streams.stream(key, streams.server())
    ws_query = {"key": names.to_token(key)}
    if after := params.after_id(request.GET.get("after")):
        ws_query["after"] = after
    return _tail(request, info, ws_query)


@screen
def firehose(request: HtmxHttpRequest) -> HttpResponse:
    """Every stream whose key matches a pattern, live."""
    pattern = request.GET.get("pattern", "").strip() or conf.get("KEY_PATTERN")
    return _tail(request, None, {"pattern": pattern})


@screen
def dead_letters(request: HttpRequest) -> HttpResponse:
    """The bus's dead-letter streams, and the entries of one, newest first."""
    server = streams.server()
    pattern = wire.dead_letter_pattern(conf.get("BUS_PREFIX"))
    keys, _ = streams.scan_streams(pattern, conf.get("MAX_STREAMS"))
    keys = sorted(key for key in keys if names.in_scope(key))
    queues = [info for info in streams.stream_infos(keys, server) if info is not None]
    key = params.name(request.GET.get("key")) or (queues[0].key if queues else None)
    if key is not None and not names.in_scope(key):
        raise Http404(names.out_of_scope(key))
    if key is not None and key not in {info.key for info in queues}:
        streams.stream(key, server)  # a key typed in the URL: a 404 unless it is a stream
    size = params.page_size(request.GET)
    page = None
    if key is not None:
        before = params.before_id(request.GET.get("before"))
        page = streams.dead_letters_page(key, size, before=f"({before}" if before else "+")
    letters = [dead_letter(entry) for entry in page.entries] if page else []
    context = {"queues": queues, "key": key, "page": page, "server": server,
               "pattern": pattern, "letters": letters,
               "redrive_move": moves.how(key, [letter.original_stream for letter in letters
                                               if letter.original_stream]) if key else ""}
    return render(request, "streams_admin/dead_letters.html", context)


@screen
def audit(request: HttpRequest) -> HttpResponse:
    q = request.GET
    rows = AuditEntry.objects.select_related("user").filter(target=targets.current_name())
    if q.get("user"):
        rows = rows.filter(username=q["user"])
    if q.get("stream"):
        rows = rows.filter(key_text__icontains=q["stream"])
    if q.get("action"):
        rows = rows.filter(action=q["action"])
    page = Paginator(rows, 50).get_page(q.get("page"))
    actions = AuditEntry.objects.order_by().values_list("action", flat=True).distinct()
    users = AuditEntry.objects.order_by().values_list("username", flat=True).distinct()
    context = {"page": page, "actions": sorted(actions), "users": sorted(users), "q": q,
               "server": streams.server()}
    return render(request, "streams_admin/audit.html", context)


@screen
def targets_page(request: HttpRequest) -> HttpResponse:
    """Every target the user may view: up or down (why), server and latency, all asked at once."""
    shown = permissions.viewable(request.user)
    root = getattr(request, "script_root", "/")
    rows = [(status, f"{root}t/{status.target.name}/")
            for status in target_statuses(shown)]
    return render(request, "streams_admin/targets.html", {"rows": rows})
