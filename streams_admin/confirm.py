"""Pages that show what a destructive action will do and ask for the typed name (GET), and
hand the confirmed form (POST) to the action."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from streams_admin import actions, names, params, streams
from streams_admin.operations import ActionError
from streams_admin.operations import groups as group_ops
from streams_admin.operations import streams as stream_ops
from streams_admin.pending import group_detail
from streams_admin.views import screen


def confirmable(permission: str, post: Callable[..., HttpResponse]
                ) -> Callable[[Callable[..., dict[str, Any]]], Callable[..., HttpResponse]]:
    """GET renders the confirmation (its view returns the context); POST runs the action."""

    def decorate(page: Callable[..., dict[str, Any]]) -> Callable[..., HttpResponse]:
        @screen
        def view(request: HttpRequest, **kwargs: Any) -> HttpResponse:
            if request.method == "POST":
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
    return {"kind": "set-id", "group_info": streams.group(info, group), "position": position,
            "preview": preview, "error": error}


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
