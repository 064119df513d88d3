"""What the signed-in user may do, for templates: buttons one may not use are not shown."""

from __future__ import annotations

from django.http import HttpRequest

from streams_admin import conf
from streams_admin.acl import Refusals
from streams_admin.permissions import may_administer, may_operate


def permissions(request: HttpRequest) -> dict[str, object]:
    user = getattr(request, "user", None)
    can_operate = may_operate(user)
    match = getattr(request, "resolver_match", None)
    key = match.kwargs.get("key") if match else None
    return {
        "read_only": conf.get("READ_ONLY"),
        "can_operate": can_operate,
        "can_administer": may_administer(user),
        # Why the Redis ACL forbids each action here (asked only if a template looks).
        "acl": Refusals(key if isinstance(key, bytes) else None) if can_operate else {},
    }
