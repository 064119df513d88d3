"""Redis clients built from settings, and what the server can do.

All clients return bytes: keys, names and values in Redis may be any bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
import redis.sentinel
from django.core.signals import setting_changed
from django.dispatch import receiver

from streams_admin import conf
from streams_admin.bus import connect


def _options() -> dict[str, Any]:
    return {
        "socket_timeout": conf.get("SOCKET_TIMEOUT"),
        "socket_connect_timeout": conf.get("CONNECT_TIMEOUT"),
        "health_check_interval": 30,
    }


def _raw(response: object, **options: object) -> object:
    return response


def _keep_pairs(r: redis.Redis | redis.asyncio.Redis | redis.asyncio.RedisCluster) -> None:
    # redis-py turns entries into dicts, which drops duplicate field names; keep the pairs.
    for command in ("XRANGE", "XREVRANGE", "XREAD", "XAUTOCLAIM"):
        r.set_response_callback(command, _raw)


Target = tuple[str, tuple[tuple[str, object], ...]]  # URL and options: a client's cache key


def _target() -> Target:
    """What clients connect to, read at call time (REDIS_URL and REDIS_OPTIONS today)."""
    return conf.redis_url(), tuple(sorted(conf.redis_options().items()))


@functools.cache
def _clustered(url: str, options: tuple) -> bool:
    """Whether the URL names a node of a cluster (asked once per URL: a failed probe, Redis
    down, is not remembered and gives the banner). Sentinel watches standalone primaries."""
    if connect.is_sentinel(url):
        return False
    probe = connect.sync_client(url, dict(options), **_options())
    try:
        return bool(probe.info("cluster").get("cluster_enabled"))
    finally:
        probe.close()


@functools.cache
def _client(url: str, options: tuple) -> redis.Redis:
    if not _clustered(url, options):
        r = connect.sync_client(url, dict(options), **_options())
        _keep_pairs(r)
        return r
    cluster = connect.cluster_client(url, dict(options), **_options())
    # Replies are parsed by each node's own client first: keep the pairs there, on the nodes
    # the cluster knows now and on those it makes when the slot map changes.
    manager, make = cluster.nodes_manager, cluster.nodes_manager.create_redis_node

    def create_redis_node(host: str, port: int, **kwargs: object) -> redis.Redis:
        node = make(host, port, **kwargs)
        _keep_pairs(node)
        return node

    manager.create_redis_node = create_redis_node  # type: ignore[method-assign]
    for node in cluster.get_nodes():
        if node.redis_connection is not None:
            _keep_pairs(node.redis_connection)
    return cluster  # type: ignore[return-value]  # the same commands, routed by key


FOLLOW_INTERVAL = 1.0  # seconds between asking the Sentinels where the primary is
_followed: dict[int, float] = {}


def _follow_primary(r: redis.Redis) -> None:
    """Sentinel: ask where the primary is, at most once a second. After a failover the old
    primary still answers reads as a replica, so waiting for an error would keep pages on it
    (and its first write would fail): a moved primary closes the idle connections at once."""
    pool = getattr(r, "connection_pool", None)  # a RedisCluster has one per node
    now = time.monotonic()
    if not isinstance(pool, redis.sentinel.SentinelConnectionPool) or \
            now - _followed.get(id(pool), 0.0) < FOLLOW_INTERVAL:
        return
    _followed[id(pool)] = now
    pool.get_master_address()  # no Sentinel answering: MasterNotFoundError, the banner


def client() -> redis.Redis:
    """The cached client: a RedisCluster when REDIS_URL names a node of a cluster, the
    primary's client for a Sentinel URL."""
    r = _client(*_target())
    _follow_primary(r)
    return r


def is_cluster() -> bool:
    return _clustered(*_target())


def node_client(key: bytes) -> redis.Redis:
    """The plain client of the node holding key (the only one on a standalone server)."""
    r = client()
    if isinstance(r, redis.RedisCluster):
        return r.get_redis_connection(r.get_node_from_key(key))
    return r


