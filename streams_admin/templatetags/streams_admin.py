"""Filters that turn the read model's bytes and numbers into text; autoescaping still applies."""

from __future__ import annotations

from datetime import UTC, datetime

from django import template
from django.http import QueryDict
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from streams_admin import html, names
from streams_admin.values import ID_RE, Entry, Value, human_duration

register = template.Library()


@register.filter
def token(name: bytes) -> str:
    """A key, group or consumer name as it goes into a URL or a form value."""
    return names.to_token(name)


NAME_LIMIT = 1000  # bytes of a name a page shows: a name may be as huge as a value


@register.filter
def show(name: bytes | None) -> str:
    if name is None:
        return ""
    return clip(Value(name), NAME_LIMIT)


@register.filter
def duration(ms: int | None) -> str:
    return human_duration(ms)


@register.filter
def seconds(value: int) -> str:
    return duration(value * 1000)


@register.filter
def ago(moment: datetime | None) -> str:
    if moment is None:
        return ""
    ms = int((datetime.now(UTC) - moment).total_seconds() * 1000)
    return f"in {duration(-ms)}" if ms < 0 else f"{duration(ms)} ago"


@register.filter
def utc(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if moment else "n/a"


@register.simple_tag(takes_context=True)
def query(context: template.Context, **changes: object) -> str:
    """The current query string with some parameters changed (None or "" removes one)."""
    params: QueryDict = context["request"].GET.copy()
    for name, value in changes.items():
        params.pop(name, None)
        if value not in (None, ""):
            params[name] = str(value)
    return "?" + params.urlencode() if params else "?"


# Entries are written by streams_admin.html (shared with the live tail, which needs the speed);
# it escapes everything that comes from Redis, so marking its output safe is sound
# (tests/test_values.py feeds it hostile bytes in every field).


@register.simple_tag
def entry_row(key: bytes, entry: Entry, limit: int, select: bool = False) -> SafeString:
    return mark_safe(html.entry_row(key, entry, int(limit), select=select))  # noqa: S308


@register.simple_tag
def entry_value(v: Value, position: int, url: str, full: bool) -> SafeString:
    """A value on the entry page: a cut one links to ?full=1 or to its download."""
    budget = html.Budget.entry_page(full)
    more = html.entry_link(url, full, 0)(int(position), v)
    return mark_safe(html.value(v, budget.value, more))  # noqa: S308


@register.simple_tag
def entry_fields(entry: Entry, url: str, full: bool) -> SafeString:
    return mark_safe(html.entry_fields(entry, url, full))  # noqa: S308


@register.filter
def as_entry_id(v: Value | None) -> str:
    """The value as an entry ID to link to, or "" if it is none (any bytes may be there)."""
    text = v.preview(45) if v is not None else ""
    return text if ID_RE.match(text) else ""


@register.filter
def clip(v: Value | None, limit: int = 200) -> str:
    """A value's first `limit` bytes as text (autoescaped), "…" if there is more."""
    if v is None:
        return ""
    return v.preview(int(limit)) + ("…" if v.is_long(int(limit)) else "")


@register.simple_tag(takes_context=True)
def refused(context: template.Context, action: str) -> str:
    """` disabled title="why"` on an action's button or link when the Redis ACL forbids it."""
    why = (context.get("acl") or {}).get(action, "")
    return format_html(' disabled aria-disabled="true" title="{}"', why) if why else ""


@register.inclusion_tag("streams_admin/_row_health.html", takes_context=True)
def row_health(context: template.Context, key: bytes) -> dict:
    """An overview row's trend and stalled consumers (trends/health.py for_overview)."""
    return {"health": (context.get("row_health") or {}).get(key)}
