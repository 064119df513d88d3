"""The one sampler of a deployment (`manage.py sampler`): every SAMPLE_INTERVAL, a snapshot of
each target into the history.

However many processes run it, one samples: it holds a lease, a row of the dashboard's
database renewed by an UPDATE ... WHERE holder = me OR expired, in the transaction that
writes the samples (a holder that lost the lease writes nothing). Plain SQL: the same on
SQLite and PostgreSQL, no advisory lock (SQLite has none) and nothing in Redis (the history
must not depend on the Redis it watches). A stopped holder's lease lapses after 3 intervals
and another process takes over.

A target that fails (Redis down, a timeout, anything) writes nothing, which the charts show
as a gap, and is tried again with backoff; the others are sampled on time. What happened is
in SamplerStatus (per target) and SamplerLease: `state()` reads them for a page.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import IntegrityError, close_old_connections, transaction
from django.db.models import Q

from streams_admin import conf, targets
from streams_admin.trends import alerts, notify, storage
from streams_admin.trends.models import SamplerLease, SamplerStatus

if TYPE_CHECKING:
    from streams_admin.trends.measure import Snapshot

log = logging.getLogger(__name__)
LEASE = "sampler"
MAX_BACKOFF = 6  # intervals: a target back up is sampled again within a minute


def _measure() -> Snapshot:
    from streams_admin.trends import measure  # the t-measure module: Redis round trips

    return measure.snapshot(max_streams=conf.get("HISTORY_MAX_STREAMS"), consumers=True)


class Sampler:
    def __init__(self, interval: int | None = None,
                 measure: Callable[[], Snapshot] = _measure) -> None:
        self.interval = int(interval or conf.get("SAMPLE_INTERVAL"))
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.measure = measure
        self.cache: dict[bytes, int] = {}  # Series digest -> id
        self.failures: dict[str, int] = {}  # target -> failures in a row
        self.retry_at: dict[str, float] = {}
        self.holding: bool | None = None  # None: not asked yet
        self.alerts = alerts.Evaluator()

    def renew(self, now: float) -> bool:
        """Take or keep the lease; False: another live process holds it. The UPDATE comes
        first: in a transaction on SQLite, a read before the first write would make a busy
        database fail at once ("database is locked") instead of waiting its turn."""
        won = self._update(now)
        if not won and not SamplerLease.objects.filter(name=LEASE).exists():
            # created by another process meanwhile: fine (a savepoint keeps the transaction)
            with contextlib.suppress(IntegrityError), transaction.atomic():
                SamplerLease.objects.create(name=LEASE)
            won = self._update(now)
        if won != self.holding:
            log.info("sampler %s: %s", self.holder, "sampling" if won else "standing by")
        self.holding = won
        return won

    def _update(self, now: float) -> bool:
        return bool(SamplerLease.objects.filter(name=LEASE).filter(
            Q(holder=self.holder) | Q(expires_at__lt=now)).update(
            holder=self.holder, renewed_at=now, expires_at=now + 3 * self.interval))

    def release(self) -> None:
        SamplerLease.objects.filter(name=LEASE, holder=self.holder).update(expires_at=0.0)

    def cycle(self, slot: int) -> bool:
        """One sample of every target due, at slot (epoch s); False when standing by."""
        close_old_connections()  # a long-lived process: a dropped connection is replaced
        if not self.renew(time.time()):
            return False
        taken = {t.name: self._take(t) for t in targets.configured().values() if self._due(t)}
        with transaction.atomic():
            if not self.renew(time.time()):
                return False
            for name, (snap, error, spent) in taken.items():
                self._record(name, slot, snap, error, spent)
        storage.compact(time.time())
        storage.purge(time.time())
        return True

    def _due(self, target: targets.Target) -> bool:
        return time.time() >= self.retry_at.get(target.name, 0.0)

    def _take(self, target: targets.Target) -> tuple[Snapshot | None, str, float]:
        began = time.perf_counter()
        try:
            with targets.serving(target):
                snap = self.measure()
        except Exception as exc:  # any failure of one target is that target's alone
            failures = self.failures[target.name] = self.failures.get(target.name, 0) + 1
            backoff = self.interval * min(2 ** (failures - 1), MAX_BACKOFF)
            self.retry_at[target.name] = time.time() + backoff - self.interval / 2
            log.warning("sampler: target %s failed (%s); next try in %.0f s", target.name,
                        exc, backoff)
            return None, f"{type(exc).__name__}: {exc}"[:500], time.perf_counter() - began
        self.failures.pop(target.name, None)
        self.retry_at.pop(target.name, None)
        return snap, "", time.perf_counter() - began

    def _record(self, name: str, slot: int, snap: Snapshot | None, error: str,
                spent: float) -> None:
        now = time.time()
        fields: dict[str, object] = {"last_attempt": now, "cycle_ms": spent * 1000}
        if snap is None:
            fields |= {"last_error": error, "last_error_at": now}
        else:
            storage.write(name, slot, snap, self.cache)
            self.alerts.evaluate(name, slot, snap)  # a failed target: nothing fires or resolves
            fields |= {"last_success": now, "streams": len(snap.streams),
                       "left_out": snap.left_out}
        SamplerStatus.objects.update_or_create(target=name, defaults=fields)

    def run(self, stop: threading.Event) -> None:
        """Cycles on every multiple of the interval until stop; a failed cycle (the database
        away, say) is logged and retried with backoff, never the end of the loop."""
        backoff = 0.0
        notifier = notify.start(stop, lambda: bool(self.holding))  # never delays a cycle
        try:
            while not stop.wait(self._until_next()):
                try:
                    self.cycle(self._slot())
                    backoff = 0.0
                except Exception:
                    backoff = min(max(1.0, backoff * 2), MAX_BACKOFF * self.interval)
                    log.exception("sampler: cycle failed; again in %.0f s", backoff)
                    stop.wait(backoff)
        finally:
            self.release()
            notifier.join(10)

    def _slot(self) -> int:
        now = time.time()
        return int(round(now / self.interval) * self.interval)

    def _until_next(self) -> float:
        return self.interval - time.time() % self.interval


@dataclass(frozen=True)
class TargetState:
    target: str
    last_attempt: float
    last_success: float | None
    last_error: str
    last_error_at: float | None
    streams: int
    left_out: int

    @property
    def failing(self) -> bool:
        return self.last_error_at is not None and (self.last_success or 0) < self.last_error_at


@dataclass(frozen=True)
class State:
    running: bool  # a sampler renewed its lease within 3 intervals
    holder: str
    renewed_at: float | None
    targets: tuple[TargetState, ...]


def state(now: float | None = None) -> State:
    """What the sampler is doing, for a page: read from the database only."""
    now = time.time() if now is None else now
    lease = SamplerLease.objects.filter(name=LEASE).first()
    rows = SamplerStatus.objects.order_by("target").values_list(
        "target", "last_attempt", "last_success", "last_error", "last_error_at", "streams",
        "left_out")
    found = tuple(TargetState(*row) for row in rows)
    if lease is None:
        return State(False, "", None, found)
    return State(lease.expires_at > now, lease.holder, lease.renewed_at, found)
