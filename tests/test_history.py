"""The history's storage and read API on hand-built snapshots: names stay bytes, rates come
from counters, a missing sample is a gap (None, never 0), packing into chunks and minute
points keeps what the charts need, retention deletes in bounded batches, points are bounded.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from streams_admin.trends import history, storage
from streams_admin.trends.measure import ConsumerSample, GroupSample, Snapshot, StreamSample
from streams_admin.trends.models import Chunk, Sample, Series

pytestmark = pytest.mark.django_db
T0 = 1_800_000_000  # a multiple of 3,600: the periods start on it
KEY, GROUP, CONSUMER = b"orders\xff<b>", b"billing\x00", b"worker \xe9"


def snap(t: int, *, added: int, read: int, lag: int, pending: int = 0,
         oldest: float | None = None, consumers: int = 1) -> Snapshot:
    worker = tuple(ConsumerSample(CONSUMER + bytes([i]), pending, 500, 700)
                   for i in range(consumers))
    group = GroupSample(GROUP, read, lag, lag / 10, pending, oldest, 0, worker, (),
                        consumers)
    return Snapshot(float(t), (StreamSample(KEY, added, added, f"{t}-0", (group,)),), 0)


def write(t: int, **fields: int) -> None:
    storage.write("default", t, snap(t, **fields), {})


def steady(start: int, end: int, lag: int = 3) -> None:
    """5 entries/s in, 4/s out, every 10 s from start to end (excluded)."""
    for t in range(start, end, 10):
        write(t, added=(t - T0) * 5, read=(t - T0) * 4, lag=lag)


def test_a_group_reads_back_as_sampled_with_its_rates_and_bytes_names(settings):
    steady(T0, T0 + 60)
    group = history.history("default", KEY, GROUP, range="15m", now=T0 + 50)
    assert group.step == 10 and len(group.times) == 91 and group.times[-1] == T0 + 50
    assert group.values["lag"][-6:] == (3,) * 6
    assert group.values["time_lag_s"][-1] == 0.3
    assert group.values["out_rate"][-5:] == (4.0,) * 5
    stream = history.history("default", KEY, range="15m", now=T0 + 50)
    assert stream.values["in_rate"][-5:] == (5.0,) * 5
    assert stream.values["length"][-1] == 250
    consumer = history.history("default", KEY, GROUP, CONSUMER + b"\x00", "15m", now=T0 + 50)
    assert consumer.values["idle_s"][-1] == 0.5
    assert history.consumers_of("default", KEY, GROUP) == [CONSUMER + b"\x00"]
    assert history.history("other", KEY, GROUP, range="15m", now=T0 + 50).values == {}


def test_a_missing_sample_is_a_gap_not_a_zero():
    steady(T0, T0 + 30)
    steady(T0 + 70, T0 + 100)  # Redis was down from T0 + 30 to T0 + 60
    group = history.history("default", KEY, GROUP, range="15m", now=T0 + 90)
    lag = dict(zip(group.times, group.values["lag"], strict=True))
    rate = dict(zip(group.times, group.values["out_rate"], strict=True))
    assert [lag[T0 + s] for s in range(0, 100, 10)] == [3, 3, 3, None, None, None, None, 3, 3, 3]
    assert rate[T0 + 70] is None and rate[T0 + 80] == 4.0  # no rate across the gap
    assert lag[T0 - 10] is None  # before the first sample


def test_packing_keeps_what_the_charts_need():
    steady(T0, T0 + 3610)
    steady(T0 + 3620, T0 + 7200)
    write(T0 + 3610, added=3610 * 5, read=3610 * 4, lag=900, pending=7, oldest=12.5)
    before = history.history("default", KEY, GROUP, range="1h", now=T0 + 7190)
    while storage.compact(T0 + 7200):
        pass
    assert Sample.objects.count() == 0  # every completed period packed
    assert history.history("default", KEY, GROUP, range="1h", now=T0 + 7190) == before
    day = history.history("default", KEY, GROUP, range="24h", now=T0 + 7190)
    assert day.step == 60
    values = dict(zip(day.times, zip(day.values["lag"], day.values["worst_lag"],
                                     day.values["worst_oldest_pending_s"],
                                     day.values["out_rate"], strict=True), strict=True))
    assert values[T0 + 3600] == (3, 900, 12.5, 4.0)  # the spike stays, as the worst
    assert values[T0 + 3660] == (3, 3, None, 4.0)


def test_recent_samples_join_the_packed_ones():
    steady(T0, T0 + 1200)
    storage.compact(T0 + 900)  # packs the first period only
    steady(T0 + 1200, T0 + 1260)
    day = history.history("default", KEY, GROUP, range="24h", now=T0 + 1250)
    assert day.values["lag"][-21:] == (3,) * 21
    assert day.values["out_rate"][-1] == 4.0


@pytest.mark.parametrize("range_", ["24h", "7d"])
def test_samples_not_packed_yet_read_as_their_packed_points_will(range_):
    """The newest period's samples are downsampled by the database (history._buckets) as
    compaction will pack them (points.downsample): the same values, worst values, rates."""
    steady(T0, T0 + 610)
    write(T0 + 610, added=610 * 5, read=610 * 4, lag=900, pending=7, oldest=12.5)  # a spike
    steady(T0 + 620, T0 + 1200)
    storage.compact(T0 + 600)  # the first period packed, the second still samples
    before = history.history("default", KEY, GROUP, range=range_, now=T0 + 1190)
    assert Sample.objects.filter(t__gte=T0 + 600).count() == 3 * 60  # stream, group, worker
    while storage.compact(T0 + 1200):
        pass
    assert not Sample.objects.exists()
    after = history.history("default", KEY, GROUP, range=range_, now=T0 + 1190)
    assert before == after
    worst = dict(zip(after.times, after.values["worst_lag"], strict=True))
    assert worst[T0 + 600] == 900 and after.values["out_rate"][-1] == 4.0


def test_points_are_bounded_whatever_the_range(settings):
    for name, seconds in history.RANGES.items():
        found = history.history("default", KEY, GROUP, range=name, now=T0)
        assert len(found.times) <= 2000 and found.times[-1] - found.times[0] < seconds + 600
    steady(T0, T0 + 600)
    six = history.history("default", KEY, GROUP, range="6h", now=T0 + 590)
    assert six.step == 20 and six.values["worst_lag"][-1] == 3


def test_retention_deletes_in_bounded_batches(settings, monkeypatch):
    settings.STREAMS_ADMIN = {"HISTORY_RAW_KEEP": 3600, "HISTORY_MINUTE_KEEP": 7200}
    monkeypatch.setattr(storage, "PURGE_BATCH", 2)
    steady(T0, T0 + 3 * 3600, lag=1)
    while storage.compact(T0 + 3 * 3600):
        pass
    now = T0 + 4 * 3600
    assert storage.purge(now) == 4  # two of each resolution
    while storage.purge(now):
        pass
    raw = Chunk.objects.filter(resolution=storage.RAW).values_list("start", flat=True)
    minute = Chunk.objects.filter(resolution=storage.MINUTE).values_list("start", flat=True)
    assert min(raw) >= now - 3600 - storage.PERIOD and min(minute) >= now - 7200 - 3600
    assert Series.objects.count() == 3


def test_a_chunk_is_a_few_bytes_a_point():
    steady(T0, T0 + 3600)
    while storage.compact(T0 + 3600):
        pass
    group = Series.objects.get(kind=Series.GROUP)
    raw = sum(len(c.data) for c in Chunk.objects.filter(series=group, resolution=storage.RAW))
    assert raw / 360 < 10  # bytes per sample of 7 metrics


def test_seven_days_read_ten_minute_points_folded_by_compaction():
    steady(T0, T0 + 1210)  # an hour: six periods
    write(T0 + 1210, added=1210 * 5, read=1210 * 4, lag=900, pending=7, oldest=12.5)  # a spike
    steady(T0 + 1220, T0 + 3600)
    steady(T0 + 5400, T0 + 7200)  # Redis was down from T0 + 3600 to T0 + 5400
    while storage.compact(T0 + 7200):
        pass
    group = Series.objects.get(kind=Series.GROUP)
    days = Chunk.objects.filter(series=group, resolution=storage.TEN)
    assert [c.start for c in days] == [T0 - T0 % storage.DAY]  # one row for the day
    week = history.history("default", KEY, GROUP, range="7d", now=T0 + 7190)
    assert week.step == 600 and len(week.times) == 1009
    values = dict(zip(week.times, zip(week.values["lag"], week.values["worst_lag"],
                                      week.values["worst_oldest_pending_s"],
                                      week.values["out_rate"], strict=True), strict=True))
    assert values[T0 + 1200] == (3, 900, 12.5, 4.0)  # the spike stays, as the worst
    assert values[T0 + 1800] == (3, 3, None, 4.0)
    assert [values[T0 + s][0] for s in range(3000, 6000, 600)] == [3, None, None, None, 3]
    assert values[T0 + 5400][3] is None  # no rate across the gap
    assert values[T0 - 600] == (None, None, None, None)  # before the first sample


def test_a_late_sample_keeps_its_periods_worst_in_the_ten_minute_point():
    steady(T0, T0 + 600)
    storage.compact(T0 + 600)
    write(T0 + 605, added=605 * 5, read=605 * 4, lag=1)  # sampled before, packed after
    write(T0 + 700, added=700 * 5, read=700 * 4, lag=2)
    storage.compact(T0 + 1200)
    week = history.history("default", KEY, GROUP, range="7d", now=T0 + 1190)
    values = dict(zip(week.times, week.values["worst_lag"], strict=True))
    assert values[T0] == 3 and values[T0 + 600] == 2


def test_retention_of_ten_minute_points(settings):
    settings.STREAMS_ADMIN = {"HISTORY_TEN_MINUTE_KEEP": 2 * 86400}
    for day in range(4):
        steady(T0 + day * 86400, T0 + day * 86400 + 600)
    while storage.compact(T0 + 4 * 86400):
        pass
    now = T0 + 4 * 86400
    while storage.purge(now):
        pass
    days = Chunk.objects.filter(resolution=storage.TEN).values_list("start", flat=True)
    assert min(days) >= now - 2 * 86400 - storage.DAY and len(set(days)) == 2
    week = history.history("default", KEY, GROUP, range="7d", now=now)
    lag = dict(zip(week.times, week.values["lag"], strict=True))
    assert [lag[T0 + day * 86400] for day in range(4)] == [None, None, 3, 3]
    assert Series.objects.count() == 3  # seen lately: kept


def test_history_from_before_the_tier_is_folded_into_it():
    """Minute chunks written before the 10-minute tier existed: the backfill (migration 0006)
    gives the 7-day chart what compaction would have."""
    steady(T0, T0 + 2410)
    write(T0 + 2410, added=2410 * 5, read=2410 * 4, lag=700)
    steady(T0 + 2420, T0 + 3600)
    steady(T0 + 4200, T0 + 7200)
    while storage.compact(T0 + 7200):
        pass
    expected = history.history("default", KEY, GROUP, range="7d", now=T0 + 7190)
    Chunk.objects.filter(resolution=storage.TEN).delete()
    assert history.history("default", KEY, GROUP, range="7d", now=T0 + 7190).values == {}
    ids = list(Series.objects.values_list("id", flat=True))
    assert storage.backfill(Chunk, ids) == 3  # a day's row for each series
    assert history.history("default", KEY, GROUP, range="7d", now=T0 + 7190) == expected
    assert 700 in expected.values["worst_lag"] and None in expected.values["lag"]
    assert storage.backfill(Chunk, ids) == 3  # again: merged, nothing doubled
    assert history.history("default", KEY, GROUP, range="7d", now=T0 + 7190) == expected


@pytest.mark.skipif(os.environ.get("DATABASE_URL", "").startswith("postgres"),
                    reason="this is the run on PostgreSQL")
def test_this_module_on_postgresql(postgres_url):
    """history.py reads with plain SQL: every test above on PostgreSQL too (the suite's own
    database is SQLite)."""
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          __file__], env={**os.environ, "DATABASE_URL": postgres_url},
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:]
    assert " passed" in run.stdout and " failed" not in run.stdout
