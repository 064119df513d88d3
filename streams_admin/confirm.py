"""Pages that show what a destructive action will do and ask for the typed name (GET), and
hand the confirmed form (POST) to the action. A form of selected entries reaches its page by
POST with `preview` set (a selection can be too long for a URL); that only shows the page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render

from streams_admin import actions, names, params, streams
from streams_admin.operations import ActionError
from streams_admin.operations import groups as group_ops
from streams_admin.operations import pending as pending_ops
from streams_admin.operations import streams as stream_ops
from streams_admin.pending import GroupDetail, group_detail
from streams_admin.views import screen

RETRY_URL_CHARS = 4000  # a refused confirmation's way back; longer URLs some proxies refuse
PREVIEW_ROWS = 100  # selected entries listed one by one; the counts cover all of them


def confirmable(permission: str, post: Callable[..., HttpResponse]
                ) -> Callable[[Callable[..., dict[str, Any]]], Callable[..., HttpResponse]]:
    """GET renders the confirmation (its view returns the context); POST runs the action."""

    def decorate(page: Callable[..., dict[str, Any]]) -> Callable[..., HttpResponse]:
        @screen
        def view(request: HttpRequest, **kwargs: Any) -> HttpResponse:
            if request.method == "POST" and "preview" not in request.POST:
                return post(request, **kwargs)
            if not actions.may(request.user, permission):
                raise PermissionDenied("You may not do this.")
            server = streams.server()
            info = streams.stream(kwargs["key"], server)
            context = {"stream": info, "server": server, **kwargs,
                       **page(request, info, **kwargs)}
            return render(request, "streams_admin/confirm.html", context)

        view.__name__ = page.__name__
        return view

    return decorate


@confirmable(actions.ADMINISTER, actions.trim)
def trim(request: HttpRequest, info: streams.StreamInfo, key: bytes) -> dict[str, Any]:
    q = request.GET
    form = {"strategy": q.get("strategy", "maxlen"), "threshold": q.get("threshold", ""),
            "approximate": q.get("approximate", "")}
    preview, error = None, ""
    if form["threshold"]:
        try:
            preview = stream_ops.preview_trim(key, form["strategy"], form["threshold"],
                                              form["approximate"] == "1")
        except ActionError as exc:
            error = str(exc)
    return {"kind": "trim", "form": form, "preview": preview, "error": error,
            "typed": names.show(key)}


@confirmable(actions.ADMINISTER, actions.delete_stream)
def delete_stream(request: HttpRequest, info: streams.StreamInfo, key: bytes) -> dict[str, Any]:
    return {"kind": "delete-stream", "typed": names.show(key)}


@confirmable(actions.ADMINISTER, actions.destroy_group)
def destroy_group(request: HttpRequest, info: streams.StreamInfo, key: bytes,
                  group: bytes) -> dict[str, Any]:
    return {"kind": "destroy-group", "detail": group_detail(info, streams.group(info, group)),
            "typed": names.show(group)}


@confirmable(actions.ADMINISTER, actions.set_id)
def set_id(request: HttpRequest, info: streams.StreamInfo, key: bytes,
           group: bytes) -> dict[str, Any]:
    position = request.GET.get("position", "")
    preview, error = None, ""
    if position:
        try:
            preview = group_ops.preview_set_id(key, position)
        except ActionError as exc:
            error = str(exc)
    group_info = streams.group(info, group)
    return {"kind": "set-id", "group_info": group_info, "position": position,
            "preview": preview, "error": error, "typed": names.show(group),
            **_skipping(key, group, group_info, preview)}


def _skipping(key: bytes, group: bytes, group_info: streams.Group,
              preview: group_ops.LagPreview | None) -> dict[str, Any]:
    """Whether the move jumps over unread entries, and how many (the lag it loses)."""
    try:
        if preview is None or not group_ops.skips(key, group, preview.position):
            return {"skips": False}
    except ActionError:  # the group went meanwhile: the action will say so
        return {"skips": False}
    known = group_info.lag is not None and not preview.at_least
    return {"skips": True, "skipped": max(0, group_info.lag - preview.lag) if known else None,  # type: ignore[operator]  # known: lag is not None
            "skipped_at_least": group_info.lag_counted == "at least"}


@confirmable(actions.ADMINISTER, actions.delete_consumer)
def delete_consumer(request: HttpRequest, info: streams.StreamInfo, key: bytes, group: bytes,
                    consumer: bytes) -> dict[str, Any]:
    detail = group_detail(info, streams.group(info, group))
    others = [name for name, _ in detail.summary.by_consumer if name != consumer]
    if detail.consumers is not None:
        others = [c.name for c in detail.consumers if c.name != consumer]
    return {"kind": "delete-consumer", "holding": group_ops.consumer_pending(key, group, consumer),
            "others": others, "typed": names.show(consumer)}


@confirmable(actions.OPERATE, actions.ack_matching)
def ack_matching(request: HttpRequest, info: streams.StreamInfo, key: bytes,
                 group: bytes) -> dict[str, Any]:
    consumer = params.name(request.GET.get("consumer") or None)
    detail = group_detail(info, streams.group(info, group))
    held = dict(detail.summary.by_consumer).get(consumer, 0) if consumer else detail.summary.count
    return {"kind": "ack-matching", "consumer": consumer, "idle": request.GET.get("idle", ""),
            "held": held, "typed": names.show(group)}


def _form(request: HttpRequest) -> QueryDict:
    """The page's input: the query, or the POSTed selection that asked for the preview."""
    return request.POST if request.method == "POST" else request.GET


