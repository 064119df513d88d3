"""The Alerts screen (viewers read it) and the rule forms and buttons (admins only).

Rules belong to the target served (/t/NAME/alerts/), as audit rows do: a target's admins
manage its rules and no other's. Every change and every test send writes an audit row.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from streams_admin import permissions, targets
from streams_admin.operations import Actor, Outcome, audited
from streams_admin.trends import alert_screen, notify
from streams_admin.trends.alert_forms import RuleForm
from streams_admin.trends.alert_models import CLEARED, AlertEvent, AlertRule
from streams_admin.views import screen


@screen
def alerts(request: HttpRequest) -> HttpResponse:
    return render(request, "streams_admin/alerts.html", alert_screen.context())


def administer(action: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Admins only (403 otherwise; a refused POST is audited as `action`), on top of screen()."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, **kwargs: Any) -> HttpResponse:
            if why := permissions.refusal(request.user, permissions.ADMINISTER):
                if request.method == "POST":
                    _audit(request, action, Outcome(False, f"refused: {why}"), kwargs)
                raise PermissionDenied(why)
            return view(request, **kwargs)

        return screen(wrapper)

    return decorate


def _audit(request: HttpRequest, action: str, outcome: Outcome,
           arguments: dict[str, Any]) -> Outcome:
    actor = Actor(request.user, request.META.get("REMOTE_ADDR"))
    return audited(actor, action, b"", lambda: outcome, arguments=arguments)


def _rule(rule_id: int) -> AlertRule:
    return get_object_or_404(AlertRule, id=rule_id, target=targets.current_name())


def _back() -> HttpResponse:
    return redirect(reverse("streams_admin:alerts"))


@administer("alert-rule-create")
def rule_new(request: HttpRequest) -> HttpResponse:
    form = RuleForm(request.POST or None, initial={"for_seconds": 60, "metric": "lag"})
    if request.method == "POST" and form.is_valid():
        rule = form.save(commit=False)
        rule.target = targets.current_name()
        rule.save()
        _audit(request, "alert-rule-create", Outcome(True, f"Rule “{rule.name}” created."),
               {"rule": rule.id, **form.described()})
        messages.success(request, f"Rule “{rule.name}” created.")
        return _back()
    return render(request, "streams_admin/alert_rule.html", {"form": form, "rule": None})


@administer("alert-rule-edit")
def rule_edit(request: HttpRequest, rule_id: int) -> HttpResponse:
    rule = _rule(rule_id)
    form = RuleForm(request.POST or None, instance=rule)
    if request.method == "POST" and form.is_valid():
        was_enabled = AlertRule.objects.get(id=rule.id).enabled
        with transaction.atomic():
            form.save()
            if was_enabled and not rule.enabled:
                _close(rule, "rule disabled")
        _audit(request, "alert-rule-edit", Outcome(True, f"Rule “{rule.name}” saved."),
               {"rule": rule.id, **form.described()})
        messages.success(request, f"Rule “{rule.name}” saved.")
        return _back()
    return render(request, "streams_admin/alert_rule.html", {"form": form, "rule": rule})


def _close(rule: AlertRule, note: str) -> None:
    """A rule no longer evaluated ends its states: an event each, no notification (nobody
    would be told it resolved, since it may not have)."""
    now = time.time()
    AlertEvent.objects.bulk_create(
        [AlertEvent(rule=rule, rule_name=rule.name, target=rule.target, stream=s.stream,
                    group=s.group, kind=CLEARED, at=now, value=s.value, note=note)
         for s in rule.states.all()], batch_size=500)
    rule.states.all().delete()
    AlertRule.objects.filter(id=rule.id).update(matched=0, unavailable=0)


@administer("alert-rule-enable")
@require_POST
def rule_enable(request: HttpRequest, rule_id: int) -> HttpResponse:
    rule = _rule(rule_id)
    enable = request.POST.get("enabled") == "1"
    with transaction.atomic():
        AlertRule.objects.filter(id=rule.id).update(enabled=enable)
        if not enable:
            _close(rule, "rule disabled")
    said = f"Rule “{rule.name}” {'enabled' if enable else 'disabled'}."
    _audit(request, "alert-rule-enable" if enable else "alert-rule-disable", Outcome(True, said),
           {"rule": rule.id, "name": rule.name})
    messages.success(request, said)
    return _back()


@administer("alert-rule-delete")
@require_POST
def rule_delete(request: HttpRequest, rule_id: int) -> HttpResponse:
    rule = _rule(rule_id)
    described = {name: getattr(rule, name) for name in RuleForm.Meta.fields}
    with transaction.atomic():
        _close(rule, "rule deleted")
        rule.delete()
    said = f"Rule “{described['name']}” deleted."
    _audit(request, "alert-rule-delete", Outcome(True, said), {"rule": rule_id, **described})
    messages.success(request, said)
    return _back()


@administer("alert-test")
@require_POST
def rule_test(request: HttpRequest, rule_id: int) -> HttpResponse:
    """Sends a test notification now (waits up to ALERT_TIMEOUT) and says what came back."""
    rule = _rule(rule_id)
    error = notify.send_test(rule, request.build_absolute_uri(reverse("streams_admin:alerts")))
    host = urlsplit(rule.webhook_url).hostname
    outcome = Outcome(not error, f"Test notification to {host}: "
                                 + (f"failed — {error}" if error else "accepted."))
    _audit(request, "alert-test", outcome,
           {"rule": rule.id, "name": rule.name, "url": rule.webhook_url})
    (messages.success if outcome.ok else messages.error)(request, outcome.message)
    return _back()
