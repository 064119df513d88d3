"""What the signed-in user may do, for templates: buttons one may not use are not shown."""

from __future__ import annotations

from django.http import HttpRequest

from streams_admin import conf
from streams_admin.permissions import may_administer, may_operate


def permissions(request: HttpRequest) -> dict[str, bool]:
    user = getattr(request, "user", None)
    return {
        "read_only": conf.get("READ_ONLY"),
        "can_operate": may_operate(user),
        "can_administer": may_administer(user),
    }
