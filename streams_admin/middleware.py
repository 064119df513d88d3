"""Redis down or slow is a page with a banner and a retry, never a stack trace or a hang."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import redis
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import get_script_prefix

from streams_admin import targets
from streams_admin.redis import UNAVAILABLE

log = logging.getLogger(__name__)

TARGET_PATH = re.compile(r"/t/(?P<name>[^/]+)(?P<rest>/.*)?\Z", re.DOTALL)


class TargetMiddleware:
    """/t/NAME/... serves target NAME: the rest of the path is resolved as usual, and every
    URL reversed meanwhile carries /t/NAME/ (it is the script prefix). Any other path serves
    the default target, so the URLs of a one-target dashboard stay as they were."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.script_root = root = get_script_prefix()  # type: ignore[attr-defined]
        match = TARGET_PATH.match(request.path_info)
        if match is None:
            return self.get_response(request)
        target = targets.find(match["name"])
        if target is None:
            raise Http404(f"No target named {match['name']}.")
        if match["rest"] is None:
            return HttpResponseRedirect(request.path + "/")
        request.path_info = match["rest"]
        with targets.serving(target, root):
            return self.get_response(request)


def headline(exception: Exception) -> str:
    """What the banner says first: a refused TLS certificate or login is not an outage."""
    text = str(exception)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "Redis's TLS certificate is not trusted (REDIS_TLS_CA names the CA to trust)."
    if isinstance(exception, redis.AuthenticationError) or "WRONGPASS" in text:
        return "Redis refused the username or password."
    return "Redis is not answering."


class RedisUnavailableMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, UNAVAILABLE):  # a cluster failing over too
            return None
        log.warning("Redis unavailable for %s: %s", request.path, exception)
        context = {"error": str(exception), "headline": headline(exception),
                   "acl": {}}  # not asked: Redis is down
        response = render(request, "streams_admin/redis_down.html", context, status=503)
        response["Retry-After"] = "5"
        return response
