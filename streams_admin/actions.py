"""Action views: POST only (CSRF by middleware), permission-checked, audited by operations.

Without JavaScript an action redirects back with a message; for htmx it answers 204 with an
HX-Trigger event, and the tables showing the changed data refresh on it. Destructive actions
first show (GET) what will happen and ask for the typed name.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from streams_admin import acl, conf, names, params, permissions
from streams_admin.models import AuditEntry
from streams_admin.operations import Actor, Outcome
from streams_admin.operations import deadletters as dead_letter_ops
from streams_admin.operations import groups as group_ops
from streams_admin.operations import pending as pending_ops
from streams_admin.operations import streams as stream_ops
from streams_admin.views import screen

OPERATE, ADMINISTER, may = permissions.OPERATE, permissions.ADMINISTER, permissions.may


def actor(request: HttpRequest) -> Actor:
    return Actor(request.user, request.META.get("REMOTE_ADDR"))


def _record(request: HttpRequest, name: str, kwargs: dict[str, Any], result: str) -> None:
    """An audit row for an attempt that never reached the operation."""
    key = kwargs.get("key", b"")
    AuditEntry.objects.create(
        user=request.user, username=request.user.get_username(),  # type: ignore[misc]  # logged in: behind screen()
        address=request.META.get("REMOTE_ADDR"), action=name, key=key,
        key_text=names.show(key)[:500], group=names.show(kwargs.get("group") or b"")[:500],
        ok=False, result=result,
    )


def _refuse(request: HttpRequest, name: str, kwargs: dict[str, Any], why: str) -> None:
    _record(request, name, kwargs, f"refused: {why}")
    raise PermissionDenied(why)


def action(name: str, permission: str) -> Callable[..., Callable[..., HttpResponse]]:
    """POST only; refused (403, audited) in read-only mode or without the permission."""

    def decorate(view: Callable[..., Outcome | HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, **kwargs: Any) -> HttpResponse:
            if why := permissions.refusal(request.user, permission):
                _refuse(request, name, kwargs, why)
            if why := permissions.redis_refusal(name, kwargs.get("key")):  # its ACL: a message
                _record(request, name, kwargs, f"refused: {why}")
                return respond(request, Outcome(False, why), kwargs)
            try:
                outcome = view(request, **kwargs)
            except params.BadParam as exc:
                _record(request, name, kwargs, f"refused: {exc}")
                outcome = Outcome(False, str(exc))
            if isinstance(outcome, HttpResponse):  # the view answered itself (a form again)
                return outcome
            if not outcome.ok and (why := acl.learn(name, kwargs.get("key"), outcome.message)):
                outcome = dataclasses.replace(outcome, message=why)  # the audit keeps Redis's
            return respond(request, outcome, kwargs)

        return screen(require_POST(wrapper))

    return decorate


def back(request: HttpRequest, kwargs: dict[str, Any], outcome: Outcome | None = None) -> str:
    """Where to go after an action: the form's `next`, else the page of what was acted on
    (or of what holds it, when the action removed it)."""
    target = request.POST.get("next", "")
    if outcome is not None and not outcome.ok:  # a refused confirmation: show it again
        target = request.POST.get("retry", target)
    # A path on this site only: redirect() would take "0-0" for a view name and fail.
    if target.startswith("/") and url_has_allowed_host_and_scheme(target, {request.get_host()}):
        return target
    if outcome is not None and "stream" in outcome.details:  # published: show it there
        return reverse("streams_admin:stream", args=[names.from_token(outcome.details["stream"])])
    removed = outcome is not None and outcome.ok and outcome.details.get("removed")
    if removed == "stream":
        return reverse("streams_admin:overview")
    if "group" in kwargs and removed != "group":
        return reverse("streams_admin:group", args=[kwargs["key"], kwargs["group"]])
    if "key" in kwargs:
        return reverse("streams_admin:stream", args=[kwargs["key"]])
    return reverse("streams_admin:overview")


def _done_so_far(request: HttpRequest) -> int:
    return params.whole_number(request.POST.get("done_so_far"), 0)


def respond(request: HttpRequest, outcome: Outcome, kwargs: dict[str, Any]) -> HttpResponse:
    if outcome.unfinished:
        return render(request, "streams_admin/progress.html", {
            "outcome": outcome, "total": _done_so_far(request) + outcome.count,
            "fields": [(k, v) for k, v in request.POST.items()
                       if k not in {"csrfmiddlewaretoken", "after", "done_so_far"}],
            "back": back(request, kwargs)})
    earlier = _done_so_far(request)
    if earlier:  # the last step of a long job: say what the whole job did
        outcome = Outcome(outcome.ok, f"{outcome.message} ({earlier + outcome.count:,} in all, "
                          "over several steps.)", outcome.count)
    if getattr(request, "htmx", False):
        response = HttpResponse(status=204)
        response["HX-Trigger"] = json.dumps({"streams-changed": None, "show-message": {
            "text": outcome.message, "ok": outcome.ok}})
        return response
    (messages.success if outcome.ok else messages.error)(request, outcome.message)
    return redirect(back(request, kwargs, outcome))


def selected(request: HttpRequest) -> list[str]:
    """The ticked entry IDs, each checked: one that is not an ID refuses the action."""
    return params.entry_ids(request.POST.getlist("ids"))


def name_field(request: HttpRequest, field: str) -> bytes | None:
    """A name typed by the user (plain text) or chosen from a list (a URL token)."""
    typed = request.POST.get(field, "").strip()
    if typed:
        return typed.encode()
    return params.name(request.POST.get(f"{field}_token") or None)


def idle_ms(request: HttpRequest, field: str = "min_idle") -> int | None:
    return params.duration_ms(request.POST.get(field))


# -- pending entries (operator) ---------------------------------------------------------


@action("ack", OPERATE)
def ack(request: HttpRequest, key: bytes, group: bytes) -> Outcome:
    return pending_ops.ack(actor(request), key, group, selected(request))


@action("claim", OPERATE)
def claim(request: HttpRequest, key: bytes, group: bytes) -> Outcome:
    guard = idle_ms(request)
    return pending_ops.claim(actor(request), key, group, selected(request),
                             name_field(request, "to"),
                             conf.get("MIN_IDLE_MS") if guard is None else guard)


@action("claim-idle", OPERATE)
def claim_idle(request: HttpRequest, key: bytes, group: bytes) -> Outcome:
    guard = idle_ms(request)
    return pending_ops.claim_idle(
        actor(request), key, group, source=params.name(request.POST.get("from") or None),
        to=name_field(request, "to"),
        min_idle_ms=conf.get("MIN_IDLE_MS") if guard is None else guard,
        after=params.after_id(request.POST.get("after")))


@action("requeue", OPERATE)
def requeue(request: HttpRequest, key: bytes, group: bytes) -> Outcome:
    return pending_ops.requeue(actor(request), key, group, selected(request),
                               request.POST.get("confirm", ""))


@action("dead-letter", OPERATE)
def dead_letter(request: HttpRequest, key: bytes, group: bytes) -> Outcome:
    return pending_ops.dead_letter(actor(request), key, group, selected(request),
                                   request.POST.get("reason", "").strip())


@action("ack-matching", OPERATE)
def ack_matching(request: HttpRequest, key: bytes, group: bytes) -> Outcome:
    if request.POST.get("confirm") != names.show(group):
        return Outcome(False, "Type the group's name exactly to acknowledge everything the "
                       "filter matches.")
    return pending_ops.ack_matching(
        actor(request), key, group, consumer=params.name(request.POST.get("consumer") or None),
        min_idle_ms=idle_ms(request, "idle"), after=params.after_id(request.POST.get("after")))


PUBLISH_FIELDS = ("event_type", "data", "correlation_id", "hash_tag")


@screen
def publish(request: HttpRequest) -> HttpResponse:
    """GET: the form on a page of its own; POST: publish (see publish_event)."""
    if request.method == "POST":
        return publish_event(request)
    if not may(request.user, OPERATE):
        raise PermissionDenied("You may not do this.")
    form = {name: request.GET.get(name, "") for name in PUBLISH_FIELDS}
    return render(request, "streams_admin/publish.html", {"form": form, "error": ""})


@action("publish", OPERATE)
def publish_event(request: HttpRequest) -> Outcome | HttpResponse:
    p = request.POST
    outcome = stream_ops.publish(actor(request), p.get("event_type", ""), p.get("data", ""),
                                 p.get("correlation_id", ""), hash_tag=p.get("hash_tag") == "1")
    if outcome.ok:
        return outcome
    # Refused (bad JSON, no type, Redis down): the form again, with what was typed.
    htmx = getattr(request, "htmx", False)
    return render(request, "streams_admin/publish.html" + ("#form" if htmx else ""),
                  {"form": {name: p.get(name, "") for name in PUBLISH_FIELDS},
                   "error": outcome.message}, status=200 if htmx else 400)


@action("create-group", OPERATE)
def create_group(request: HttpRequest, key: bytes) -> Outcome:
    return group_ops.create_group(actor(request), key, name_field(request, "group"),
                                  request.POST.get("start", "$"), "mkstream" in request.POST)


@action("create-consumer", OPERATE)
def create_consumer(request: HttpRequest, key: bytes, group: bytes) -> Outcome:
    return group_ops.create_consumer(actor(request), key, group,
                                     name_field(request, "consumer"))


@action("redrive", OPERATE)
def redrive(request: HttpRequest, key: bytes) -> Outcome:
    if request.POST.get("all"):
        return dead_letter_ops.redrive_all(actor(request), key,
                                      params.entry_id(request.POST.get("after")))
    return dead_letter_ops.redrive(actor(request), key, selected(request))


# -- destructive (admin) ----------------------------------------------------------------


@action("set-id", ADMINISTER)
def set_id(request: HttpRequest, key: bytes, group: bytes) -> Outcome:
    return group_ops.set_group_id(actor(request), key, group, request.POST.get("position", ""),
                                  request.POST.get("confirm", ""))


@action("destroy-group", ADMINISTER)
def destroy_group(request: HttpRequest, key: bytes, group: bytes) -> Outcome:
    return group_ops.destroy_group(actor(request), key, group, request.POST.get("confirm", ""))


@action("delete-consumer", ADMINISTER)
def delete_consumer(request: HttpRequest, key: bytes, group: bytes,
                    consumer: bytes) -> Outcome:
    return group_ops.delete_consumer(actor(request), key, group, consumer,
                                     request.POST.get("confirm", ""))


@action("trim", ADMINISTER)
def trim(request: HttpRequest, key: bytes) -> Outcome:
    p = request.POST
    return stream_ops.trim(actor(request), key, p.get("strategy", ""), p.get("threshold", ""),
                           p.get("approximate") == "1", p.get("override") == "1",
                           p.get("confirm", ""))


@action("delete-entries", ADMINISTER)
def delete_entries(request: HttpRequest, key: bytes) -> Outcome:
    return stream_ops.delete_entries(actor(request), key, selected(request),
                                     request.POST.get("confirm", ""))


@action("delete-stream", ADMINISTER)
def delete_stream(request: HttpRequest, key: bytes) -> Outcome:
    return stream_ops.delete_stream(actor(request), key, request.POST.get("confirm", ""))
