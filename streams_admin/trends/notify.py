"""Alert notifications: webhook POSTs (generic JSON or Slack-compatible) from Notification rows.

The evaluator only writes rows (in the sampler's transaction); a notifier thread of the
sampler process sends them, so a receiver that hangs (ALERT_TIMEOUT, 5 s) or is down never
delays sampling. A failed POST is tried again with exponential backoff (ALERT_RETRY_MIN 10 s,
doubling, up to ALERT_RETRY_MAX 10 min) until ALERT_GIVE_UP (6 h) after it was queued; the
rows outlive a restart. One URL gets its notifications in order: a resolve never overtakes the
firing it ends. A row is claimed before it is sent, so two notifiers never send it twice.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from django.db import close_old_connections
from django.db.models import Min
from django.urls import reverse

from streams_admin import conf, names, targets
from streams_admin.trends.alert_models import (
    FAILED,
    QUEUED,
    SENT,
    SLACK,
    AlertEvent,
    AlertRule,
    AlertState,
    Notification,
)

log = logging.getLogger(__name__)
_wake = threading.Event()
POLL = 1.0  # seconds between looks for rows due, when not woken
PURGE_EVERY = 300.0
HISTORY_KEEP = 30 * 86400  # alert events and finished notifications kept this long
PURGE_BATCH = 2000


def check_url(url: str) -> str:
    """Why url is no webhook URL, or "" (http or https, with a host)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises on a port that is not a number
    except ValueError as exc:
        return f"Not a URL: {exc}."
    if parts.scheme not in ("http", "https"):
        return "Only http:// and https:// webhook URLs are allowed."
    if not parts.hostname:
        return "The URL has no host."
    if any(c.isspace() or ord(c) < 32 for c in url):
        return "The URL may not contain spaces or control characters."
    return ""


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat()


def page_url(target: str, stream: bytes, group: bytes) -> str:
    """The group's (or stream's) page, absolute when PUBLIC_URL is set."""
    with targets.serving(targets.configured()[target], "/"):
        path = (reverse("streams_admin:group", kwargs={"key": stream, "group": group}) if group
                else reverse("streams_admin:stream", kwargs={"key": stream}))
    return conf.get("PUBLIC_URL").rstrip("/") + path


def payload(rule: AlertRule, state: str, stream: bytes, group: bytes, value: float | None,
            times: dict[str, float | None], url: str) -> dict[str, Any]:
    """The generic JSON body (README "Alerts" shows one)."""
    body: dict[str, Any] = {
        "rule": rule.name, "rule_id": rule.id, "state": state, "target": rule.target,
        "stream": names.show(stream), "group": names.show(group) if group else None,
        "metric": rule.metric, "comparison": rule.comparison, "value": value,
        "threshold": rule.threshold, "for_seconds": rule.for_seconds, "url": url,
    }
    body |= {name: _iso(at) for name, at in times.items()}
    body["text"] = summary(body)
    return body


def summary(body: dict[str, Any]) -> str:
    where = body["stream"] + (f" › {body['group']}" if body["group"] is not None else "")
    value = "unknown" if body["value"] is None else f"{body['value']:g}"
    return (f"[{body['state'].upper()}] {body['rule']}: {body['metric']} of {where} on "
            f"{body['target']} is {value} (rule: {body['comparison']} {body['threshold']:g})")


def slack(body: dict[str, Any]) -> dict[str, str]:
    """Slack's incoming-webhook shape: one text; &, <, > escaped as Slack asks."""
    text = body["text"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if body["url"].startswith(("http://", "https://")):
        text += f" <{body['url']}|open>"
    return {"text": text}


def encode(kind: str, body: dict[str, Any]) -> str:
    return json.dumps(slack(body) if kind == SLACK else body, ensure_ascii=False)


def queue(rule: AlertRule, event: AlertEvent, state: AlertState) -> Notification:
    """A row for the notifier, not saved (the evaluator saves them in bulk, inside the
    sampler's transaction)."""
    stream, group = bytes(state.stream), bytes(state.group)
    times = {"since": state.since, "fired_at": state.fired_at,
             "resolved_at": event.at if event.kind != "firing" else None, "at": event.at}
    body = payload(rule, event.kind, stream, group, event.value, times,
                   page_url(rule.target, stream, group))
    now = time.time()
    return Notification(
        rule=rule, rule_name=rule.name, target=rule.target, event=event.kind,
        url=rule.webhook_url, body=encode(rule.webhook_kind, body), created_at=now,
        next_try=now)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is an answer to report, not a place to POST again


_opener = urllib.request.build_opener(_NoRedirects)


def post(url: str, body: str, timeout: float | None = None) -> str:
    """POSTs body; "" when the receiver answered 2xx, else why not (for a person)."""
    if why := check_url(url):
        return why
    request = urllib.request.Request(url, data=body.encode("utf-8"), method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "streams-admin-alerts"})
    try:
        with _opener.open(request, timeout=timeout or conf.get("ALERT_TIMEOUT")) as response:
            response.read(65536)
            return ""
    except urllib.error.HTTPError as exc:
        detail = exc.read(300).decode("utf-8", "replace").strip()
        return f"HTTP {exc.code} {exc.reason}" + (f": {detail}" if detail else "")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{type(reason).__name__}: {reason}"[:500] if str(reason) else type(reason).__name__


