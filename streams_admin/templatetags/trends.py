"""What the chart partials (templates/streams_admin/_charts.html) need besides the page's
context: the range asked for, and the sampler's state (a chart with no history says why)."""

from __future__ import annotations

from typing import Any

from django import template

from streams_admin.trends import history
from streams_admin.trends.views import sampler_note

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
    return sampler_note()
