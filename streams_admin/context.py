"""What the signed-in user may do, for templates: buttons one may not use are not shown."""

from __future__ import annotations

from django.http import HttpRequest

from streams_admin import conf


def permissions(request: HttpRequest) -> dict[str, bool]:
    user = getattr(request, "user", None)
    read_only = conf.get("READ_ONLY")
    allowed = bool(user and user.is_authenticated and not read_only)
    return {
        "read_only": read_only,
        "can_operate": allowed and user.has_perm("streams_admin.operate_streams"),
        "can_administer": allowed and user.has_perm("streams_admin.administer_streams"),
    }
