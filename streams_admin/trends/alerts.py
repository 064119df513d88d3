"""Alert rules evaluated on each snapshot the sampler takes (README "Alerts").

Per series (rule, stream, group) a small state machine: the condition holds -> pending; held
for the rule's for_seconds -> firing (a notification); no longer holds -> resolved (a
notification) or, from pending, cleared. Times are the sample's slot, so "for" is counted in
samples taken, whatever the clock did meanwhile.

Only a successful snapshot is evaluated: a target that failed to sample neither fires nor
resolves anything (its states are held as they were). Writes are for transitions only: a
rule matching 10,000 groups writes nothing in a cycle where nothing changed, but a firing
state's value, refreshed at most every VALUE_REFRESH seconds.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.db import transaction

from streams_admin import names
from streams_admin.trends import notify
from streams_admin.trends.alert_models import (
    CLEARED,
    FIRING,
    PENDING,
    RESOLVED,
    AlertEvent,
    AlertRule,
    AlertState,
    Notification,
)
from streams_admin.trends.storage import digest

if TYPE_CHECKING:
    from streams_admin.trends.measure import GroupSample, Snapshot, StreamSample

log = logging.getLogger(__name__)
VALUE_REFRESH = 60  # seconds between writes of a held state's current value
Series = tuple[bytes, bytes]  # stream, group (b"" for a stream's own metrics)
COMPARE = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


def group_value(metric: str, g: GroupSample) -> float | None:
    """A group's metric; None: the server does not give it (entries-read before Redis 7)."""
    if metric == "oldest_pending_seconds":  # nothing pending: nothing has waited
        return g.oldest_pending_s or 0.0
    if metric == "stalled_consumers":
        return float(len(g.stalled))
    found = {"lag": g.lag, "time_lag_seconds": g.time_lag_s, "pending": g.pending,
             "trimmed_unread": g.trimmed_unread}[metric]
    return None if found is None else float(found)


@dataclass
class Rates:
    """Counters of the previous sample, per target, for in- and out-rates."""

    seen: dict[tuple[str, bytes, bytes], tuple[int, int]] = field(default_factory=dict)
    now: dict[tuple[str, bytes, bytes], tuple[int, int]] = field(default_factory=dict)

    def rate(self, key: tuple[str, bytes, bytes], slot: int, counter: int | None) -> float | None:
        """Per second since the previous sample; None for the first, across a reset, or
        without a counter."""
        if counter is None:
            return None
        self.now[key] = (slot, counter)
        before = self.seen.get(key)
        if before is None or before[0] >= slot or counter < before[1]:
            return None
        return (counter - before[1]) / (slot - before[0])

    def done(self, target: str) -> None:
        """Keeps this cycle's counters of target (a series gone is forgotten)."""
        self.seen = {k: v for k, v in self.seen.items() if k[0] != target} | self.now
        self.now = {}


def values(rule: AlertRule, target: str, slot: int, snap: Snapshot,
           rates: Rates) -> Iterator[tuple[Series, float | None]]:
    """Each series of the snapshot the rule's globs match, with its value."""
    streams, groups = names.glob(rule.stream_glob), names.glob(rule.group_glob)
    for s in snap.streams:
        if not streams.match(s.key):
            continue
        if rule.per_stream:
            yield (s.key, b""), _stream_value(rule.metric, target, slot, s, rates)
            continue
        for g in s.groups:
            if groups.match(g.name):
                yield (s.key, g.name), _value(rule.metric, target, slot, s, g, rates)


def _stream_value(metric: str, target: str, slot: int, s: StreamSample,
                  rates: Rates) -> float | None:
    if metric == "stream_length":
        return float(s.length)
    return rates.rate((target, s.key, b""), slot, s.entries_added)


def _value(metric: str, target: str, slot: int, s: StreamSample, g: GroupSample,
           rates: Rates) -> float | None:
    if metric == "out_rate":
        return rates.rate((target, s.key, g.name), slot, g.entries_read)
    return group_value(metric, g)


@dataclass
class Changes:
    """What a cycle writes, in a few bulk statements."""

    new: list[AlertState] = field(default_factory=list)
    updated: list[AlertState] = field(default_factory=list)
    gone: list[int] = field(default_factory=list)
    events: list[AlertEvent] = field(default_factory=list)
    sends: list[tuple[AlertRule, AlertEvent, AlertState]] = field(default_factory=list)

    def save(self) -> None:
        AlertState.objects.filter(id__in=self.gone).delete()
        AlertState.objects.bulk_create(self.new, batch_size=500)
        AlertState.objects.bulk_update(self.updated, ["state", "fired_at", "value", "value_at"],
                                       batch_size=500)
        AlertEvent.objects.bulk_create(self.events, batch_size=500)
        Notification.objects.bulk_create(
            [notify.queue(rule, event, state) for rule, event, state in self.sends],
            batch_size=500)


