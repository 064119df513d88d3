"""READ: is a group catching up or falling behind? From its recent lag history (README
"History": trend health).

The lag's slope by least squares over the samples of the last TREND_WINDOW seconds, not the
in-rate minus the out-rate: the lag is what the group still has to read, on every server
(Redis 6.2 gives no entries-read, so no out-rate, and its lag is counted), and it leaves out
entries trimmed before the group got to them, which the counters still count. Least squares
over all the window's points, not the first and last, so one batch read just before a
sample does not flip the verdict; a slope counts only when it stands out of the scatter
around the line (|slope| >= SIGNIFICANCE standard errors) and moves the lag by MIN_CHANGE
entries at least over the points' span. Otherwise the lag is "steady" (or "caught up": 0).
When the newer half of the window alone says otherwise (a worker restarted: the lag turned),
its verdict is the one shown.

Gaps are never zeros and never bridged: only the points after the last gap longer than
GAP_INTERVALS samples are fitted (what happened during an outage is unknown), and the newest
must be recent (the sampler is running), else "no trend yet". A lag counted up to
LAG_COUNT_LIMIT (the server gives none) and at that limit says nothing of its slope: such
points are left out, and a newest one of them gives no trend.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from streams_admin import conf
from streams_admin.trends.history import Pair, recent_lags
from streams_admin.values import human_duration

if TYPE_CHECKING:
    from streams_admin.overview import Overview

MIN_POINTS = 4  # samples fitted at least, spanning MIN_SPAN_INTERVALS sampling intervals
MIN_SPAN_INTERVALS = 3
GAP_INTERVALS = 3  # neighbours further apart than this many intervals: a gap
SIGNIFICANCE = 3.0  # standard errors of the slope
MIN_CHANGE = 2  # entries the fitted line moves over its span, at least

CAUGHT_UP, CATCHING_UP, FALLING_BEHIND, STEADY, UNKNOWN = (
    "caught-up", "catching-up", "falling-behind", "steady", "unknown")
URGENCY = (FALLING_BEHIND, CATCHING_UP, STEADY, UNKNOWN, CAUGHT_UP)  # a stream shows the first


@dataclass(frozen=True)
class Trend:
    state: str
    lag: int | None = None  # the newest sample's
    per_second: float = 0.0  # the lag's fitted slope
    points: int = 0
    span_s: int = 0
    why: str = ""  # UNKNOWN: the reason

    @property
    def drain_s(self) -> float | None:
        """Seconds to a lag of 0 at this pace, when catching up."""
        if self.state != CATCHING_UP or not self.lag:
            return None
        return self.lag / -self.per_second

    @property
    def label(self) -> str:
        if self.state == FALLING_BEHIND:
            return f"falling behind {rate(self.per_second)}"
        if self.state == CATCHING_UP:
            return f"catching up, ≈ {drain(self.drain_s or 0)} to drain"
        return {CAUGHT_UP: "caught up", STEADY: "steady", UNKNOWN: "no trend yet"}[self.state]

    @property
    def short(self) -> str:
        """The label for a phone's overview row: the figure without the words."""
        if self.state == FALLING_BEHIND:
            return rate(self.per_second)
        if self.state == CATCHING_UP:
            return f"≈ {drain(self.drain_s or 0)}"
        return "–" if self.state == UNKNOWN else self.label

    @property
    def detail(self) -> str:
        """What the verdict rests on, for a tooltip."""
        if self.state == UNKNOWN:
            return self.why
        span = human_duration(self.span_s * 1000)
        return (f"lag {self.lag:,} at the last sample; {rate(self.per_second)} by a "
                f"least-squares fit of {self.points} samples over {span}")


def rate(per_second: float) -> str:
    """Signed, per second from 1/s, else per minute: "+12/s", "-1.5/s", "+30/min"."""
    sign = "-" if per_second < 0 else "+"
    size = abs(per_second)
    if size >= 1:
        return f"{sign}{size:,.0f}/s" if size >= 10 else f"{sign}{size:.1f}/s".replace(".0/", "/")
    per_minute = size * 60
    return f"{sign}{per_minute:.0f}/min" if per_minute >= 10 else f"{sign}{per_minute:.1f}/min"


def drain(seconds: float) -> str:
    """"45 s", "4 min", "1.7 h", "3 d": two figures at most, an estimate."""
    for unit, size, most in (("s", 1, 90), ("min", 60, 90), ("h", 3600, 48)):
        if seconds < size * most:
            amount = seconds / size
            figure = f"{amount:.1f}".removesuffix(".0") if amount < 10 else f"{amount:.0f}"
            return f"{max(1, round(amount)) if size < 3600 else figure} {unit}"
    return f"{round(seconds / 86400)} d"


