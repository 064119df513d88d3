"""The audit log: every operator action, successful or not. Redis data itself is not copied."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from streams_admin import targets


class AuditEntry(models.Model):
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    username = models.CharField(max_length=150)  # kept when the user is deleted
    address = models.GenericIPAddressField(null=True)
    # The Redis target acted on: the one serving the request that writes the row.
    target = models.CharField(max_length=63, default=targets.current_name, db_index=True)
    action = models.CharField(max_length=40, db_index=True)
    key = models.BinaryField()  # stream keys are bytes
    key_text = models.CharField(max_length=500, db_index=True)  # escaped, for filtering
    group = models.CharField(max_length=500, blank=True)
    consumer = models.CharField(max_length=500, blank=True)
    ids = models.JSONField(default=list)  # all of them, or a sample when many
    id_count = models.PositiveIntegerField(default=0)
    arguments = models.JSONField(default=dict)
    ok = models.BooleanField()
    result = models.TextField()

    class Meta:
        ordering = ["-at", "-id"]
        default_permissions = ("view",)
        permissions = [
            ("operate_streams", "Ack, claim, requeue, dead-letter, re-drive and publish"),
            ("administer_streams", "Trim, destroy groups, delete entries and streams, set IDs"),
        ]

    def __str__(self) -> str:
        outcome = "ok" if self.ok else "failed"
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.username} {self.action} {self.key_text} " \
            f"{outcome}"

    @property
    def key_bytes(self) -> bytes:
        return bytes(self.key)  # PostgreSQL hands back a memoryview


# The history's models live beside their code; Django finds them through this module.
from streams_admin.trends.alert_models import (  # noqa: E402,F401
    AlertEvent,
    AlertRule,
    AlertState,
    Notification,
)
from streams_admin.trends.models import (  # noqa: E402,F401
    Chunk,
    Sample,
    SamplerLease,
    SamplerStatus,
    Series,
)
