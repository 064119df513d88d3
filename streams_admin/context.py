"""What the signed-in user may do, for templates: buttons one may not use are not shown."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from streams_admin import permissions as rule
from streams_admin import targets as targets_model
from streams_admin.acl import Refusals
from streams_admin.permissions import may_administer, may_operate


def permissions(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    can_operate = may_operate(user)
    match = getattr(request, "resolver_match", None)
    key = match.kwargs.get("key") if match else None
    return {
        "read_only": rule.read_only(),
        "can_operate": can_operate,
        "can_administer": may_administer(user),
        # Why the Redis ACL forbids each action here (asked only if a template looks).
        "acl": Refusals(key if isinstance(key, bytes) else None) if can_operate else {},
    }


def targets(request: HttpRequest) -> dict[str, Any]:
    """The target served, and the switcher's others: (name, URL of its overview) each, those
    the user may view."""
    user = getattr(request, "user", None)
    root = getattr(request, "script_root", "/")
    return {
        "target": targets_model.current(),
        "targets": [(t.name, f"{root}t/{t.name}/") for t in rule.viewable(user)],
        "target_prefix": f"{root}t/{targets_model.current_name()}/",
    }
