"""Demo data shaped by the spec: envelopes, healthy / dead / lagging groups, hostile content.

Seeding never touches a stream that already exists, so running it twice (or against a
Redis with real data) duplicates nothing and destroys nothing.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import redis
from redis.typing import EncodableT, FieldT

from streams_admin.bus import wire

log = logging.getLogger(__name__)

PREFIX = "agent:stream:"
HOSTILE_KEY = PREFIX + "hostile:<script>alert('key')</script>"
BINARY_KEY = PREFIX.encode() + b"binary:\xff\xfe/\x00key"


def envelope(event_type: str, data: dict, at_ms: int | None = None) -> dict[FieldT, EncodableT]:
    moment = datetime.fromtimestamp(at_ms / 1000, UTC) if at_ms else datetime.now(UTC)
    values = (str(uuid.uuid4()), event_type, moment.isoformat(), json.dumps(data))
    return {wire.name(n): v for n, v in zip(wire.ENVELOPE_FIELDS, values, strict=True)}


def task(i: int) -> dict:
    return {"task_id": f"task-{i}", "type": random.choice(["ingest", "summarise", "index"]),
            "priority": random.choice(["low", "medium", "high"]), "payload": {"attempt": 1}}


def document(i: int) -> dict:
    ok = i % 9
    return {"doc_id": f"doc-{i}", "status": "success" if ok else "failed", "chunks": i % 40,
            **({} if ok else {"error": "parser timeout"})}


def query(i: int) -> dict:
    return {"query_id": f"q-{i}", "session_id": f"s-{i % 17}", "response": "42",
            "duration_ms": random.randint(5, 3000)}


def notification(i: int) -> dict:
    return {"user_id": f"user-{i % 50}", "type": random.choice(["email", "sms", "push"]),
            "status": random.choice(["sent", "sent", "sent", "failed"])}


MAKERS = {"task.created": task, "document.processed": document,
          "query.completed": query, "notification.sent": notification}


def _fill(r: redis.Redis, event_type: str, count: int, span_ms: int) -> bool:
    key = PREFIX + event_type
    if r.exists(key):
        return False
    start = int(time.time() * 1000) - span_ms
    pipe = r.pipeline(transaction=False)
    for i in range(count):
        at = start + i * span_ms // count
        pipe.xadd(key, envelope(event_type, MAKERS[event_type](i), at), id=f"{at}-{i}")
    pipe.execute()
    return True


def _group(r: redis.Redis, key: str | bytes, group: str | bytes, start: str = "0") -> None:
    try:
        r.xgroup_create(key, group, id=start, mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _consume(r: redis.Redis, key: str | bytes, group: str, consumer: str | bytes,
             count: int, ack: bool) -> list[bytes]:
    # redis-py types the consumer str; the hostile demo's bytes name goes through as well.
    replies: Any = r.xreadgroup(group, consumer, {key: ">"}, count=count) or []  # type: ignore[arg-type]
    ids = [entry_id for _, entries in replies for entry_id, _ in entries]
    if ack and ids:
        r.xack(key, group, *ids)
    return ids


def seed(r: redis.Redis) -> list[str]:
    """Create whatever demo streams are missing; returns what it made."""
    made = []
    hour = 3_600_000
    if _fill(r, "task.created", 600, hour):
        key = PREFIX + "task.created"
        _group(r, key, "agent-group")
        _consume(r, key, "agent-group", "agent-1", 600, ack=True)  # healthy, caught up
        _group(r, key, "billing-group")
        _consume(r, key, "billing-group", "billing-1", 560, ack=True)
        held = _consume(r, key, "billing-group", "billing-7", 25, ack=False)  # then it died
        for n, entry_id in enumerate(held[:4]):  # redelivered again and again: poison
            r.xclaim(key, "billing-group", "billing-7", 0, [entry_id], retrycount=6 + n * 3)
        r.xdel(key, held[-1])  # its data is gone, its pending record stays
        made.append(key)
    if _fill(r, "document.processed", 2000, 2 * hour):
        key = PREFIX + "document.processed"
        _group(r, key, "analytics-group")
        _consume(r, key, "analytics-group", "analytics-1", 300, ack=True)  # lagging 1,700
        _group(r, key, "search-indexer")
        _consume(r, key, "search-indexer", "indexer-1", 2000, ack=True)
        made.append(key)
        made += _dead_letters(r, key)
    for event_type, count in (("query.completed", 250), ("notification.sent", 400)):
        if _fill(r, event_type, count, hour):
            _group(r, PREFIX + event_type, "agent-group")
            _consume(r, PREFIX + event_type, "agent-group", "agent-1", count, ack=True)
            made.append(PREFIX + event_type)
    made += _responses(r) + _hostile(r)
    return made


def _dead_letters(r: redis.Redis, key: str) -> list[str]:
    """What the bus's worker leaves after giving up on the failed documents: the entry's own
    fields plus why, as the bus writes them (the Dead letters screen re-drives them)."""
    dead = wire.dead_letter_key(PREFIX, "document.processed")
    if r.exists(dead):
        return []
    rows: Any = r.xrange(key, count=100)  # raw pairs: see _as_dict
    entries = [(entry_id, _as_dict(fields)) for entry_id, fields in rows]
    failed = [(entry_id, fields) for entry_id, fields in entries
              if b'"failed"' in fields.get(wire.DATA, b"")][:5]
    for entry_id, fields in failed:
        r.xadd(dead, {**fields, wire.ERROR: b"TimeoutError: parser timeout",  # type: ignore[dict-item]  # redis-py's dict type is invariant
                      wire.REASON: b"max_deliveries", wire.DELIVERY_COUNT: b"5",
                      wire.ORIGINAL_STREAM: key.encode(), wire.ORIGINAL_ID: entry_id,
                      wire.GROUP: b"analytics-group", wire.CONSUMER: b"analytics-1",
                      wire.DEAD_LETTERED_AT: datetime.now(UTC).isoformat()})
    return [dead] if failed else []


def _as_dict(fields: dict[bytes, bytes] | list[bytes]) -> dict[bytes, bytes]:
    # The dashboard's client keeps XRANGE's raw [name, value, ...] pairs; a plain one, dicts.
    if isinstance(fields, dict):
        return fields
    return dict(zip(fields[::2], fields[1::2], strict=True))


def _responses(r: redis.Redis) -> list[str]:
    key = wire.response_key(PREFIX, "5f0c2a2e-demo")
    if r.exists(key):
        return []
    r.xadd(key, envelope("response", {"result": {"doc_id": "doc-7", "chunks": 12},
                                      "status": "success"}))
    r.expire(key, 24 * 3600)
    return [key]


def _hostile(r: redis.Redis) -> list[str]:
    made = []
    if not r.exists(HOSTILE_KEY):
        r.execute_command(
            "XADD", HOSTILE_KEY, "*",
            "<b>field</b>", "<script>alert('value')</script>",
            "dup", "first", "dup", "second",
            "binary", b"\x00\x01\xff\xfe raw bytes \x80",
            "invalid-utf8", b"caf\xe9 \xc3\x28",
            "emoji", "stream ✓ 流 🚀",
            "json", json.dumps({"html": "<img src=x onerror=alert(1)>"}),
        )
        script = {"x": "</pre><script>alert(2)</script>"}
        r.xadd(HOSTILE_KEY, envelope("<svg onload=alert(1)>", script))
        r.xadd(HOSTILE_KEY, {"big": "x" * (1024 * 1024)})  # 1 MB value
        _group(r, HOSTILE_KEY, "<i>group</i>")
        _consume(r, HOSTILE_KEY, "<i>group</i>", b"consumer-\xff<u>", 2, ack=False)
        made.append(HOSTILE_KEY)
    if not r.exists(BINARY_KEY):
        r.xadd(BINARY_KEY, {b"\xff\x00": b"\xde\xad\xbe\xef"})
        _group(r, BINARY_KEY, b"grp/\xff")
        made.append(repr(BINARY_KEY))
    return made


# The group that keeps up with each stream's traffic: the healthy one `seed` made there.
KEEPING_UP = {"task.created": ("agent-group", "agent-1"),
              "document.processed": ("search-indexer", "indexer-1"),
              "query.completed": ("agent-group", "agent-1"),
              "notification.sent": ("agent-group", "agent-1")}


def traffic(r: redis.Redis, rate: float = 5.0) -> None:
    """Publish events for ever and let a healthy consumer keep up (the demo's live traffic).

    Supervised: whatever happens to Redis meanwhile (a restart, a group destroyed or a stream
    deleted from the dashboard) is logged and the loop goes on after a pause, never dies."""
    i, pause = 10_000, 0.5
    while True:
        try:
            publish_one(r, i)
        except redis.RedisError as exc:
            log.warning("demo traffic: %s (retrying in %.1f s)", exc, pause)
            time.sleep(pause)
            pause = min(pause * 2, 10.0)
            continue
        i, pause = i + 1, 0.5
        time.sleep(1 / rate)


def publish_one(r: redis.Redis, i: int) -> None:
    event_type = random.choice(list(MAKERS))
    key = PREFIX + event_type
    r.xadd(key, envelope(event_type, MAKERS[event_type](i)), maxlen=10_000, approximate=True)
    group, consumer = KEEPING_UP[event_type]
    try:
        _consume(r, key, group, consumer, 100, ack=True)
    except redis.ResponseError as exc:
        if not str(exc).startswith("NOGROUP"):
            raise
        # Destroyed from the dashboard (or the stream deleted with it): the healthy consumer
        # comes back, caught up from now on, as a restarted service would.
        log.info("demo traffic: %s had no group %s; created it again", key, group)
        _group(r, key, group, start="$")