class Evaluator:
    """Lives as long as the sampler: it remembers counters between cycles, for rates."""

    def __init__(self) -> None:
        self.rates = Rates()

    def evaluate(self, target: str, slot: int, snap: Snapshot) -> int:
        """The target's enabled rules on its snapshot (call in the sampler's transaction);
        returns the transitions written. A failure here is logged, and the samples kept."""
        try:
            with transaction.atomic():  # a savepoint: the samples stay if this fails
                return self._evaluate(target, slot, snap)
        except Exception:
            log.exception("alerts: evaluating the rules of target %s failed", target)
            return 0
        finally:
            self.rates.done(target)

    def _evaluate(self, target: str, slot: int, snap: Snapshot) -> int:
        rules = list(AlertRule.objects.filter(target=target, enabled=True))
        held = AlertState.objects.filter(rule__in=rules) if rules else AlertState.objects.none()
        states = {(s.rule_id, bytes(s.digest)): s for s in held}
        changes = Changes()
        for rule in rules:
            self._rule(rule, target, slot, snap, states, changes)
        by_id = {rule.id: rule for rule in rules}
        for state in states.values():  # matched nothing this time: gone, or the rule edited
            if not _left_out(bytes(state.stream), snap):
                _end(by_id[state.rule_id], state, slot, None, changes, "gone, or no longer matched")
        changes.save()
        if changes.events:
            transaction.on_commit(notify.wake)
        return len(changes.events)

    def _rule(self, rule: AlertRule, target: str, slot: int, snap: Snapshot,
              states: dict[tuple[int, bytes], AlertState], changes: Changes) -> None:
        matched = unavailable = 0
        test = COMPARE[rule.comparison]
        for (stream, group), value in values(rule, target, slot, snap, self.rates):
            matched += 1
            state = states.pop((rule.id, digest((target, "a", stream, group, b""))), None)
            if value is None:  # unknown is not "fine": a held state stays as it is
                unavailable += 1
            elif test(value, rule.threshold):
                _hold(rule, target, (stream, group), state, slot, value, changes)
            elif state is not None:
                _end(rule, state, slot, value, changes)
        if (matched, unavailable) != (rule.matched, rule.unavailable):
            AlertRule.objects.filter(id=rule.id).update(matched=matched, unavailable=unavailable)


def _left_out(stream: bytes, snap: Snapshot) -> bool:
    """Whether stream may be one of the streams past HISTORY_MAX_STREAMS (the last by key):
    not measured is not gone, so its state is held."""
    return snap.left_out > 0 and (not snap.streams or stream > snap.streams[-1].key)


def _hold(rule: AlertRule, target: str, series: Series, state: AlertState | None, slot: int,
          value: float, changes: Changes) -> None:
    """The condition holds on series at slot. A held state's value is written at most every
    VALUE_REFRESH seconds, or with a transition."""
    if state is None:
        state = AlertState(rule=rule, stream=series[0], group=series[1], state=PENDING,
                           digest=digest((target, "a", *series, b"")), since=slot,
                           value=value, value_at=slot)
        changes.new.append(state)
        if rule.for_seconds > 0:
            changes.events.append(_event(rule, state, PENDING, slot, value))
    elif slot - state.value_at >= VALUE_REFRESH or (
            state.state == PENDING and slot - state.since >= rule.for_seconds):
        state.value, state.value_at = value, slot
        changes.updated.append(state)
    if state.state == PENDING and slot - state.since >= rule.for_seconds:
        state.state, state.fired_at = FIRING, slot
        event = _event(rule, state, FIRING, slot, value)
        changes.events.append(event)
        changes.sends.append((rule, event, state))


def _end(rule: AlertRule, state: AlertState, slot: int, value: float | None,
         changes: Changes, note: str = "") -> None:
    """The condition no longer holds: resolved (notified) when it fired, else cleared."""
    changes.gone.append(state.id)
    kind = RESOLVED if state.state == FIRING else CLEARED
    event = _event(rule, state, kind, slot, value, note)
    changes.events.append(event)
    if kind == RESOLVED:
        changes.sends.append((rule, event, state))


def _event(rule: AlertRule, state: AlertState, kind: str, slot: int, value: float | None,
           note: str = "") -> AlertEvent:
    return AlertEvent(rule=rule, rule_name=rule.name, target=rule.target, stream=state.stream,
                      group=state.group, kind=kind, at=slot, value=value, note=note)
