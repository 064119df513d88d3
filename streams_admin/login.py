"""The login page's side of throttling (django-axes): where a try comes from, and the page a
locked-out try gets."""

from __future__ import annotations

import math
from typing import Any

from axes.helpers import get_cool_off
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def client_address(request: HttpRequest) -> str | None:
    """Behind a proxy we trust (TRUST_PROXY_FORWARDED_FOR), the address it appended to
    X-Forwarded-For: the right-most one, since the client can write anything to the left of
    it. Otherwise the socket's address."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if settings.TRUST_PROXY_FORWARDED_FOR and forwarded.strip():
        return forwarded.split(",")[-1].strip()
    return request.META.get("REMOTE_ADDR")


def locked_out(request: HttpRequest, *args: Any) -> HttpResponse:
    """A page that says what happened and how long to wait, not a bare 403. Each try while
    locked out starts the cool-off again (axes' default), so the full wait is the true one."""
    cool_off = get_cool_off(request)
    minutes = math.ceil(cool_off.total_seconds() / 60) if cool_off else None
    return render(request, "registration/locked_out.html",
                  {"minutes": minutes, "limit": settings.AXES_FAILURE_LIMIT}, status=429)
