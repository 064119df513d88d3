"""GET /metrics: stream and group health of every target, in Prometheus's text format.

Names follow oliver006/redis_exporter where they overlap (redis_stream_length,
redis_stream_group_lag, ...), so its Grafana boards keep working; the label `target` names
the dashboard's target. What it lacks: time lag, oldest pending age, entries trimmed unread,
stalled consumers (trends/measure.py defines them).

Access: `Authorization: Bearer <METRICS_TOKEN>` (compared in constant time), or a client
address in METRICS_ALLOW; never a session. Neither configured: the endpoint is off (403).

Bounded: each target is measured with one snapshot (SCAN plus one pipeline per node), at
most METRICS_MAX_STREAMS streams (the rest counted in streams_admin_metrics_streams_left_out),
per-consumer series only with METRICS_CONSUMERS. Targets are measured at once, in threads; one
down or slower than METRICS_TIMEOUT is `redis_up{target="..."} 0` and the others are served.
Concurrent scrapes share one exposition, reused for METRICS_FRESHNESS seconds.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from streams_admin import targets
from streams_admin.flight import SingleFlight
from streams_admin.login import client_address
from streams_admin.trends.measure import GroupSample, Snapshot, StreamSample, snapshot

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "METRICS_TOKEN": "",  # STREAMS_ADMIN_METRICS_TOKEN: a scraper sends it as a Bearer token
    "METRICS_ALLOW": (),  # addresses or networks ("10.0.0.0/8") allowed without the token
    "METRICS_CONSUMERS": True,  # per-consumer series (their number grows with the consumers)
    "METRICS_MAX_STREAMS": 1000,  # streams per target, first by name; the rest counted
    "METRICS_TIMEOUT": 8.0,  # seconds a target may take (Prometheus waits 10 s by default)
    "METRICS_FRESHNESS": 1.0,  # seconds a measurement serves concurrent and later scrapes
}
STREAM = ("target", "stream")
GROUP = (*STREAM, "group")
CONSUMER = (*GROUP, "consumer")

_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="metrics")
_flights = SingleFlight()


def option(name: str) -> Any:
    return {**DEFAULTS, **getattr(settings, "STREAMS_ADMIN", {})}[name]


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    refused = refusal(request)
    if refused is not None:
        return refused
    text = _flights.run((tuple(targets.configured()), option("METRICS_MAX_STREAMS"),
                         option("METRICS_CONSUMERS")), option("METRICS_FRESHNESS"), exposition)
    response = HttpResponse(text, content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response


def exposition() -> bytes:
    """Every target measured and rendered: prometheus_client's rendering costs more than the
    measuring (about 90 µs a sample), so concurrent scrapes share the text, not only the
    measurements."""
    return generate_latest(Exposition(measure_all()))


@receiver(setting_changed)
def _forget_on_settings(**kwargs: Any) -> None:
    if kwargs["setting"] in {"REDIS_URL", "STREAMS_ADMIN", "STREAMS_ADMIN_TARGETS"}:
        _flights.clear()


def refusal(request: HttpRequest) -> HttpResponse | None:
    """None when the scraper may read: the token, or an allowed address. 401 asks for the
    token (when there is one), 403 otherwise."""
    token = str(option("METRICS_TOKEN"))
    given = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return None
    if allowed(client_address(request), option("METRICS_ALLOW")):
        return None
    if token:
        response = HttpResponse("A Bearer token is needed.\n", status=401,
                                content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse("Not allowed.\n", status=403, content_type="text/plain")


def allowed(address: str | None, networks: Any) -> bool:
    if not address or not networks:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net.strip(), strict=False)
               for net in _listed(networks))


def _listed(networks: Any) -> list[str]:
    items = networks.split(",") if isinstance(networks, str) else list(networks)
    return [item.strip() for item in items if item.strip()]


@dataclass(frozen=True)
class Measured:
    target: str
    snapshot: Snapshot | None  # None: the target is down (or too slow)
    seconds: float


def measure_all() -> list[Measured]:
    """Every target's snapshot, at once; a target failing or slow is down, not an error."""
    every = list(targets.configured().values())
    started = time.perf_counter()
    futures = [_pool.submit(measure_one, target) for target in every]
    wait(futures, timeout=option("METRICS_TIMEOUT"))
    return [future.result() if future.done()
            else Measured(target.name, None, time.perf_counter() - started)
            for target, future in zip(every, futures, strict=True)]


def measure_one(target: targets.Target) -> Measured:
    started = time.perf_counter()
    try:
        with targets.serving(target):
            taken = snapshot(max_streams=option("METRICS_MAX_STREAMS"),
                             consumers=option("METRICS_CONSUMERS"))
    except Exception as exc:  # noqa: BLE001 (whatever failed, the target is down to Prometheus)
        log.warning("metrics: target %s not measured: %s", target.name, exc)
        taken = None
    return Measured(target.name, taken, time.perf_counter() - started)


