"""The bus's options: explicit arguments over environment variables over defaults."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

from streams_admin.bus.connect import options_from_env

DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PREFIX = "agent:stream:"

# Environment variable for each option that may come from the environment, and its type.
ENV: dict[str, tuple[str, Callable[[str], Any]]] = {
    "redis_url": ("REDIS_URL", str),
    "prefix": ("BUS_PREFIX", str),
    "max_deliveries": ("BUS_MAX_DELIVERIES", int),
    "max_in_flight": ("BUS_MAX_IN_FLIGHT", int),
    "min_idle_ms": ("BUS_MIN_IDLE_MS", int),
    "maxlen": ("BUS_MAXLEN", int),
    "request_connections": ("BUS_REQUEST_CONNECTIONS", int),
    "hash_tags": ("BUS_HASH_TAGS", lambda v: v.lower() in ("1", "true", "yes", "on")),
}


@dataclass(frozen=True)
class BusConfig:
    redis_url: str = DEFAULT_URL
    # redis-py connection options for every client: username, password, ssl_* files
    # (from REDIS_USERNAME, REDIS_PASSWORD, REDIS_TLS_*; see connect.py).
    redis_options: dict[str, Any] = field(default_factory=dict)
    prefix: str = DEFAULT_PREFIX
    # A failing entry is tried this often, then dead-lettered.
    max_deliveries: int = 5
    # Handlers running at once per consumer; reading stops while all slots are busy.
    max_in_flight: int = 64
    # An entry pending this long (its consumer died, or its handler failed) is reclaimed.
    min_idle_ms: int = 30_000
    # How long one XREADGROUP blocks; also bounds how fast stop and claim checks react.
    block_ms: int = 1_000
    # How often the consumer looks at its own pending list and XAUTOCLAIMs idle entries.
    claim_interval_s: float = 2.0
    # Approximate MAXLEN on every publish (None: streams are not trimmed on publish).
    maxlen: int | None = None
    # How long idempotency markers and response streams live.
    idempotency_ttl_s: int = 7 * 24 * 3600
    response_ttl_s: int = 300
    # Reconnect backoff after Redis went away: first wait, doubled up to the cap.
    backoff_s: float = 0.1
    backoff_max_s: float = 5.0
    # publish() keeps retrying a Redis that is down for this long before it raises.
    publish_retry_s: float = 10.0
    # stop_consumer() waits this long for running handlers before cancelling them.
    stop_timeout_s: float = 30.0
    # Commands per pipeline when publishes and acks are coalesced.
    pipeline_size: int = 1_000
    # Connections request() may block on at once, waiting for replies; more requests queue.
    request_connections: int = 8
    # Redis Cluster: None asks the server (`INFO cluster`) on first connect.
    cluster: bool | None = None
    # Name keys `{prefix}{event_type}` etc. with `{event_type}` (same slot on a cluster).
    hash_tags: bool = False

    @classmethod
    def build(cls, **overrides: Any) -> BusConfig:
        """Defaults, then the environment, then the caller's non-None arguments."""
        from_env: dict[str, Any] = {}
        for name, (variable, kind) in ENV.items():
            value = os.environ.get(variable)
            if value:
                from_env[name] = kind(value)
        if options := options_from_env(os.environ):
            from_env["redis_options"] = options
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown bus options: {', '.join(sorted(unknown))}")
        explicit = {k: v for k, v in overrides.items() if v is not None}
        return replace(cls(), **{**from_env, **explicit})
