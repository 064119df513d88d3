"""History of streams, groups and consumers in the dashboard's own database (never in Redis).

Layout, for the budget (README "History"): the newest samples are narrow rows (`Sample`,
minutes old at most); every completed 10-minute period of a series is packed into one row
(`Chunk`, resolution 10 s) and folded into that hour's row of minute points (resolution
60 s). A row per point would cost ~90 bytes with its index on SQLite, ~1 GB for 1,000 groups
over 7 days; packed columns of deltas cost a few bytes a point.
"""

from __future__ import annotations

from django.db import models


class Series(models.Model):
    """One stream, group or consumer of one target. Names are bytes in Redis and stay bytes
    here (BinaryField, as the audit log's key): a URL token would be a second encoding to
    undo, and text would lose invalid UTF-8. They are not indexed (a key may be longer than
    PostgreSQL's 2.7 kB index row): `digest` (SHA-256 of the whole identity) is."""

    STREAM, GROUP, CONSUMER = "s", "g", "c"
    digest = models.BinaryField(max_length=32, unique=True)
    target = models.CharField(max_length=63)
    kind = models.CharField(max_length=1, choices=[(STREAM, "stream"), (GROUP, "group"),
                                                   (CONSUMER, "consumer")])
    stream = models.BinaryField()
    group = models.BinaryField(default=b"")
    consumer = models.BinaryField(default=b"")
    last_seen = models.IntegerField(default=0, db_index=True)  # epoch s, as of a compaction

    class Meta:
        indexes = [models.Index(fields=["target", "kind"])]

    def __str__(self) -> str:
        return f"{self.target} {self.kind} {bytes(self.stream)!r} {bytes(self.group)!r}"


class Sample(models.Model):
    """One sample of a series, until its 10-minute period is packed into a Chunk. Columns a
    kind has not are NULL (one byte on SQLite). Ages and times in milliseconds."""

    series = models.ForeignKey(Series, on_delete=models.CASCADE, db_index=False)
    t = models.IntegerField(db_index=True)  # epoch seconds, a multiple of the interval
    length = models.BigIntegerField(null=True)
    added = models.BigIntegerField(null=True)  # entries-added: a counter
    read = models.BigIntegerField(null=True)  # entries-read: a counter
    lag = models.BigIntegerField(null=True)
    time_lag_ms = models.BigIntegerField(null=True)
    pending = models.BigIntegerField(null=True)
    oldest_ms = models.BigIntegerField(null=True)  # age of the oldest pending entry
    consumers = models.IntegerField(null=True)
    trimmed = models.BigIntegerField(null=True)  # trimmed before the group read them
    idle_ms = models.BigIntegerField(null=True)
    inactive_ms = models.BigIntegerField(null=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["series", "t"], name="sample_once")]

    def __str__(self) -> str:
        return f"sample of series {self.series_id} at {self.t}"


class Chunk(models.Model):
    """Points of one series at one resolution from `start`: zlib'd JSON columns of deltas."""

    series = models.ForeignKey(Series, on_delete=models.CASCADE, db_index=False)
    resolution = models.SmallIntegerField()  # seconds between points: 10 (raw) or 60
    start = models.IntegerField(db_index=True)  # epoch seconds
    data = models.BinaryField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["series", "resolution", "start"],
                                               name="chunk_once")]

    def __str__(self) -> str:
        return f"chunk of series {self.series_id} at {self.resolution} s from {self.start}"


class SamplerLease(models.Model):
    """The one sampler of a deployment holds this row (a lease renewed every cycle, in the
    transaction that writes its samples): plain UPDATEs, the same on SQLite and PostgreSQL."""

    name = models.CharField(max_length=20, unique=True)
    holder = models.CharField(max_length=200, blank=True)
    renewed_at = models.FloatField(default=0.0)  # epoch s
    expires_at = models.FloatField(default=0.0)

    def __str__(self) -> str:
        return f"{self.name} lease held by {self.holder or 'nobody'}"


class SamplerStatus(models.Model):
    """What the sampler last did for a target, for a page to show truthfully."""

    target = models.CharField(max_length=63, unique=True)
    last_attempt = models.FloatField(default=0.0)
    last_success = models.FloatField(null=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.FloatField(null=True)
    streams = models.IntegerField(default=0)
    left_out = models.IntegerField(default=0)
    cycle_ms = models.FloatField(default=0.0)

    def __str__(self) -> str:
        return f"sampler status of {self.target}"