def trends(target: str, pairs: Iterable[Pair], now: float | None = None) -> dict[Pair, Trend]:
    """The trend of each (stream, group), from three queries per 900 groups."""
    end = int(time.time() if now is None else now)
    series = recent_lags(target, list(dict.fromkeys(pairs)), end - conf.get("TREND_WINDOW"), end)
    return {pair: classify(*found, end) for pair, found in series.items()}


def trend(target: str, stream: bytes, group: bytes, now: float | None = None) -> Trend:
    """One group's trend (its page)."""
    return trends(target, [(stream, group)], now)[stream, group]


def classify(times: list[int], lags: list[int | None], trimmed: list[int | None],
             now: int) -> Trend:
    """The verdict on one group's samples (times ascending; lag None: a gap)."""
    interval = conf.get("SAMPLE_INTERVAL")
    known = [(t, lag, tr) for t, lag, tr in zip(times, lags, trimmed, strict=True)
             if lag is not None]
    if not known or known[-1][0] < now - GAP_INTERVALS * interval:
        return Trend(UNKNOWN, why="No recent samples: is the sampler running (manage.py sampler)?")
    t, lag, tr = known[-1]
    if lag == 0:
        return Trend(CAUGHT_UP, lag=0)
    limit = conf.get("LAG_COUNT_LIMIT")
    if tr is None and lag >= limit:
        return Trend(UNKNOWN, lag=lag, why=f"The lag is at least {limit:,}: counted up to "
                     "LAG_COUNT_LIMIT (this server gives no lag), so its slope cannot be told.")
    return _fit(_since_gap([(t, lag) for t, lag, tr in known
                            if not (tr is None and lag >= limit)], interval), interval)


def _since_gap(found: list[tuple[int, int]], interval: int) -> list[tuple[int, int]]:
    start = 0
    for i in range(1, len(found)):
        if found[i][0] - found[i - 1][0] > GAP_INTERVALS * interval:
            start = i
    return found[start:]


def _fit(found: list[tuple[int, int]], interval: int) -> Trend:
    """The whole window's verdict, unless its newer half turned: a worker restarted two
    minutes ago is catching up now, though the window's line still rises."""
    whole = _line(found, interval)
    if whole.state == UNKNOWN:
        return whole
    newer = _line([p for p in found if p[0] >= (found[0][0] + found[-1][0]) / 2], interval)
    turned = newer.state in (FALLING_BEHIND, CATCHING_UP) and newer.state != whole.state
    return newer if turned else whole


def _line(found: list[tuple[int, int]], interval: int) -> Trend:
    span = found[-1][0] - found[0][0]
    if len(found) < MIN_POINTS or span < MIN_SPAN_INTERVALS * interval:
        return Trend(UNKNOWN, lag=found[-1][1], points=len(found), span_s=span,
                     why=f"{len(found)} samples since the last gap: a trend needs "
                     f"{MIN_POINTS} over {MIN_SPAN_INTERVALS * interval} s at least.")
    slope, error = least_squares(found)
    moves = abs(slope) * span >= MIN_CHANGE
    state = STEADY
    if moves and abs(slope) >= SIGNIFICANCE * error:
        state = FALLING_BEHIND if slope > 0 else CATCHING_UP
    return Trend(state, lag=found[-1][1], per_second=slope, points=len(found), span_s=span)


def least_squares(found: list[tuple[int, int]]) -> tuple[float, float]:
    """(slope, its standard error) of the line through the points."""
    n = len(found)
    mean_t = sum(t for t, _ in found) / n
    mean_y = sum(y for _, y in found) / n
    sxx = sum((t - mean_t) ** 2 for t, _ in found)
    slope = sum((t - mean_t) * (y - mean_y) for t, y in found) / sxx
    residual = sum((y - mean_y - slope * (t - mean_t)) ** 2 for t, y in found)
    return slope, math.sqrt(residual / (n - 2) / sxx)


@dataclass(frozen=True)
class RowHealth:
    """An overview row's health: its most urgent group's trend and its stalled consumers."""

    trend: Trend | None  # None: the stream has no group
    group: bytes | None
    stalled: int


def for_overview(target: str, overview: Overview, now: float | None = None
                 ) -> dict[bytes, RowHealth]:
    """Each row of the page's health (the groups of the page's streams: a bounded read)."""
    found = trends(target, [(s.key, g.name) for s in overview.streams for g in s.groups], now)
    stalled: dict[bytes, int] = {}
    for problem in overview.stalled:
        stalled[problem.key] = stalled.get(problem.key, 0) + 1
    rows = {}
    for s in overview.streams:
        ranked = sorted(((found[s.key, g.name], g.name) for g in s.groups), key=_urgency)
        trend, group = ranked[0] if ranked else (None, None)
        rows[s.key] = RowHealth(trend, group, stalled.get(s.key, 0))
    return rows


def _urgency(item: tuple[Trend, bytes]) -> tuple[int, float]:
    trend = item[0]
    return URGENCY.index(trend.state), -abs(trend.per_second)
