"""EventBus: the spec's API (publish, request, subscribe, start/stop consumer, history)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any

import redis
import redis.asyncio as aioredis
from prometheus_client import REGISTRY, CollectorRegistry
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.maint_notifications import MaintNotificationsConfig

from streams_admin.bus import connect, history, requests
from streams_admin.bus.cluster import BusCluster, ClusterCoalescer
from streams_admin.bus.coalesce import Coalescer
from streams_admin.bus.config import BusConfig
from streams_admin.bus.consumer import Consumer
from streams_admin.bus.envelope import Envelope, Keys
from streams_admin.bus.handling import Handler, Handling, Subscription
from streams_admin.bus.metrics import BusMetrics, metrics_for
from streams_admin.bus.publisher import Publisher


class EventBus:
    """One bus over one Redis. Nothing connects until first used, so a module-level bus
    can be created (and subscribed to) at import time and configured from the environment."""

    def __init__(self, redis_url: str | None = None, prefix: str | None = None, *,
                 registry: CollectorRegistry | None = None, **options: Any) -> None:
        self._options = {"redis_url": redis_url, "prefix": prefix, **options}
        self._registry = registry
        self._config: BusConfig | None = None
        self._subscriptions: dict[str, Subscription] = {}
        self._consumer: Consumer | None = None
        self._consumer_done: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: tuple[aioredis.Redis, aioredis.Redis, aioredis.Redis] | None = None
        self._publisher: Publisher | None = None
        self._cluster: bool | None = None
        self._slots: asyncio.Semaphore | None = None
        self._slots_loop: asyncio.AbstractEventLoop | None = None

    @property
    def cluster(self) -> bool:
        """Whether redis_url names a node of a Redis Cluster (asked once, on first use)."""
        if self._cluster is None:
            self._cluster = self.config.cluster
        if self._cluster is None:
            self._cluster = _is_cluster(self.config.redis_url, self.config.redis_options)
        return self._cluster

    # -- configuration and connections -------------------------------------------------

    @property
    def config(self) -> BusConfig:
        if self._config is None:
            self._config = BusConfig.build(**self._options)
        return self._config

    def configure(self, **options: Any) -> None:
        """Change options before first use (e.g. the worker's --redis-url)."""
        self._options.update(options)
        self._config = None

    @property
    def keys(self) -> Keys:
        return Keys(self.config.prefix, self.config.hash_tags)

    @property
    def registry(self) -> CollectorRegistry:
        return self._registry or REGISTRY

    @property
    def metrics(self) -> BusMetrics:
        return metrics_for(self._registry)

    def client(self) -> aioredis.Redis:
        return self._connections()[0]

    def blocking_client(self) -> aioredis.Redis:
        """For XREAD(GROUP) BLOCK: no socket timeout, a blocked read is not a dead Redis."""
        return self._connections()[1]

    def replies_client(self) -> aioredis.Redis:
        """For request()'s XREAD BLOCK: `request_connections` at most, callers queue for them."""
        return self._connections()[2]

    def _connections(self) -> tuple[aioredis.Redis, aioredis.Redis, aioredis.Redis]:
        loop = asyncio.get_running_loop()
        if self._clients is None or self._loop is not loop:
            # Connections belong to one event loop; a new loop (a new asyncio.run) gets its own.
            self._loop, self._publisher = loop, None
            if self.cluster:
                self._clients = (self._connect_cluster(5.0), self._connect_cluster(None),
                                 self._connect_cluster(None))
            else:
                self._clients = (self._connect(socket_timeout=5.0),
                                 self._connect(socket_timeout=None), self._connect_replies())
        return self._clients

    def _connect_cluster(self, socket_timeout: float | None) -> Any:
        # redis-py's cluster client follows MOVED/ASK and, after a failover, refreshes the
        # slot map and retries: a retried XADD may store an event twice (docs/bus.md).
        # No maintenance notifications: the handshake (CLIENT MAINT_NOTIFICATIONS) on each new
        # connection fails on a self-hosted Redis and broke concurrent connects.
        return BusCluster.from_url(
            self.config.redis_url, **connect.checked(self.config.redis_url,
                                                     self.config.redis_options),
            socket_timeout=socket_timeout, socket_connect_timeout=5.0,
            socket_keepalive=True, maint_notifications_config=MaintNotificationsConfig(False))

    def _connect(self, socket_timeout: float | None) -> aioredis.Redis:
        # No retries inside redis-py: a retried XADD could publish twice; the bus backs off.
        return connect.async_client(
            self.config.redis_url, self.config.redis_options, socket_timeout=socket_timeout,
            socket_connect_timeout=5.0, socket_keepalive=True, retry=Retry(NoBackoff(), 0))

    def _connect_replies(self) -> aioredis.Redis:
        # Apart from the consumer's blocking connection: requests waiting for replies must
        # never keep this process's own responder from reading the requests.
        options = {"max_connections": self.config.request_connections, "socket_timeout": None,
                   "socket_connect_timeout": 5.0, "socket_keepalive": True,
                   "retry": Retry(NoBackoff(), 0)}
        if connect.is_sentinel(self.config.redis_url):  # the primary's pool, not a queue
            return connect.async_client(self.config.redis_url, self.config.redis_options,
                                        **options)
        pool = connect.async_pool(self.config.redis_url, self.config.redis_options,
                                  timeout=None, **options)
        return aioredis.Redis.from_pool(pool)

    def _coalescer(self, *, transaction: bool) -> Coalescer:
        c = self.config
        kind = ClusterCoalescer if self.cluster else Coalescer
        return kind(self.client, transaction=transaction, max_commands=c.pipeline_size,
                    retry_s=c.publish_retry_s, backoff_s=c.backoff_s,
                    backoff_max_s=c.backoff_max_s)

    async def aclose(self) -> None:
        if self._publisher is not None:
            await self._publisher.pipeline.drain()
        if self._clients is not None:
            for client in self._clients:
                await client.aclose()
        self._clients = self._publisher = self._loop = None

    # -- publishing ---------------------------------------------------------------------

    def _publishing(self) -> Publisher:
        self._connections()
        if self._publisher is None:
            self._publisher = Publisher(self.config, self.keys, self.metrics,
                                        self._coalescer(transaction=False))
        return self._publisher

    async def publish(self, event_type: str, data: Any, correlation_id: str | None = None,
                      **options: Any) -> str:
        return await self._publishing().publish(event_type, data, correlation_id, **options)

    async def publish_many(self, events: Iterable[tuple[str, Any]], **options: Any) -> list[str]:
        return await self._publishing().publish_many(events, **options)

    async def request(self, event_type: str, data: dict[str, Any],
                      timeout: float = 30.0) -> Any | None:
        if self.cluster:
            return await requests.request_on_cluster(
                self._publishing(), self.replies_client(), self._request_slots(), self.keys,
                event_type, data, timeout)
        return await requests.request(self._publishing(), self.replies_client(), self.keys,
                                      event_type, data, timeout)

    def _request_slots(self) -> asyncio.Semaphore:
        # On a cluster requests wait through redis-py's client: this bounds how many block.
        self._connections()
        if self._slots is None or self._slots_loop is not self._loop:
            self._slots = asyncio.Semaphore(self.config.request_connections)
            self._slots_loop = self._loop
        return self._slots

    # -- history and trimming -----------------------------------------------------------

    def iter_history(self, event_type: str, start: str = "-", end: str = "+", *,
                     since: datetime | None = None) -> AsyncIterator[Envelope]:
        return history.iter_history(self.client(), self.keys, event_type, start, end,
                                    since=since)

    async def history(self, event_type: str, start: str = "-", end: str = "+", *,
                      since: datetime | None = None, count: int = 100) -> list[Envelope]:
        events: list[Envelope] = []
        async for envelope in self.iter_history(event_type, start, end, since=since):
            events.append(envelope)
            if len(events) >= count:
                break
        return events

    async def replay(self, event_type: str, handler: Callable[..., Awaitable[Any] | Any],
                     start: str = "-", *, since: datetime | None = None) -> int:
        return await history.replay(self.client(), self.keys, event_type, handler, start,
                                    since=since)

    async def safe_trim(self, event_type: str, before: str | datetime | None = None) -> int:
        return await history.safe_trim(self.client(), self.keys, event_type, before)

    # -- consuming ----------------------------------------------------------------------

    def subscribe(self, event_type: str, *, idempotent: bool = False
                  ) -> Callable[[Handler], Handler]:
        """Register `async def handler(data)` (or `(data, envelope)`) for an event type."""
        def register(handler: Handler) -> Handler:
            if event_type in self._subscriptions:
                raise ValueError(f"{event_type!r} already has a handler on this bus")
            self._subscriptions[event_type] = Subscription(event_type, handler, idempotent)
            return handler
        return register

    async def start_consumer(self, consumer_group: str = "agent-group",
                             consumer_name: str | None = None) -> None:
        """Consume every subscribed event type until stop_consumer(); runs in the caller."""
        if self._consumer is not None:
            raise RuntimeError("this bus already runs a consumer")
        if not self._subscriptions:
            raise RuntimeError("nothing to consume: no handler is subscribed")
        name = consumer_name or f"{socket.gethostname()}-{os.getpid()}"
        self._consumer = self._new_consumer(consumer_group, name)
        self._consumer_done = asyncio.Event()
        try:
            await self._consumer.run()
        finally:
            self._consumer_done.set()
            self._consumer = None

    async def stop_consumer(self) -> None:
        """Stop reading, let running handlers finish, flush acks; returns when done."""
        consumer, done = self._consumer, self._consumer_done
        if consumer is None or done is None:
            return
        await consumer.stop()
        await done.wait()

    def _new_consumer(self, group: str, name: str) -> Consumer:
        handling = Handling(self.config, self.keys, self.metrics, group, name,
                            acks=self._coalescer(transaction=True),
                            commands=self._coalescer(transaction=False),
                            cluster=self.cluster)
        subscriptions = {self.keys.stream(t): s for t, s in self._subscriptions.items()}
        return Consumer(self.config, self.client, self.blocking_client, handling, subscriptions)


def _is_cluster(url: str, options: dict[str, Any]) -> bool:
    """`INFO cluster` on the node the URL names. Asked once, synchronously (a few ms on
    first use); a Redis that is down then is taken for a standalone one, as before.
    Sentinel watches standalone primaries."""
    if connect.is_sentinel(url):
        return False
    client = connect.sync_client(url, options, socket_timeout=2.0, socket_connect_timeout=2.0)
    try:
        return bool(client.info("cluster").get("cluster_enabled"))
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()
