"""Named Redis targets: the dashboard serves several servers, each request or socket one.

STREAMS_ADMIN_TARGETS names a TOML file with a [targets.NAME] table per target (README
"Configuration"); without it REDIS_URL alone is one target, "default". The target being
served is a context variable: set by TargetMiddleware from the URL (/t/NAME/...) and by
`socket` from a websocket's route, read by conf.redis_url(), conf.get("KEY_PATTERN"),
permissions and the audit log. Secrets never sit in the file: it names the environment
variables holding them, read once when the file is.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import re
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.urls import get_script_prefix, set_script_prefix

DEFAULT = "default"  # the target REDIS_URL makes when there is no file
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}\Z")  # a URL segment as it is
FIELDS = {"url", "url_env", "key_pattern", "read_only", "username", "username_env",
          "password_env", "ca", "cert", "key", "verify", "view", "operate", "administer"}
LEVELS = ("view", "operate", "administer")


@dataclass(frozen=True)
class Target:
    name: str
    url: str = field(repr=False)  # may hold a password
    key_pattern: str | None = None  # None: STREAMS_ADMIN's KEY_PATTERN
    read_only: bool = False
    # redis-py connection keyword arguments, secrets read from the environment already
    options: tuple[tuple[str, Any], ...] = field(default=(), repr=False)
    # Django groups allowed at each level; None: no restriction beyond the roles' permissions
    view: frozenset[str] | None = None
    operate: frozenset[str] | None = None
    administer: frozenset[str] | None = None

    def groups(self, level: str) -> frozenset[str] | None:
        """Who may act at level: its own groups and those of the levels above it."""
        if getattr(self, level) is None:
            return None
        above = LEVELS[LEVELS.index(level):]
        return frozenset().union(*(getattr(self, name) or () for name in above))


class TargetError(ImproperlyConfigured):
    def __init__(self, path: str, target: str | None, field_name: str | None, why: str) -> None:
        where = ", ".join(part for part in (path, target and f"target {target!r}",
                                             field_name and f"field {field_name!r}") if part)
        super().__init__(f"STREAMS_ADMIN_TARGETS: {where}: {why}")


def load(path: str) -> dict[str, Target]:
    """The targets of a TOML file, the default first (`default = "NAME"`, else the first)."""
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TargetError(path, None, None, str(exc)) from exc
    tables = data.get("targets")
    if not isinstance(tables, dict) or not tables:
        raise TargetError(path, None, "targets", "no [targets.NAME] table")
    found = {name: _target(path, name, table) for name, table in tables.items()}
    first = data.get("default", next(iter(found)))
    if first not in found:
        raise TargetError(path, None, "default", f"no target named {first!r}")
    return {first: found[first]} | found


def _target(path: str, name: str, table: Any) -> Target:
    def fail(field_name: str | None, why: str) -> TargetError:
        return TargetError(path, name, field_name, why)

    if not NAME.match(name):
        raise fail(None, "a name is letters, digits, '-' and '_' (it is part of URLs)")
    if not isinstance(table, dict):
        raise fail(None, "not a table")
    if unknown := sorted(set(table) - FIELDS):
        raise fail(unknown[0], f"unknown field (known: {', '.join(sorted(FIELDS))})")
    url = _text(table, "url", fail) or _secret(table, "url_env", fail)
    if not url:
        raise fail("url", "missing (url, or url_env naming the variable that holds it)")
    if not url.startswith(("redis://", "rediss://", "unix://", "redis+sentinel://")):
        raise fail("url", "not a redis://, rediss://, unix:// or redis+sentinel:// URL")
    read_only = table.get("read_only", False)
    if not isinstance(read_only, bool):
        raise fail("read_only", "true or false")
    return Target(name, url, _text(table, "key_pattern", fail), read_only,
                  _options(table, fail), *(_groups(table, level, fail) for level in LEVELS))


def _text(table: dict, name: str, fail: Callable[..., TargetError]) -> str | None:
    value = table.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise fail(name, "a non-empty string")
    return value


def _secret(table: dict, name: str, fail: Callable[..., TargetError]) -> str | None:
    variable = _text(table, name, fail)
    if variable is None:
        return None
    if variable not in os.environ:
        raise fail(name, f"the environment variable {variable} is not set")
    return os.environ[variable]


def _options(table: dict, fail: Callable[..., TargetError]) -> tuple[tuple[str, Any], ...]:
    options: dict[str, Any] = {
        "username": _text(table, "username", fail) or _secret(table, "username_env", fail),
        "password": _secret(table, "password_env", fail),
        "ssl_ca_certs": _text(table, "ca", fail), "ssl_certfile": _text(table, "cert", fail),
        "ssl_keyfile": _text(table, "key", fail)}
    for name, option in (("ca", "ssl_ca_certs"), ("cert", "ssl_certfile"), ("key", "ssl_keyfile")):
        file = options[option]
        if file is not None and not os.path.isfile(file):
            raise fail(name, f"no file at {file}")
    verify = table.get("verify", True)
    if not isinstance(verify, bool):
        raise fail("verify", "true or false")
    if not verify:  # as REDIS_TLS_VERIFY=0 (bus/connect.py)
        options |= {"ssl_cert_reqs": "none", "ssl_check_hostname": False}
    return tuple((k, v) for k, v in options.items() if v is not None)


def _groups(table: dict, level: str, fail: Callable[..., TargetError]) -> frozenset[str] | None:
    groups = table.get(level)
    if groups is None:
        return None
    if not isinstance(groups, list) or not all(isinstance(g, str) and g for g in groups):
        raise fail(level, "a list of Django group names")
    return frozenset(groups)


@functools.cache
def _configured(path: str, redis_url: str, options: tuple[tuple[str, Any], ...]
                ) -> dict[str, Target]:
    return load(path) if path else {DEFAULT: Target(DEFAULT, redis_url, options=options)}


def configured() -> dict[str, Target]:
    """Every target by name, the default first (read once; a settings change reads again).
    Without a file: REDIS_URL with REDIS_OPTIONS (credentials and TLS files from the
    environment, README "Connecting to Redis")."""
    options = tuple(sorted(getattr(settings, "REDIS_OPTIONS", {}).items()))
    return _configured(getattr(settings, "STREAMS_ADMIN_TARGETS", "") or "", settings.REDIS_URL,
                       options)


@receiver(setting_changed)
def _reset(**kwargs: object) -> None:
    if kwargs["setting"] in {"REDIS_URL", "REDIS_OPTIONS", "STREAMS_ADMIN_TARGETS"}:
        _configured.cache_clear()


_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("target", default=None)


def current() -> Target:
    """The target being served (the default one outside any request or socket)."""
    targets = configured()
    return targets.get(_current.get() or "") or next(iter(targets.values()))


def current_name() -> str:
    """The audit log's default: the target of the request that writes the row."""
    return current().name


