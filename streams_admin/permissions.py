"""Who may do what: the one rule that views, templates, actions and sockets all call.

Seeing the dashboard takes an active staff account. Changing anything takes a permission too
(the roles the migrations create grant them), and a dashboard that is not read-only: read-only
mode is applied here and nowhere else. Each target (targets.py) may narrow both: the Django
groups it names for a level are the only ones allowed at that level on it (superusers always
are), and a read-only target refuses every action. Last, the Redis user's ACL must allow the
action's commands (acl.py asks Redis): such an action is shown disabled, with the reason.
"""

from __future__ import annotations

from typing import Any

from streams_admin import conf, targets

OPERATE = "streams_admin.operate_streams"  # ack, claim, requeue, dead-letter, publish, ...
ADMINISTER = "streams_admin.administer_streams"  # trim, destroy, delete, set IDs
READ_ONLY = "the dashboard is read-only"
TARGET_READ_ONLY = "this target is read-only"
NOT_ALLOWED = "you may not do this"
LEVEL = {OPERATE: "operate", ADMINISTER: "administer"}


def _in_groups(user: Any, allowed: frozenset[str] | None) -> bool:
    if allowed is None or user.is_superuser:
        return True
    if not hasattr(user, "_group_names"):  # once per request (or socket): asked on each button
        user._group_names = frozenset(user.groups.values_list("name", flat=True))
    return not allowed.isdisjoint(user._group_names)


def may_view(user: Any) -> bool:
    """Whether user may see the target being served."""
    return bool(user is not None and user.is_active and user.is_staff
                and _in_groups(user, targets.current().groups("view")))


def viewable(user: Any) -> list[targets.Target]:
    """The targets user may see (the switcher, the targets page), by the same rule."""
    found = []
    for target in targets.configured().values():
        with targets.serving(target):
            if may_view(user):
                found.append(target)
    return found


def read_only() -> str | None:
    """Why nothing may change on the target being served, or None."""
    if conf.get("READ_ONLY"):
        return READ_ONLY
    return TARGET_READ_ONLY if targets.current().read_only else None


def refusal(user: Any, permission: str) -> str | None:
    """Why `user` may not act at `permission`'s level, or None when they may."""
    if why := read_only():
        return why
    if not (may_view(user) and user.has_perm(permission)
            and _in_groups(user, targets.current().groups(LEVEL[permission]))):
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