def by_node(keys: list[bytes]) -> list[tuple[redis.Redis, list[int]]]:
    """The keys' positions grouped by the node holding them, with that node's client: work
    per node, so round trips grow with the nodes, never with the keys."""
    r = client()
    if not isinstance(r, redis.RedisCluster):
        return [(r, list(range(len(keys))))] if keys else []
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(r.get_node_from_key(key).name, []).append(i)
    return [(r.get_redis_connection(r.get_node(node_name=name)), positions)
            for name, positions in groups.items()]


def node_at(address: str) -> redis.Redis:
    """The plain client of the cluster's node at host:port (an ASK names it)."""
    r = client()
    host, port = address.rsplit(":", 1)
    node = r.get_node(host=host, port=int(port)) if isinstance(r, redis.RedisCluster) else None
    if node is None:
        raise redis.ConnectionError(f"No known cluster node at {address}")
    return r.get_redis_connection(node)


def node_name(key: bytes) -> str:
    """host:port of the node holding key by the cached slot map; "" when not a cluster."""
    r = client()
    return r.get_node_from_key(key).name if isinstance(r, redis.RedisCluster) else ""


def refresh_slots() -> None:
    """After a node failed or answered MOVED to a read made on it directly: ask the cluster
    for its slot map again (a failover's new primary), so the next request finds it."""
    r = client()
    if isinstance(r, redis.RedisCluster):
        # Still failing over: the next request tries again.
        with contextlib.suppress(redis.RedisError, redis.exceptions.RedisClusterException):
            r.nodes_manager.initialize()


REDIRECTS = ("MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN")  # a cluster moving: not the key's fault

# What a request may meet while Redis, or a cluster node, is down or failing over: the banner.
UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ClusterError,
               redis.exceptions.SlotNotCoveredError, redis.exceptions.TryAgainError,
               redis.exceptions.AskError)


def async_client(block_seconds: float = 0) -> redis.asyncio.Redis:
    """A new async client; a blocking read may wait block_seconds on top of the timeout."""
    options = _options()
    options["socket_timeout"] = conf.get("SOCKET_TIMEOUT") + block_seconds
    # On a cluster this is the named node's client only: the live tail and counts use
    # async_cluster_client and async_node_client there.
    r = connect.async_client(conf.redis_url(), conf.redis_options(), **options)
    _keep_pairs(r)
    return r


def async_cluster_client(**extra: object) -> redis.asyncio.RedisCluster:
    """A new async cluster client (REDIS_URL names one node): commands routed by key, one
    pool per node, a pipeline sent to each node at once."""
    r = connect.async_cluster_client(conf.redis_url(), conf.redis_options(),
                                     **(_options() | extra))
    _keep_pairs(r)  # the nodes share the cluster's response callbacks
    return r


async def slot_map(r: redis.asyncio.RedisCluster, again: bool = False) -> None:
    """Ask the cluster for its slot map (again: a node failed or redirected a read made on it
    directly). A cluster not answering is Redis down."""
    try:
        await (r.nodes_manager.initialize() if again else r.initialize())
    except redis.exceptions.RedisClusterException as exc:
        raise redis.ConnectionError(str(exc)) from exc
    finally:
        await drop_startup_connections(r)


async def drop_startup_connections(r: redis.asyncio.RedisCluster) -> None:
    """Close what asking for the slot map left open on the node REDIS_URL names (kept apart
    from that node's own client): a cluster client holds one connection per node, no more."""
    manager = r.nodes_manager
    await asyncio.gather(*(node.disconnect() for name, node in manager.startup_nodes.items()
                           if manager.nodes_cache.get(name) is not node),
                         return_exceptions=True)


def async_node_client(address: str, **extra: object) -> redis.asyncio.Redis:
    """A new async plain client of the cluster's node at host:port, with REDIS_URL's
    scheme, credentials and options (TLS files too)."""
    r = connect.async_client(connect.node_url(conf.redis_url(), address), conf.redis_options(),
                             **(_options() | extra))
    _keep_pairs(r)
    return r