def find(name: str) -> Target | None:
    return configured().get(name)


@contextlib.contextmanager
def serving(target: Target, root: str | None = None) -> Iterator[None]:
    """Serve target here; with root (the script prefix before /t/NAME/), every URL reversed
    meanwhile carries /t/NAME/ too."""
    token = _current.set(target.name)
    before = get_script_prefix()
    if root is not None:
        set_script_prefix(f"{root}t/{target.name}/")
    try:
        yield
    finally:
        set_script_prefix(before)
        _current.reset(token)


def bound[T](work: Callable[..., T]) -> Callable[..., T]:
    """work, run as the current target whatever context calls it later (a reader's
    reconnection, a thread)."""
    name = _current.get()

    def call(*args: Any, **kwargs: Any) -> T:
        token = _current.set(name)
        try:
            return work(*args, **kwargs)
        finally:
            _current.reset(token)

    return call


def socket(app: Any) -> Any:
    """A websocket application served as the target its route names (none: the default);
    an unknown target is refused (4404)."""

    async def serve(scope: dict[str, Any], receive: Any, send: Any) -> Any:
        name = scope.get("url_route", {}).get("kwargs", {}).get("target")
        target = find(name) if name is not None else current()
        if target is None:
            await receive()  # websocket.connect
            return await send({"type": "websocket.close", "code": 4404})
        with serving(target, get_script_prefix() if name is not None else None):
            return await app(scope, receive, send)

    return serve
