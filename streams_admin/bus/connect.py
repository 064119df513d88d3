"""Redis clients from a URL and connection options, in every form a deployment uses.

- `redis://` and `unix://` as redis-py reads them;
- `rediss://`: TLS, the server's certificate verified by default (against `ssl_ca_certs`, or
  the system's CAs), a client certificate and key when the server asks for one;
- `redis+sentinel://[user:password@]h1:26379,h2:26379/mymaster/0` (`rediss+sentinel://` for
  TLS): the primary the Sentinels name for that service, asked again after a failover
  (redis-py's Sentinel `master_for`). The URL's credentials are the data nodes' ones; the
  Sentinels' own password, if they have one, is the `sentinel_password` option.

Options are redis-py connection keyword arguments (`username`, `password`, `ssl_*`) that
apply to every client built from the URL. The dashboard and the bus both build their clients
here, so both follow the same URL. Imports nothing from Django.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel

SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}
SENTINEL_PORT = 26379

# Environment variables naming each option (the secrets stay in the environment, not a URL).
ENV_OPTIONS = {
    "REDIS_USERNAME": "username",
    "REDIS_PASSWORD": "password",
    "REDIS_TLS_CA": "ssl_ca_certs",
    "REDIS_TLS_CERT": "ssl_certfile",
    "REDIS_TLS_KEY": "ssl_keyfile",
    "REDIS_SENTINEL_PASSWORD": "sentinel_password",
}


def options_from_env(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The connection options the environment sets. REDIS_TLS_VERIFY=0 turns certificate
    verification off (a test server with a self-signed certificate): on unless said so."""
    options: dict[str, Any] = {option: environ[name] for name, option in ENV_OPTIONS.items()
                               if environ.get(name)}
    if environ.get("REDIS_TLS_VERIFY", "1").strip().lower() in {"0", "false", "no", "off"}:
        options |= {"ssl_cert_reqs": "none", "ssl_check_hostname": False}
    return options


@dataclass(frozen=True)
class SentinelURL:
    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int
    username: str | None
    password: str | None
    tls: bool


def is_sentinel(url: str) -> bool:
    return urlsplit(url).scheme in SENTINEL_SCHEMES


def parse_sentinel(url: str) -> SentinelURL:
    """`redis+sentinel://[user:password@]host[:port][,host[:port]...]/service[/db]`."""
    parts = urlsplit(url)
    credentials, _, hosts = parts.netloc.rpartition("@")
    user, _, password = credentials.partition(":")
    path = [unquote(p) for p in parts.path.split("/") if p]
    if not hosts or not path:
        raise ValueError("A Sentinel URL names its Sentinels and the service: "
                         "redis+sentinel://h1:26379,h2:26379/mymaster/0")
    return SentinelURL(
        sentinels=tuple(_host_port(h) for h in hosts.split(",") if h),
        service=path[0], db=int(path[1]) if len(path) > 1 else 0,
        username=unquote(user) or None, password=unquote(password) or None,
        tls=SENTINEL_SCHEMES[parts.scheme])


def _host_port(text: str) -> tuple[str, int]:
    if text.startswith("["):  # [::1]:26379
        host, _, rest = text[1:].partition("]")
        return host, int(rest.lstrip(":") or SENTINEL_PORT)
    host, _, port = text.partition(":")
    return host, int(port or SENTINEL_PORT)


