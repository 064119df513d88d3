"""Prometheus metrics, with the spec's names for processed events and processing time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

_by_registry: dict[int, BusMetrics] = {}


@dataclass(frozen=True)
class BusMetrics:
    processed: Counter
    processing_seconds: Histogram
    published: Counter
    redelivered: Counter
    dead_lettered: Counter
    in_flight: Gauge
    # Each running consumer's count of entries in hand; the gauge sums them when scraped.
    live: list[Callable[[], int]] = field(default_factory=list)


def metrics_for(registry: CollectorRegistry | None) -> BusMetrics:
    """One set of metrics per registry: buses sharing a registry share (not clash on) them."""
    registry = registry or REGISTRY
    found = _by_registry.get(id(registry))
    if found is None:
        found = _by_registry[id(registry)] = _create(registry)
    return found


def _create(registry: CollectorRegistry) -> BusMetrics:
    metrics = BusMetrics(
        processed=Counter("events_processed_total", "Total events processed",
                          ["event_type", "status"], registry=registry),
        processing_seconds=Histogram("event_processing_seconds", "Event processing time",
                                     ["event_type"], registry=registry),
        published=Counter("events_published_total", "Events published",
                          ["event_type"], registry=registry),
        redelivered=Counter("events_redelivered_total",
                            "Events delivered again (reclaimed or retried)",
                            ["event_type"], registry=registry),
        dead_lettered=Counter("events_dead_lettered_total", "Events moved to a dead-letter stream",
                              ["event_type", "reason"], registry=registry),
        in_flight=Gauge("events_in_flight", "Entries consumers hold now (running or acking)",
                        registry=registry),
    )
    # Computed at scrape time: an inc/dec per event was a measurable share of the work.
    metrics.in_flight.set_function(lambda: sum(count() for count in metrics.live))
    return metrics


_children: dict[tuple[int, tuple[str, ...]], Any] = {}


def child(metric: Counter | Histogram, *labels: str) -> Any:
    """metric.labels(...), cached: the label lookup cost more than the handler in benchmarks."""
    key = (id(metric), labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*labels)
    return found
