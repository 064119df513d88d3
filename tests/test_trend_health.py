"""Trend health from the stored history: "falling behind" / "catching up" from the lag's slope,
gaps never make a trend, a lag counted to its limit gives none, many groups in a few queries.
Hand-built samples in the real database (the sampler's own writer); the worker and pages:
tests/test_stalled.py."""

from __future__ import annotations

import pytest

from streams_admin.trends import health, storage
from streams_admin.trends.measure import GroupSample, Snapshot, StreamSample

pytestmark = pytest.mark.django_db
T0 = 1_800_000_000  # a multiple of 3,600: periods start on it
KEY, GROUP = b"orders\xff", b"billing\x00"


def write(t: int, lags: dict[bytes, int], trimmed: int | None = 0) -> None:
    """One sample at t of KEY's groups, each with its lag (trimmed None: a counted lag)."""
    groups = tuple(GroupSample(name, None, lag, 0.0, 0, None, trimmed, (), (), 1)
                   for name, lag in lags.items())
    storage.write("default", t, Snapshot(float(t), (StreamSample(KEY, 1, 1, "1-0", groups),),
                                         0), {})


def trend(now: int, group: bytes = GROUP) -> health.Trend:
    return health.trend("default", KEY, group, now=now)


def test_rising_lag_is_falling_behind_and_falling_lag_catching_up_with_time_to_drain():
    for i in range(10):  # 20 more every 10 s, with a saw-tooth of +-3 around the line
        write(T0 + 10 * i, {GROUP: 100 + 20 * i + (3 if i % 2 else -3)})
    rising = trend(T0 + 95)
    assert rising.state == health.FALLING_BEHIND and rising.label == "falling behind +2/s"
    assert "least-squares fit of 10 samples over 1m 30s" in rising.detail
    assert rising.short == "+2/s"  # an overview row on a small screen
    for i in range(10, 20):  # then 30 fewer every 10 s: 10 left at the last sample
        write(T0 + 10 * i, {GROUP: 280 - 30 * (i - 10) - 3})
    falling = trend(T0 + 195)  # the window's newer half turned: its line rules
    assert falling.state == health.CATCHING_UP and falling.lag == 7
    assert falling.per_second == pytest.approx(-3) and falling.points == 10
    assert falling.label == "catching up, ≈ 2 s to drain" and falling.short == "≈ 2 s"
    for i in range(20, 40):  # the backlog back, draining slowly: 3 a minute less each 10 s
        write(T0 + 10 * i, {GROUP: 1900 - 3 * (i - 20)})
    slow = trend(T0 + 395)
    assert slow.state == health.CATCHING_UP and slow.lag == 1843
    assert slow.label == "catching up, ≈ 1.7 h to drain"  # 6,143 s


def test_a_noisy_flat_lag_is_steady_and_zero_is_caught_up():
    for i, lag in enumerate([40, 55, 38, 61, 44, 52, 39, 58, 47, 50]):
        write(T0 + 10 * i, {GROUP: lag, b"idle": 0})
    assert trend(T0 + 90).state == health.STEADY
    assert trend(T0 + 90, b"idle").label == "caught up"


def test_gaps_are_neither_zeros_nor_bridged():
    for i in range(6):  # caught up, then the sampler could not reach Redis for 3 minutes
        write(T0 + 10 * i, {GROUP: 0})
    for i in range(24, 27):  # 300 behind since: 3 samples are no trend yet
        write(T0 + 10 * i, {GROUP: 300})
    after = trend(T0 + 265)
    assert after.state == health.UNKNOWN and after.label == "no trend yet"
    assert "3 samples since the last gap" in after.why
    write(T0 + 270, {GROUP: 300})  # a 4th: the flat line after the gap, not 0 -> 300
    assert trend(T0 + 275).state == health.STEADY


def test_no_recent_sample_is_no_trend():
    for i in range(10):
        write(T0 + 10 * i, {GROUP: 10 * i + 10})
    assert trend(T0 + 95).state == health.FALLING_BEHIND
    stale = trend(T0 + 95 + 40)  # the sampler stopped 4 intervals ago
    assert stale.state == health.UNKNOWN and "sampler running" in stale.why
    assert trend(T0 + 95, b"never sampled").state == health.UNKNOWN


def test_a_lag_counted_to_its_limit_gives_no_slope(settings):
    settings.STREAMS_ADMIN = {"LAG_COUNT_LIMIT": 50}
    for i in range(6):  # Redis 6.2: counted lags (trimmed None), up to the limit
        write(T0 + 10 * i, {GROUP: min(50, 20 * i)}, trimmed=None)
    capped = trend(T0 + 55)
    assert capped.state == health.UNKNOWN and "at least 50" in capped.why
    for i in range(6):
        write(T0 + 60 + 10 * i, {GROUP: 45 - 5 * i}, trimmed=None)  # under it again
    assert trend(T0 + 115).state == health.CATCHING_UP


def test_packed_and_fresh_samples_read_as_one_series():
    for i in range(60):  # 10 minutes: the first period gets packed into a chunk
        write(T0 + 10 * i, {GROUP: 1000 + 5 * i})
    assert storage.compact(T0 + 600) == 2  # the stream's series and its group's
    found = trend(T0 + 595)
    assert found.state == health.FALLING_BEHIND and found.points == 30  # TREND_WINDOW: 5 min
    assert found.per_second == pytest.approx(0.5)


def test_many_groups_cost_three_queries(django_assert_num_queries):
    groups = {f"g{n}".encode(): n for n in range(300)}
    for i in range(6):
        write(T0 + 10 * i, {name: lag * (i + 1) for name, lag in groups.items()})
    with django_assert_num_queries(3):
        found = health.trends("default", [(KEY, name) for name in groups], now=T0 + 55)
    assert found[KEY, b"g7"].per_second == pytest.approx(0.7)
    assert found[KEY, b"g0"].state == health.CAUGHT_UP


@pytest.mark.parametrize(("per_second", "text"), [
    (12.4, "+12/s"), (-1.5, "-1.5/s"), (1.0, "+1/s"), (0.5, "+30/min"), (-0.01, "-0.6/min")])
def test_rates_read_as_people_say_them(per_second, text):
    assert health.rate(per_second) == text


@pytest.mark.parametrize(("seconds", "text"), [
    (5, "5 s"), (240, "4 min"), (7200, "2 h"), (6143, "1.7 h"), (86400 * 3, "3 d"),
    (0.2, "1 s")])
def test_drain_times_read_as_people_say_them(seconds, text):
    assert health.drain(seconds) == text