def checked(url: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options for this URL. TLS files with a plain URL are a mistake, said at once:
    dropping them silently would send the password in clear to a server thought verified."""
    tls = urlsplit(url).scheme in {"rediss", "rediss+sentinel"}
    if not tls and any(name.startswith("ssl_") for name in options):
        raise ValueError("TLS options (REDIS_TLS_*) are set but the URL is not rediss://: "
                         f"{urlsplit(url).scheme}://")
    return {k: v for k, v in options.items() if k != "sentinel_password"}


def _sentinel_options(options: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """How to reach the Sentinels themselves: the same TLS files and timeouts, their own
    password (none unless `sentinel_password`), never the data nodes' credentials."""
    kept = {k: v for k, v in {**options, **extra}.items()
            if k.startswith(("ssl_", "socket_"))}
    if options.get("sentinel_password"):
        kept["password"] = options["sentinel_password"]
    return kept


def _sentinel_kwargs(target: SentinelURL, options: Mapping[str, Any],
                     extra: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    data = {**checked("rediss://" if target.tls else "redis://", options), **extra}
    if target.username:
        data["username"] = target.username
    if target.password:
        data["password"] = target.password
    sentinels = _sentinel_options(options, extra)
    if target.tls:
        data["ssl"] = sentinels["ssl"] = True
    return data, sentinels


def sync_client(url: str, options: Mapping[str, Any], **extra: Any) -> redis.Redis:
    """A client of the server the URL names (of the primary, for a Sentinel URL)."""
    if not is_sentinel(url):
        return redis.Redis.from_url(url, **{**checked(url, options), **extra})
    target = parse_sentinel(url)
    data, sentinels = _sentinel_kwargs(target, options, extra)
    manager = redis.sentinel.Sentinel(target.sentinels, sentinel_kwargs=sentinels)
    primary: redis.Redis = manager.master_for(target.service, db=target.db, **data)
    return primary


def async_client(url: str, options: Mapping[str, Any], **extra: Any) -> redis.asyncio.Redis:
    if not is_sentinel(url):
        return redis.asyncio.Redis.from_url(url, **{**checked(url, options), **extra})
    target = parse_sentinel(url)
    data, sentinels = _sentinel_kwargs(target, options, extra)
    sentinel = _async_sentinel(target, sentinels)
    primary: redis.asyncio.Redis = sentinel.master_for(target.service, db=target.db, **data)
    return primary


# The Sentinels' clients, one set per event loop (their connections belong to it): the live
# tail's readers, its control client and the counts' sampler share them instead of each
# holding its own connection to a Sentinel.
_sentinels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                      dict[tuple[Any, ...], redis.asyncio.sentinel.Sentinel]] = (
    weakref.WeakKeyDictionary())


def _async_sentinel(target: SentinelURL,
                    options: dict[str, Any]) -> redis.asyncio.sentinel.Sentinel:
    try:
        shared = _sentinels.setdefault(asyncio.get_running_loop(), {})
    except RuntimeError:  # no loop yet: nothing to share with
        shared = {}
    key = (target.sentinels, tuple(sorted(options.items())))
    if key not in shared:
        shared[key] = redis.asyncio.sentinel.Sentinel(target.sentinels, sentinel_kwargs=options)
    return shared[key]


def async_pool(url: str, options: Mapping[str, Any],
               **extra: Any) -> redis.asyncio.BlockingConnectionPool:
    """A bounded pool callers queue for (the bus's replies). Not for Sentinel URLs."""
    return redis.asyncio.BlockingConnectionPool.from_url(url, **{**checked(url, options),
                                                                 **extra})


def cluster_client(url: str, options: Mapping[str, Any], **extra: Any) -> redis.RedisCluster:
    return redis.RedisCluster.from_url(url, **{**checked(url, options), **extra})


def async_cluster_client(url: str, options: Mapping[str, Any],
                         **extra: Any) -> redis.asyncio.RedisCluster:
    return redis.asyncio.RedisCluster.from_url(url, **{**checked(url, options), **extra})


def node_url(url: str, address: str) -> str:
    """The URL of a cluster's node at host:port: the same scheme, credentials and database."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@{address}" if credentials else address
    return urlunsplit(parts._replace(netloc=netloc))


def username(url: str, options: Mapping[str, Any]) -> str:
    """The ACL user the clients log in as ("default" when none is given)."""
    if is_sentinel(url):
        named = parse_sentinel(url).username
    else:
        named = unquote(urlsplit(url).username or "") or None
    return str(named or options.get("username") or "default")  # the URL's win, as in redis-py
