"""{% firing_alerts as firing %}: the overview's alert banner reads the database itself, so
the overview's view needs no change to show it."""

from __future__ import annotations

from typing import Any

from django import template

from streams_admin.trends import alert_screen

register = template.Library()


@register.simple_tag
def firing_alerts() -> dict[str, Any]:
    return alert_screen.banner()