@receiver(setting_changed)
def _reset(**kwargs: object) -> None:
    if kwargs["setting"] in {"REDIS_URL", "REDIS_OPTIONS", "STREAMS_ADMIN",
                             "STREAMS_ADMIN_TARGETS"}:
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
    cluster: Cluster | None = None

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
    def has_script_flags(self) -> bool:
        """A script may start with `#!lua flags=...` (Redis 7.0): 6.2 refuses to compile it,
        and lets a script read keys of any slot its node holds without the flag."""
        return self.compat >= (7, 0)

    @property
    def has_ref_policies(self) -> bool:
        """XTRIM and XADD take KEEPREF | DELREF | ACKED, XDELEX and XACKDEL exist (Redis 8.2;
        not Valkey 9.1, which reports redis_version 7.2.4 anyway)."""
        return self.flavour == "Redis" and self.compat >= (8, 2)

    @property
    def has_stream_counters(self) -> bool:
        """XINFO STREAM reports entries-added, max-deleted-entry-id, recorded-first-entry-id."""
        return self.compat >= (7, 0)


def parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def server_from_info(info: dict[str, Any]) -> Server:
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


@dataclass(frozen=True)
class ClusterNode:
    address: str  # host:port
    role: str  # "primary" or "replica"
    up: bool
    slots: int  # slots it serves (a primary)
    used_memory_human: str = "n/a"
    connected_clients: int | None = None


@dataclass(frozen=True)
class Cluster:
    """What the header shows of a cluster: its state and each node, one that is down too."""

    state: str  # cluster_state: "ok" or "fail"
    slots_ok: int  # of 16384
    nodes: tuple[ClusterNode, ...]

    @property
    def primaries(self) -> int:
        return sum(1 for n in self.nodes if n.role == "primary" and n.up)

    @property
    def down(self) -> tuple[ClusterNode, ...]:
        return tuple(n for n in self.nodes if not n.up)


def server() -> Server:
    """The header's server: INFO of the server, or on a cluster CLUSTER NODES and INFO of
    each node (round trips grow with the nodes)."""
    r = client()
    if not isinstance(r, redis.RedisCluster):
        return server_from_info(r.info())
    infos: dict[str, dict] = {}
    topology: dict[str, dict] = {}
    state: dict[str, object] = {}
    for node in r.get_nodes():
        try:
            plain = r.get_redis_connection(node)
            infos[node.name] = plain.info()
            if not topology:
                topology = plain.execute_command("CLUSTER NODES")
                state = plain.cluster("info")
        except redis.RedisError:
            continue  # down: CLUSTER NODES of another node says so
    if not topology:
        raise redis.ConnectionError("No node of the cluster answers")
    nodes = tuple(sorted((_node(address, fields, infos.get(address))
                          for address, fields in topology.items()),
                         key=lambda n: (n.role != "primary", n.address)))
    first = server_from_info(next(iter(infos.values())))
    cluster = Cluster(state=str(state.get("cluster_state", "unknown")),
                      slots_ok=int(state.get("cluster_slots_ok", 0)), nodes=nodes)
    return Server(first.flavour, first.version, first.compat,
                  used_memory_human=first.used_memory_human,
                  connected_clients=sum(int(i.get("connected_clients", 0))
                                        for i in infos.values()),
                  uptime_seconds=first.uptime_seconds, cluster=cluster)


def _node(address: str, fields: dict, info: dict | None) -> ClusterNode:
    flags = str(fields.get("flags", ""))
    role = info.get("role") if info else ("master" if "master" in flags else "slave")
    slots = sum(int(span[-1]) - int(span[0]) + 1 for span in fields.get("slots") or ())
    return ClusterNode(
        address=address.split("@")[0],
        role="primary" if role == "master" else "replica",
        up="fail" not in flags and info is not None,
        slots=slots if role == "master" else 0,
        used_memory_human=str(info.get("used_memory_human", "n/a")) if info else "n/a",
        connected_clients=int(info.get("connected_clients", 0)) if info else None,
    )
