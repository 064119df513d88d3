"""Who may do what: the one rule that views, templates, actions and sockets all call.

Seeing the dashboard takes an active staff account. Changing anything takes a permission too
(the roles the migrations create grant them), and a dashboard that is not read-only: read-only
mode is applied here and nowhere else. Last, the Redis user's ACL must allow the action's
commands (acl.py asks Redis): such an action is shown disabled, with the reason.
"""

from __future__ import annotations

from typing import Any

from streams_admin import conf

OPERATE = "streams_admin.operate_streams"  # ack, claim, requeue, dead-letter, publish, ...
ADMINISTER = "streams_admin.administer_streams"  # trim, destroy, delete, set IDs
READ_ONLY = "the dashboard is read-only"
NOT_ALLOWED = "you may not do this"


def may_view(user: Any) -> bool:
    return bool(user is not None and user.is_active and user.is_staff)


def refusal(user: Any, permission: str) -> str | None:
    """Why `user` may not act at `permission`'s level, or None when they may."""
    if conf.get("READ_ONLY"):
        return READ_ONLY
    if not (may_view(user) and user.has_perm(permission)):
        return NOT_ALLOWED
    return None


def may(user: Any, permission: str) -> bool:
    return refusal(user, permission) is None


def may_operate(user: Any) -> bool:
    return may(user, OPERATE)


def may_administer(user: Any) -> bool:
    return may(user, ADMINISTER)


def redis_refusal(action: str, key: bytes | None) -> str | None:
    """Why the Redis user's ACL forbids action on key, or None when it does not (or when
    Redis cannot say beforehand: then its NOPERM answer is shown, and learned)."""
    from streams_admin import acl  # reads Redis: loaded when first asked

    return acl.refusal(action, key) or None
