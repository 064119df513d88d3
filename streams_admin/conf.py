"""The app's options: settings.STREAMS_ADMIN over these defaults, read at call time."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from streams_admin import targets

DEFAULTS: dict[str, Any] = {
    "KEY_PATTERN": "*",  # the streams the dashboard covers: others are never shown or changed
    "SOCKET_TIMEOUT": 2.0,  # seconds; a slow Redis gives the banner, not a hang
    "CONNECT_TIMEOUT": 1.0,
    "PAGE_SIZE": 50,
    "PAGE_SIZES": (20, 50, 100, 500),
    "OVERVIEW_PAGE_SIZE": 50,
    "MAX_STREAMS": 50_000,  # SCAN stops here; the overview says so
    "SCAN_COUNT": 1000,
    "LAG_THRESHOLD": 100,  # a group with more undelivered entries is "lagging"
    # A stream or group page counts, up to this many, the entries after a group's
    # last-delivered ID when Redis cannot give its lag (deletions past it, or Redis < 7).
    "LAG_COUNT_LIMIT": 1000,
    # A consumer idle longer while holding entries is flagged: a live one reads (and so resets
    # its idle time) every few seconds even when there is nothing new.
    "IDLE_THRESHOLD_MS": 60 * 1000,
    "POISON_DELIVERIES": 5,  # a pending entry delivered this often is a poison suspect
    "HEALTH_PENDING_SAMPLE": 10,  # oldest pending entries per group checked for poison
    "MAX_CONSUMERS": 1000,  # XINFO CONSUMERS is skipped above this (it has no COUNT)
    "READ_ONLY": False,  # every action refused, and no action shown
    "BUS_PREFIX": "agent:stream:",  # where the bus writes: dead letters live under it
    "ACTION_CHUNK": 1000,  # entries per Redis call in bulk actions
    "ACTION_BUDGET": 20_000,  # entries one request may handle; a longer job continues
    "MIN_IDLE_MS": 10_000,  # claim guard: an entry a live consumer took just now is not stolen
    "AUDIT_SAMPLE": 100,  # IDs kept in an audit row when an action touches more
    "PREVIEW_CHARS": 200,
    "TAIL_MAX_ROWS": 500,  # rows a tail page keeps, and the most it catches up on
    "TAIL_QUEUE_BYTES": 4 << 20,  # rows queued per socket (characters) before the oldest drop
    "TAIL_MAX_STREAMS": 100,  # streams one firehose follows
    "STATS_INTERVAL": 1.0,  # seconds between live count updates
    "ENTRY_PREVIEW_CHARS": 10_000,
    # What one entry may put on a page, whatever Redis holds: rows (lists, tail, dead letters)
    # show ROW_FIELDS fields and ROW_BYTES bytes of names and values (PREVIEW_CHARS of any one);
    # the entry page reads and shows ENTRY_FIELDS fields and ENTRY_BYTES. More is a download.
    "ROW_FIELDS": 20,
    "ROW_BYTES": 4096,
    "ENTRY_FIELDS": 1000,
    "ENTRY_BYTES": 256 * 1024,
    "SEARCH_BUDGET": 10_000,  # entries one stream-page search request looks at, at most
    # Trim and set-ID previews: Redis can only count entries by walking them (~3 µs each), so
    # a preview walks this many at most (then says "≥ N"), in calls that stop after
    # PREVIEW_STEP entries or PREVIEW_STEP_MS, so other clients wait no longer than that.
    "PREVIEW_BUDGET": 100_000,
    "PREVIEW_STEP": 10_000,
    "PREVIEW_STEP_MS": 5,
    # Seconds an overview computation serves later requests for the same page; concurrent
    # requests always share the one in flight. The page says "as of" when it was taken.
    "OVERVIEW_FRESHNESS": 2.0,
    # History (README "History"): `manage.py sampler` samples every target this often,
    # keeps those points RAW_KEEP seconds, minute points MINUTE_KEEP seconds (ranges up to a
    # day read them: kept longer, they cost space and serve no chart) and 10-minute points
    # TEN_MINUTE_KEEP seconds (longer ranges read them).
    "SAMPLE_INTERVAL": 10,
    "HISTORY_RAW_KEEP": 6 * 3600,
    "HISTORY_MINUTE_KEEP": 86400,
    "HISTORY_TEN_MINUTE_KEEP": 7 * 86400,
    "HISTORY_MAX_STREAMS": 10_000,  # streams sampled per target; the status says how many not
    "HISTORY_MAX_POINTS": 2000,  # points per series a chart gets, whatever the range
    # Trend health (trends/health.py): a group's lag slope over the samples of this many
    # seconds: 30 samples at the default interval, so a worker restart shows within minutes.
    "TREND_WINDOW": 300,
    # Alerts (README "Alerts"): webhook POSTs time out after ALERT_TIMEOUT s; a failed one is
    # tried again after ALERT_RETRY_MIN s, doubling up to ALERT_RETRY_MAX, until ALERT_GIVE_UP
    # s after it was queued. PUBLIC_URL (https://host/) makes the links in them absolute.
    "ALERT_TIMEOUT": 5.0,
    "ALERT_RETRY_MIN": 10.0,
    "ALERT_RETRY_MAX": 600.0,
    "ALERT_GIVE_UP": 6 * 3600.0,
    "PUBLIC_URL": "",
}


def get(name: str) -> Any:
    if name == "KEY_PATTERN" and (pattern := targets.current().key_pattern):
        return pattern
    return {**DEFAULTS, **getattr(settings, "STREAMS_ADMIN", {})}[name]


def redis_url() -> str:
    """The URL of the target being served (REDIS_URL's when there is only that)."""
    return targets.current().url


def redis_options() -> dict[str, Any]:
    return dict(targets.current().options)