def backoff(attempts: int) -> float:
    """Seconds before the next try after `attempts` failed ones: doubling, capped."""
    low, high = conf.get("ALERT_RETRY_MIN"), conf.get("ALERT_RETRY_MAX")
    return float(min(high, low * 2 ** min(attempts - 1, 30)))


def due(now: float) -> list[Notification]:
    """The oldest queued row of each URL, when it is due and nobody is sending it."""
    firsts = (Notification.objects.filter(status=QUEUED).order_by().values("url")
              .annotate(first=Min("id")).values_list("first", flat=True))
    return list(Notification.objects.filter(id__in=list(firsts), next_try__lte=now,
                                            claimed_until__lt=now).order_by("id"))


def deliver(now: float | None = None) -> int:
    """One try of every row due; returns how many were tried."""
    tried = 0
    for row in due(time.time() if now is None else now):
        if _claim(row):
            _attempt(row)
            tried += 1
    return tried


def _claim(row: Notification) -> bool:
    now = time.time()
    until = now + conf.get("ALERT_TIMEOUT") + 30
    return bool(Notification.objects.filter(id=row.id, status=QUEUED, claimed_until__lt=now)
                .update(claimed_until=until))


def _attempt(row: Notification) -> None:
    error = post(row.url, row.body)
    now = time.time()
    fields: dict[str, Any] = {"attempts": row.attempts + 1, "last_try": now,
                              "claimed_until": 0.0, "last_error": error[:500]}
    if not error:
        fields |= {"status": SENT, "sent_at": now}
    elif now - row.created_at >= conf.get("ALERT_GIVE_UP"):
        fields["status"] = FAILED
        log.warning("alerts: gave up on %s to %s after %d tries: %s", row.event, row.url,
                    row.attempts + 1, error)
    else:
        fields["next_try"] = now + backoff(row.attempts + 1)
        log.info("alerts: %s to %s failed (%s); again in %.1f s", row.event, row.url, error,
                 fields["next_try"] - now)
    Notification.objects.filter(id=row.id).update(**fields)


def purge(now: float) -> int:
    """Deletes (a bounded batch of each) events and finished notifications past HISTORY_KEEP."""
    end = now - HISTORY_KEEP
    deleted = 0
    for query in (AlertEvent.objects.filter(at__lt=end),
                  Notification.objects.filter(status__in=(SENT, FAILED), created_at__lt=end)):
        ids = list(query.order_by().values_list("id", flat=True)[:PURGE_BATCH])
        deleted += query.model.objects.filter(id__in=ids).delete()[0] if ids else 0
    return deleted


def wake() -> None:
    """A row was queued: the notifier looks now rather than at its next poll."""
    _wake.set()


def run(stop: threading.Event, active: Callable[[], bool] = lambda: True) -> None:
    """The notifier's loop, until stop: sends what is due while active() (the sampler holds
    its lease); any failure (the database away) is logged and tried again, never the end."""
    purged = 0.0
    while not stop.is_set():
        tried = 0
        try:
            close_old_connections()
            if active():
                tried = deliver()
                if time.time() - purged > PURGE_EVERY:
                    purge(time.time())
                    purged = time.time()
        except Exception:
            log.exception("alerts: the notifier failed; again in %.0f s", POLL)
        if not tried:
            _wake.wait(POLL)
            _wake.clear()


def start(stop: threading.Event, active: Callable[[], bool] = lambda: True) -> threading.Thread:
    thread = threading.Thread(target=run, args=(stop, active), name="alert-notifier",
                              daemon=True)
    thread.start()
    return thread


def send_test(rule: AlertRule, url: str) -> str:
    """A test notification to the rule's webhook, now; "" when it was accepted, else why."""
    now = time.time()
    body = payload(rule, "test", b"(test)", b"", None,
                   {"since": now, "fired_at": None, "resolved_at": None, "at": now}, url)
    return post(rule.webhook_url, encode(rule.webhook_kind, body))

