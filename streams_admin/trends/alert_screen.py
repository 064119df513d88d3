"""READ: what the Alerts screen and the overview's banner show, from the database only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from django.db.models import Count, Q

from streams_admin import conf, targets
from streams_admin.trends import sampler
from streams_admin.trends.alert_models import (
    FAILED,
    FIRING,
    PENDING,
    QUEUED,
    AlertEvent,
    AlertRule,
    AlertState,
    Notification,
)

SHOWN_STATES = 200
SHOWN_EVENTS = 50
SHOWN_NOTIFICATIONS = 30
BANNER_NAMES = 3


def _time(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


@dataclass(frozen=True)
class StateRow:
    rule: str
    metric: str
    state: str
    stream: bytes
    group: bytes
    value: float | None
    since: datetime | None
    fired_at: datetime | None


@dataclass(frozen=True)
class EventRow:
    rule: str
    kind: str
    stream: bytes
    group: bytes
    value: float | None
    at: datetime | None
    note: str


@dataclass(frozen=True)
class DeliveryRow:
    rule: str
    event: str
    host: str
    status: str
    attempts: int
    created_at: datetime | None
    next_try: datetime | None
    last_error: str


def states(limit: int = SHOWN_STATES, only: str | None = None) -> list[StateRow]:
    """Firing first ("firing" < "pending"), then pending; the longest held first."""
    rows = AlertState.objects.filter(rule__target=targets.current_name())
    if only:
        rows = rows.filter(state=only)
    rows = rows.select_related("rule").order_by("state", "since", "id")[:limit]
    return [StateRow(s.rule.name, s.rule.metric, s.state, bytes(s.stream), bytes(s.group),
                     s.value, _time(s.since), _time(s.fired_at)) for s in rows]


def rules() -> list[dict[str, Any]]:
    found = AlertRule.objects.filter(target=targets.current_name()).annotate(
        firing=Count("states", filter=Q(states__state=FIRING)),
        pending=Count("states", filter=Q(states__state=PENDING)))
    return [{"rule": r, "firing": r.firing, "pending": r.pending,
             "host": urlsplit(r.webhook_url).hostname or ""} for r in found]


def events() -> list[EventRow]:
    rows = AlertEvent.objects.filter(target=targets.current_name()).order_by("-at", "-id")
    return [EventRow(e.rule_name, e.kind, bytes(e.stream), bytes(e.group), e.value, _time(e.at),
                     e.note) for e in rows[:SHOWN_EVENTS]]


def deliveries() -> list[DeliveryRow]:
    rows = Notification.objects.filter(target=targets.current_name()).order_by("-id")
    return [DeliveryRow(n.rule_name, n.event, urlsplit(n.url).hostname or "", n.status,
                        n.attempts, _time(n.created_at),
                        _time(n.next_try) if n.status == QUEUED else None, n.last_error)
            for n in rows[:SHOWN_NOTIFICATIONS]]


def sampling() -> dict[str, Any]:
    """Is a sampler running, and is this target being sampled (else its alerts are held)."""
    state = sampler.state()
    mine = next((t for t in state.targets if t.target == targets.current_name()), None)
    return {"running": state.running, "status": mine,
            "failing_since": _time(mine.last_error_at) if mine and mine.failing else None}


def context() -> dict[str, Any]:
    name = targets.current_name()
    held = AlertState.objects.filter(rule__target=name)
    queued = Notification.objects.filter(target=name)
    return {"rules": rules(), "states": states(), "events": events(),
            "deliveries": deliveries(), "sampling": sampling(),
            "firing_count": held.filter(state=FIRING).count(),
            "pending_count": held.filter(state=PENDING).count(),
            "queued_count": queued.filter(status=QUEUED).count(),
            "failed_count": queued.filter(status=FAILED).count(),
            "retry": {name: int(conf.get(f"ALERT_{name.upper()}"))
                      for name in ("retry_min", "retry_max", "give_up", "timeout")}}


def banner() -> dict[str, Any]:
    """For the overview: how many alerts fire on this target, and a few of them."""
    held = AlertState.objects.filter(rule__target=targets.current_name(), state=FIRING)
    count = held.count()
    return {"count": count, "firing": states(BANNER_NAMES, FIRING) if count else []}
