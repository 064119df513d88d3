"""What the chart partials (templates/streams_admin/_charts.html) need besides the page's
context: the range asked for, the sampler's state (a chart with no history says why), and the
chart's data for that range (drawn without a second request)."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from streams_admin.trends import history, views

register = template.Library()


@register.simple_tag(takes_context=True)
def chart_range(context: template.Context) -> str:
    """?range= when it is one of history.RANGES, else 1 h (the page still renders; the JSON
    endpoint is the one that answers 400 to a bad range)."""
    chosen = context["request"].GET.get("range", "1h")
    return chosen if chosen in history.RANGES else "1h"


@register.simple_tag
def chart_ranges() -> list[str]:
    return list(history.RANGES)


@register.simple_tag
def sampler_state() -> dict[str, Any]:
    return views.sampler_note()


@register.simple_tag(takes_context=True)
def chart_data(context: template.Context, key: bytes, group: bytes | None = None) -> SafeString:
    """<script type="application/json" data-chart-data="RANGE">: the JSON its history endpoint
    would send for the page's range (escaped as json_script escapes: views.embedded)."""
    chosen = chart_range(context)
    return format_html('<script type="application/json" data-chart-data="{}">{}</script>',
                       chosen, mark_safe(views.embedded(chosen, key, group)))  # noqa: S308