def label(name: bytes) -> str:
    """A name as a label value: any bytes, invalid UTF-8 escaped (the exposition escapes
    quotes, backslashes and newlines itself)."""
    return name.decode("utf-8", "backslashreplace")


class Exposition:
    """The families of every target's measurement, for prometheus_client to render."""

    def __init__(self, measured: list[Measured]) -> None:
        self.measured = measured

    def collect(self) -> Iterator[Metric]:
        families = Families()
        for one in self.measured:
            families.target(one)
            for stream in one.snapshot.streams if one.snapshot else ():
                families.stream(one.target, stream)
        yield from families.all()


class Families:
    """One family per metric name, filled target by target."""

    def __init__(self) -> None:
        self.up = GaugeMetricFamily("redis_up", "1 when the target answered", labels=["target"])
        self.left_out = gauge("streams_admin_metrics_streams_left_out",
                              "Streams past METRICS_MAX_STREAMS, not exported", ("target",))
        self.seconds = gauge("streams_admin_metrics_scrape_duration_seconds",
                             "Seconds measuring the target took", ("target",))
        self.length = gauge("redis_stream_length", "Entries in the stream", STREAM)
        self.groups = gauge("redis_stream_groups", "Consumer groups of the stream", STREAM)
        self.added = CounterMetricFamily("redis_stream_entries_added",
                                         "Entries ever added to the stream (Redis 7.0+)",
                                         labels=STREAM)
        self.lag = gauge("redis_stream_group_lag",
                         "Entries not yet delivered to the group (trimmed ones apart)", GROUP)
        self.read = gauge("redis_stream_group_entries_read",
                          "Entries the group has read (Redis 7.0+)", GROUP)
        self.pending = gauge("redis_stream_group_messages_pending",
                             "Entries delivered to the group and not acknowledged", GROUP)
        self.consumers = gauge("redis_stream_group_consumers", "Consumers of the group", GROUP)
        self.time_lag = gauge("redis_stream_group_time_lag_seconds",
                              "Age of the oldest entry not yet delivered to the group "
                              "(0 when caught up)", GROUP)
        self.oldest = gauge("redis_stream_group_oldest_pending_seconds",
                            "Idle time of the group's oldest pending entry (0 when none)", GROUP)
        self.trimmed = gauge("redis_stream_group_trimmed_unread",
                             "Entries trimmed before the group read them", GROUP)
        self.held = gauge("redis_stream_group_consumer_messages_pending",
                          "Entries the consumer holds unacknowledged", CONSUMER)
        self.idle = gauge("redis_stream_group_consumer_idle_seconds",
                          "Seconds since the consumer last tried to read", CONSUMER)
        self.stalled = gauge("redis_stream_group_consumer_stalled",
                             "1 when the consumer is idle past the threshold while its group "
                             "has entries not yet delivered", CONSUMER)

    def all(self) -> list[Metric]:
        return list(vars(self).values())

    def target(self, one: Measured) -> None:
        self.up.add_metric([one.target], 1 if one.snapshot else 0)
        self.seconds.add_metric([one.target], round(one.seconds, 6))
        if one.snapshot:
            self.left_out.add_metric([one.target], one.snapshot.left_out)

    def stream(self, target: str, stream: StreamSample) -> None:
        labels = [target, label(stream.key)]
        self.length.add_metric(labels, stream.length)
        self.groups.add_metric(labels, len(stream.groups))
        if stream.entries_added is not None:
            self.added.add_metric(labels, stream.entries_added)
        for group in stream.groups:
            self.group([*labels, label(group.name)], group)

    def group(self, labels: list[str], group: GroupSample) -> None:
        for family, value in ((self.lag, group.lag), (self.read, group.entries_read),
                              (self.pending, group.pending),
                              (self.consumers, group.consumer_count),
                              (self.time_lag, group.time_lag_s),
                              (self.oldest, group.oldest_pending_s or 0.0),
                              (self.trimmed, group.trimmed_unread)):
            if value is not None:  # the server cannot tell: no sample rather than a lie
                family.add_metric(labels, value)
        stalled = set(group.stalled)
        for consumer in group.consumers:
            names = [*labels, label(consumer.name)]
            self.held.add_metric(names, consumer.pending)
            self.idle.add_metric(names, consumer.idle_ms / 1000)
            self.stalled.add_metric(names, 1 if consumer.name in stalled else 0)
        if not group.consumers:  # per-consumer series off: the stalled ones only
            for name in group.stalled:
                self.stalled.add_metric([*labels, label(name)], 1)


def gauge(name: str, documentation: str, labels: tuple[str, ...]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=list(labels))
