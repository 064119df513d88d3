"""Alert rules, their live states, their history, and the notifications they send (README
"Alerts"). Evaluated by the sampler (alerts.py), delivered by its notifier (notify.py)."""

from __future__ import annotations

from django.db import models

GENERIC, SLACK = "generic", "slack"
PENDING, FIRING = "pending", "firing"  # AlertState.state
RESOLVED, CLEARED = "resolved", "cleared"  # AlertEvent.kind too: pending that never fired
QUEUED, SENT, FAILED = "queued", "sent", "failed"  # Notification.status


class AlertRule(models.Model):
    """A condition on one metric of the series (streams or groups) of one target whose names
    match two Redis globs, held for `for_seconds` before it fires."""

    METRICS = [
        ("lag", "lag (entries not yet delivered)"),
        ("time_lag_seconds", "time lag (seconds)"),
        ("oldest_pending_seconds", "oldest pending age (seconds)"),
        ("pending", "pending entries"),
        ("stalled_consumers", "stalled consumers"),
        ("trimmed_unread", "entries trimmed unread"),
        ("out_rate", "out-rate (entries read / s)"),
        ("stream_length", "stream length"),
        ("in_rate", "in-rate (entries added / s)"),
    ]
    COMPARISONS = [(">", ">"), (">=", "≥"), ("<", "<"), ("<=", "≤")]
    KINDS = [(GENERIC, "generic JSON"), (SLACK, "Slack-compatible")]

    name = models.CharField(max_length=100)
    target = models.CharField(max_length=63, db_index=True)  # the target it watches
    metric = models.CharField(max_length=30, choices=METRICS)
    stream_glob = models.CharField(max_length=500, default="*")
    group_glob = models.CharField(max_length=500, default="*")
    comparison = models.CharField(max_length=2, choices=COMPARISONS, default=">")
    threshold = models.FloatField()
    for_seconds = models.PositiveIntegerField(default=0)
    webhook_url = models.CharField(max_length=2000)
    webhook_kind = models.CharField(max_length=10, choices=KINDS, default=GENERIC)
    enabled = models.BooleanField(default=True)
    # As of the last evaluation, written only when they change: series matched, and those of
    # them for which the server gives no value (Redis 6.2 has no entries-read, say).
    matched = models.IntegerField(default=0)
    unavailable = models.IntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return f"{self.name}: {self.metric} {self.comparison} {self.threshold:g}"

    @property
    def per_stream(self) -> bool:
        return self.metric in ("stream_length", "in_rate")

    def condition(self) -> str:
        shown = dict(self.COMPARISONS)[self.comparison]
        held = f" for {self.for_seconds} s" if self.for_seconds else ""
        return f"{self.metric} {shown} {self.threshold:g}{held}"


class AlertState(models.Model):
    """A series (rule, stream, group) whose condition holds: pending until it has held for the
    rule's for_seconds, then firing. Deleted when it stops holding (an AlertEvent says so)."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="states")
    stream = models.BinaryField()
    group = models.BinaryField(default=b"")
    digest = models.BinaryField(max_length=32)  # SHA-256 of (target, stream, group)
    state = models.CharField(max_length=10)
    since = models.FloatField()  # epoch s: when the condition began to hold
    fired_at = models.FloatField(null=True)
    value = models.FloatField(null=True)
    value_at = models.FloatField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rule", "digest"], name="state_once")]

    def __str__(self) -> str:
        return f"{self.state} {self.rule_id} {bytes(self.stream)!r} {bytes(self.group)!r}"


class AlertEvent(models.Model):
    """A transition: pending, firing, resolved, or cleared (pending that never fired)."""

    rule = models.ForeignKey(AlertRule, null=True, on_delete=models.SET_NULL)
    rule_name = models.CharField(max_length=100)
    target = models.CharField(max_length=63, db_index=True)
    stream = models.BinaryField()
    group = models.BinaryField(default=b"")
    kind = models.CharField(max_length=10)
    at = models.FloatField(db_index=True)
    value = models.FloatField(null=True)
    note = models.CharField(max_length=200, blank=True)

    def __str__(self) -> str:
        return f"{self.kind} of {self.rule_name} at {self.at}"


class Notification(models.Model):
    """One webhook POST to make, kept until sent or given up: a sampler restart loses none.
    The URL and body are copied in, so a rule edited or deleted meanwhile changes nothing."""

    rule = models.ForeignKey(AlertRule, null=True, on_delete=models.SET_NULL)
    rule_name = models.CharField(max_length=100)
    target = models.CharField(max_length=63, db_index=True)
    event = models.CharField(max_length=10)  # firing, resolved
    url = models.CharField(max_length=2000)
    body = models.TextField()  # JSON
    status = models.CharField(max_length=10, default=QUEUED)
    attempts = models.IntegerField(default=0)
    created_at = models.FloatField()
    next_try = models.FloatField()
    claimed_until = models.FloatField(default=0.0)  # a notifier sending it now
    last_try = models.FloatField(null=True)
    last_error = models.CharField(max_length=500, blank=True)
    sent_at = models.FloatField(null=True)

    class Meta:
        indexes = [models.Index(fields=["status", "next_try"])]

    def __str__(self) -> str:
        return f"{self.event} of {self.rule_name} to {self.url}: {self.status}"
