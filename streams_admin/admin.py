"""The audit log in the Django admin: readable, never editable."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from streams_admin.models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ("at", "username", "address", "target", "action", "key_text", "group",
                    "consumer", "id_count", "ok", "result")
    list_filter = ("target", "action", "ok", "username")
    search_fields = ("key_text", "group", "consumer", "result")
    exclude = ("key",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
