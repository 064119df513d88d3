"""Redis clients built from settings, and what the server can do.

All clients return bytes: keys, names and values in Redis may be any bytes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import redis
import redis.asyncio
from django.core.signals import setting_changed
from django.dispatch import receiver

from streams_admin import conf


def _options() -> dict[str, object]:
    return {
        "socket_timeout": conf.get("SOCKET_TIMEOUT"),
        "socket_connect_timeout": conf.get("CONNECT_TIMEOUT"),
        "health_check_interval": 30,
    }


def _raw(response: object, **options: object) -> object:
    return response


def _keep_pairs(r: redis.Redis | redis.asyncio.Redis) -> None:
    # redis-py turns entries into dicts, which drops duplicate field names; keep the pairs.
    for command in ("XRANGE", "XREVRANGE", "XREAD", "XAUTOCLAIM"):
        r.set_response_callback(command, _raw)


@functools.cache
def _client(url: str) -> redis.Redis:
    r = redis.Redis.from_url(url, **_options())
    _keep_pairs(r)
    return r


def client() -> redis.Redis:
    return _client(conf.redis_url())


def async_client(block_seconds: float = 0) -> redis.asyncio.Redis:
    """A new async client; a blocking read may wait block_seconds on top of the timeout."""
    options = _options()
    options["socket_timeout"] = conf.get("SOCKET_TIMEOUT") + block_seconds
    r = redis.asyncio.Redis.from_url(conf.redis_url(), **options)
    _keep_pairs(r)
    return r


@receiver(setting_changed)
def _reset(**kwargs: object) -> None:
    if kwargs["setting"] in {"REDIS_URL", "STREAMS_ADMIN"}:
        _client.cache_clear()


@dataclass(frozen=True)
class Server:
    """The server's flavour and version, and the stream features that follow from them."""

    flavour: str  # "Redis" or "Valkey"
    version: tuple[int, ...]  # the flavour's own version, shown to the user
    compat: tuple[int, ...]  # redis_version: Valkey 8 reports 7.2.4, the streams API it has
    used_memory_human: str
    connected_clients: int
    uptime_seconds: int

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))

    @property
    def has_lag(self) -> bool:
        """XINFO GROUPS reports entries-read and lag (Redis 7.0)."""
        return self.compat >= (7, 0)

    @property
    def has_inactive(self) -> bool:
        """XINFO CONSUMERS reports inactive (Redis 7.2)."""
        return self.compat >= (7, 2)

    @property
    def has_stream_counters(self) -> bool:
        """XINFO STREAM reports entries-added, max-deleted-entry-id, recorded-first-entry-id."""
        return self.compat >= (7, 0)


def parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def server_from_info(info: dict[str, object]) -> Server:
    valkey = info.get("server_name") == "valkey" or "valkey_version" in info
    flavour = "Valkey" if valkey else "Redis"
    compat = parse_version(str(info.get("redis_version", "0")))
    return Server(
        flavour=flavour,
        version=parse_version(str(info.get("valkey_version", ""))) or compat,
        compat=compat,
        used_memory_human=str(info.get("used_memory_human", "n/a")),
        connected_clients=int(info.get("connected_clients", 0)),
        uptime_seconds=int(info.get("uptime_in_seconds", 0)),
    )
