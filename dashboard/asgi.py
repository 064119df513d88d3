"""ASGI entry point: HTTP through Django, websockets through Channels (staff sessions only)."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
django_asgi_app = get_asgi_application()

# These need Django set up first.
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import WebsocketDenier  # noqa: E402
from django.conf import settings  # noqa: E402
from django.http.request import split_domain_port, validate_host  # noqa: E402
from django.utils.http import is_same_domain  # noqa: E402

from streams_admin.routing import websocket_urlpatterns  # noqa: E402

DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_tuple(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin like http://127.0.0.1:8000, the port made explicit."""
    try:
        parts = urlsplit(url.strip().lower())
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:  # a port that is not a number, or out of range
        return None
    if not parts.hostname or port is None or parts.path not in ("", "/"):
        return None
    return parts.scheme, parts.hostname, port


def _secure(scope: dict[str, Any], headers: dict[bytes, bytes]) -> bool:
    """Was the page served over TLS? As Django decides it (SECURE_PROXY_SSL_HEADER too)."""
    if scope.get("scheme") in ("wss", "https"):
        return True
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if not proxy:
        return False
    header = proxy[0].removeprefix("HTTP_").replace("_", "-").lower().encode("latin-1")
    return headers.get(header, b"").split(b",")[0].strip().decode("latin-1") == proxy[1]


def trusted(origin: tuple[str, str, int]) -> bool:
    """In CSRF_TRUSTED_ORIGINS, exactly or (https://*.example.com) as a subdomain."""
    scheme, host, port = origin
    for allowed in settings.CSRF_TRUSTED_ORIGINS:
        if "*" not in allowed:
            if origin_tuple(allowed) == origin:
                return True
            continue
        pattern = urlsplit(allowed.lower())
        netloc = host if port == DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
        if pattern.scheme == scheme and is_same_domain(netloc, pattern.netloc.lstrip("*")):
            return True
    return False


def same_origin(scope: dict[str, Any]) -> bool:
    """The Origin is the page's own (scheme, host and port of the Host the socket came to,
    a host in ALLOWED_HOSTS) or one of CSRF_TRUSTED_ORIGINS, exactly: Django's CSRF rule.
    Channels' AllowedHostsOriginValidator compares the host alone, so any port passed."""
    headers = dict(scope.get("headers", []))
    origin = origin_tuple(headers.get(b"origin", b"").decode("latin-1"))
    if origin is None:
        return False
    if trusted(origin):
        return True
    host = headers.get(b"host", b"").decode("latin-1")
    allowed = settings.ALLOWED_HOSTS or ([".localhost", "127.0.0.1", "[::1]"]
                                         if settings.DEBUG else [])
    if not validate_host(split_domain_port(host)[0], allowed):
        return False
    scheme = "https" if _secure(scope, headers) else "http"
    return origin == origin_tuple(f"{scheme}://{host}")


class SameOriginValidator:
    """Refuses a websocket whose Origin is not exactly the dashboard's own."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if same_origin(scope):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)  # type: ignore[arg-type]  # the same scope


application = ProtocolTypeRouter({
    "http": django_asgi_app,
    "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
})