def _selection(request: HttpRequest) -> tuple[list[str], str, str]:
    """The selected IDs, where to go afterwards, and where a refused confirmation comes back
    to: this page with the selection in its URL, if that URL stays short."""
    ids, after = _form(request).getlist("ids"), _form(request).get("next", "")
    query = QueryDict(mutable=True)
    query.setlist("ids", ids)
    if after:
        query["next"] = after
    retry = f"{request.path}?{query.urlencode()}"
    return ids, after, retry if len(retry) <= RETRY_URL_CHARS else after


@confirmable(actions.OPERATE, actions.requeue)
def requeue(request: HttpRequest, info: streams.StreamInfo, key: bytes,
            group: bytes) -> dict[str, Any]:
    ids, after, retry = _selection(request)
    reach: tuple[pending_ops.CopyReach, ...] = ()
    error = ""
    try:
        reach = pending_ops.requeue_reach(key, group, ids)
    except ActionError as exc:
        error = str(exc)
    detail = group_detail(info, streams.group(info, group))
    return {"kind": "requeue", "ids": ids, "reach": reach, "error": error, "after": after,
            "retry": retry, "consumers": _claim_targets(detail),
            "typed": names.show(group)}


def _claim_targets(detail: GroupDetail) -> list[bytes]:
    """The group's consumers, the likeliest alive first: holding least, then idle least."""
    return [c.name for c in sorted(detail.consumers or (), key=lambda c: (c.pending, c.idle_ms))]


@confirmable(actions.ADMINISTER, actions.delete_entries)
def delete_entries(request: HttpRequest, info: streams.StreamInfo,
                   key: bytes) -> dict[str, Any]:
    ids, after, retry = _selection(request)
    risks: tuple[stream_ops.EntryRisk, ...] = ()
    error = ""
    try:
        risks = stream_ops.preview_delete(key, ids)
    except ActionError as exc:
        error = str(exc)
    return {"kind": "delete-entries", "ids": ids, "risks": risks[:PREVIEW_ROWS],
            "more": max(0, len(risks) - PREVIEW_ROWS), "error": error, "after": after,
            "retry": retry, "found": sum(r.exists for r in risks),
            "pending": sum(bool(r.pending_in) for r in risks if r.exists),
            "unread": sum(bool(r.unread_by) for r in risks),
            "typed": names.show(key)}
