"""What happens to one delivered entry: run its handler, then ack, reply or dead-letter."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from streams_admin.bus import wire
from streams_admin.bus.cluster_send import slot_of
from streams_admin.bus.coalesce import Coalescer, Command, xadd
from streams_admin.bus.config import BusConfig
from streams_admin.bus.envelope import Envelope, Keys, MalformedEntry, decode, encode, now_iso
from streams_admin.bus.idempotency import DONE, Markers
from streams_admin.bus.metrics import BusMetrics, child

log = logging.getLogger("streams_admin.bus")

Handler = Callable[..., Awaitable[Any] | Any]
Outcome = list[Command] | None

# How many of the newest dead letters a retry looks through for its own copy (cluster only).
RECOGNISE = 200


class FatalError(Exception):
    """Raised by a handler for an event that can never succeed: dead-lettered at once."""


@dataclass(frozen=True)
class Subscription:
    event_type: str
    handler: Handler
    idempotent: bool = False

    @cached_property
    def wants_envelope(self) -> bool:
        """`async def h(data, envelope)` (or any second parameter) also gets the envelope."""
        params = list(inspect.signature(self.handler).parameters.values())
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)

    async def call(self, envelope: Envelope) -> Any:
        result = (self.handler(envelope.data, envelope) if self.wants_envelope
                  else self.handler(envelope.data))
        return await result if inspect.isawaitable(result) else result


@dataclass
class Handling:
    """Processes entries of one consumer. Each outcome is the commands that end the entry
    (its ack, with a reply, marker or dead-letter entry), or None to leave it pending."""

    config: BusConfig
    keys: Keys
    metrics: BusMetrics
    group: str
    consumer: str
    acks: Coalescer  # MULTI pipelines: an ack goes with its reply or dead-letter entry
    commands: Coalescer  # plain pipelines for reads and markers
    cluster: bool = False  # cross-slot commits are two steps there (cluster.py)

    @cached_property
    def markers(self) -> Markers:
        return Markers(self.commands, self.consumer, self.config.min_idle_ms)

    async def process(self, sub: Subscription, stream: str, entry_id: str,
                      fields: dict[bytes, bytes], deliveries: int) -> Outcome:
        if deliveries > 1:
            child(self.metrics.redelivered, sub.event_type).inc()
        try:
            envelope = decode(stream, entry_id, fields, deliveries)
        except MalformedEntry as error:
            return await self.dead_letter(sub, stream, entry_id, fields, error, deliveries,
                                    "malformed")
        if deliveries > self.config.max_deliveries:
            # Not a poison entry when a copy of its event ran (a duplicate) or runs now: the
            # running copy may be this very entry, claimed from a consumer still running it.
            held = await self.markers.held(self._marker(sub, envelope)) if sub.idempotent \
                else None
            if held == DONE:
                return self._duplicate(sub, envelope)
            if held is not None:
                return await self._wait(envelope)
            # Delivered this often without an ack or a recorded failure: it kills consumers.
            stuck = RuntimeError(f"delivered {deliveries} times without finishing")
            return await self.dead_letter(sub, stream, entry_id, fields, stuck, deliveries,
                                    "max_deliveries")
        if sub.idempotent:
            return await self._once(sub, envelope, fields)
        outcome, _ = await self._run(sub, envelope, fields)
        return outcome

    async def _once(self, sub: Subscription, envelope: Envelope,
                    fields: dict[bytes, bytes]) -> Outcome:
        """Run the handler unless a copy of this event ran (or runs) already."""
        key = self._marker(sub, envelope)
        if await self.markers.settled_here(key):
            return self._duplicate(sub, envelope)
        self.markers.begin(key)
        succeeded = False
        try:
            state = await self.markers.take(key, envelope.entry_id)
            if state == DONE:
                return self._duplicate(sub, envelope)
            if state is not None:
                return await self._wait(envelope)  # another consumer runs it right now
            outcome, succeeded = await self._run(sub, envelope, fields)
            if succeeded and outcome is not None:
                outcome.insert(0, ("SET", key, DONE, "EX", self.config.idempotency_ttl_s))
            return outcome
        finally:
            self.markers.end(key, succeeded=succeeded)

    async def _wait(self, envelope: Envelope) -> Outcome:
        """Leave a copy pending while another copy of its event runs (retried after
        min_idle), and give back the delivery it spent waiting (XCLAIM ... RETRYCOUNT): only
        deliveries that ran count towards max_deliveries, so copies waiting out a long run,
        or a crashed run's lease, are never taken for a poison entry."""
        try:
            await self.commands.run([
                ("XCLAIM", envelope.stream, self.group, self.consumer, 0, envelope.entry_id,
                 "RETRYCOUNT", envelope.delivery_count - 1, "JUSTID")])
        except Exception as error:  # noqa: BLE001 - Redis away: the delivery stays spent
            log.info("giving back a waiting copy's delivery: %r", error)
        return None

    def _marker(self, sub: Subscription, envelope: Envelope) -> str:
        return self.keys.done(self.group, sub.event_type, envelope.event_id)

    def _duplicate(self, sub: Subscription, envelope: Envelope) -> Outcome:
        child(self.metrics.processed, sub.event_type, "duplicate").inc()
        return self._commit(envelope.stream, envelope.entry_id, [])

    async def _run(self, sub: Subscription, envelope: Envelope,
                   fields: dict[bytes, bytes]) -> tuple[Outcome, bool]:
        """The entry's outcome, and whether the handler succeeded."""
        started = time.perf_counter()
        try:
            result = await sub.call(envelope)
        except FatalError as error:
            return await self._failed(sub, envelope, fields, error, fatal=True), False
        except Exception as error:  # noqa: BLE001 - any handler failure is a retry
            return await self._failed(sub, envelope, fields, error, fatal=False), False
        finally:
            child(self.metrics.processing_seconds, sub.event_type).observe(
                time.perf_counter() - started)
        try:
            ops = self._reply(envelope, result)
        except (TypeError, ValueError) as error:  # the reply is not JSON: it never will be
            return await self._failed(sub, envelope, fields, error, fatal=True), False
        child(self.metrics.processed, sub.event_type, "success").inc()
        return self._commit(envelope.stream, envelope.entry_id, ops), True

    async def _failed(self, sub: Subscription, envelope: Envelope, fields: dict[bytes, bytes],
                      error: Exception, *, fatal: bool) -> Outcome:
        child(self.metrics.processed, sub.event_type, "error").inc()
        log.warning("handler failed for %s (delivery %d): %r", sub.event_type,
                    envelope.delivery_count, error, extra=_log_extra(envelope))
        if fatal or envelope.delivery_count >= self.config.max_deliveries:
            return await self.dead_letter(sub, envelope.stream, envelope.entry_id, fields, error,
                                    envelope.delivery_count,
                                    "fatal" if fatal else "max_deliveries")
        if sub.idempotent:
            done = self.keys.done(self.group, sub.event_type, envelope.event_id)
            await self.commands.run([("DEL", done)])
        return None

    def _reply(self, envelope: Envelope, result: Any) -> list[Command]:
        stream = envelope.response_stream
        if result is None or stream is None:
            return []
        if not self.keys.is_response(stream):
            log.warning("not replying to %r: not a response stream", stream,
                        extra=_log_extra(envelope))
            return []
        correlation_id = envelope.correlation_id or envelope.event_id
        reply = encode(self.keys.event_type(stream), result, correlation_id=correlation_id)
        # The expiry cleans up after a requester that gave up before the reply came.
        return [xadd(stream, reply), ("EXPIRE", stream, self.config.response_ttl_s)]

    async def dead_letter(self, sub: Subscription, stream: str, entry_id: str,
                          fields: dict[bytes, bytes], error: BaseException, deliveries: int,
                          reason: str) -> Outcome:
        record: dict[bytes | str, bytes | str] = dict((fields or {}).items())
        record.update({
            wire.ERROR: f"{type(error).__name__}: {error}", wire.REASON: reason,
            wire.DELIVERY_COUNT: str(deliveries), wire.ORIGINAL_STREAM: stream,
            wire.ORIGINAL_ID: entry_id, wire.GROUP: self.group, wire.CONSUMER: self.consumer,
            wire.DEAD_LETTERED_AT: now_iso(),
        })
        child(self.metrics.dead_lettered, sub.event_type, reason).inc()
        log.error("dead-lettered %s %s after %d deliveries (%s): %s", stream, entry_id,
                  deliveries, reason, error,
                  extra={"event_id": _text(fields, wire.EVENT_ID), "entry_id": entry_id})
        dead = self.keys.deadletter(sub.event_type)
        if deliveries > 1 and await self._copied_before(dead, stream, entry_id):
            return self._commit(stream, entry_id, [])  # step two of an interrupted two-step
        return self._commit(stream, entry_id, [xadd(dead, record)])

    async def _copied_before(self, dead: str, stream: str, entry_id: str) -> bool:
        """On a cluster, whether this entry's dead letter was written but its XACK was not
        (the second step failed, so it came back): then only the XACK is left to do. Looks
        at the newest RECOGNISE dead letters only (bounded work); an older copy is missed
        and the entry is dead-lettered twice (docs/bus.md)."""
        if not self.cluster or slot_of(dead) == slot_of(stream):
            return False  # one slot: the copy and the XACK were one script, all or nothing
        (recent,) = await self.commands.run([("XREVRANGE", dead, "+", "-", "COUNT", RECOGNISE)])
        if isinstance(recent, Exception):
            return False
        original = (stream.encode(), entry_id.encode(), self.group.encode())
        return any((f.get(wire.ORIGINAL_STREAM), f.get(wire.ORIGINAL_ID), f.get(wire.GROUP))
                   == original for _, f in recent)

    def _commit(self, stream: str, entry_id: str, ops: list[Command]) -> list[Command]:
        return [*ops, ("XACK", stream, self.group, entry_id)]


def _text(fields: dict[bytes, bytes] | None, name: bytes) -> str | None:
    value = (fields or {}).get(name)
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _log_extra(envelope: Envelope) -> dict[str, Any]:
    return {"event_id": envelope.event_id, "correlation_id": envelope.correlation_id,
            "entry_id": envelope.entry_id}


async def cancelled_quietly(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):  # we are shutting it down
        await task
