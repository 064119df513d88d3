"""The charts' JSON (streams_admin/trends/views.py) on history written through storage.write,
as the sampler writes it: each range, a bad range's 400, gaps as null, binary names, the
consumers' cap, the overview's sparklines in one request, permissions per target and scope,
and the pages with no history at all."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import redis

from streams_admin.names import to_token
from streams_admin.trends import history, storage, views
from streams_admin.trends.measure import ConsumerSample, GroupSample, Snapshot, StreamSample

pytestmark = pytest.mark.django_db
KEY, GROUP = b"orders\xff<b>", b"billing\x00"
URL = f"/streams/{to_token(KEY)}/"
GROUP_URL = f"{URL}groups/{to_token(GROUP)}/"
T0 = 1_700_000_000  # counters count from here: they only grow


@pytest.fixture(autouse=True)
def fresh_cache():
    views.forget()  # a response is kept one step: each test reads what it wrote
    yield
    views.forget()


def newest(values: list) -> object:
    """The newest value drawn (the clock may have moved into a bucket not sampled yet)."""
    return next(v for v in reversed(values) if v is not None)


def now10() -> int:
    return int(time.time()) // 10 * 10


def group(name: bytes, read: int, lag: int | None, consumers: int = 1,
          pending: int = 2) -> GroupSample:
    workers = tuple(ConsumerSample(b"worker \xe9" + bytes([i]), pending, 500, 700)
                    for i in range(consumers))
    return GroupSample(name=name, entries_read=read, lag=lag, time_lag_s=None if lag is None
                       else lag / 10, pending=pending * consumers, oldest_pending_s=12.5,
                       trimmed_unread=0, consumers=workers, stalled=(),
                       consumer_count=consumers)


def write(t: int, key: bytes = KEY, groups: tuple[GroupSample, ...] | None = None,
          target: str = "default", **kw: int) -> None:
    added = kw.get("added", (t - T0) * 5)
    groups = groups if groups is not None else (
        group(GROUP, (t - T0) * 4, kw.get("lag", 3), kw.get("consumers", 1)),)
    stream = StreamSample(key, kw.get("length", 250), added, f"{t}-0", groups)
    storage.write(target, t, Snapshot(float(t), (stream,), 0), {})


def steady(start: int, end: int, **kw: int) -> None:
    """5 entries/s in, 4/s out, a sample every 10 s from start to end (excluded)."""
    for t in range(start, end, 10):
        write(t, **kw)


def test_a_stream_and_its_group_read_back_with_rates(admin_client) -> None:
    end = now10()
    steady(end - 300, end + 10)
    stream = admin_client.get(URL + "history/?range=15m")
    assert stream.status_code == 200 and stream["Content-Type"] == "application/json"
    data = stream.json()
    assert data["range"] == "15m" and data["step"] == 10 and len(data["times"]) == 91
    assert newest(data["series"]["length"]) == 250 and newest(data["series"]["in_rate"]) == 5.0
    assert data["series"]["length"][0] is None  # before the first sample: a gap, not a zero
    found = admin_client.get(GROUP_URL + "history/?range=15m").json()
    assert newest(found["series"]["lag"]) == 3 and newest(found["series"]["out_rate"]) == 4.0
    assert newest(found["series"]["time_lag_s"]) == 0.3
    assert newest(found["series"]["oldest_pending_s"]) == 12.5
    assert found["consumers"] == {"names": ["worker \\xe9\\x00"],
                                  "pending": [found["consumers"]["pending"][0]], "left_out": 0}
    assert newest(found["consumers"]["pending"][0]) == 2
    assert found["sampler"]["running"] is False  # nothing holds the lease in this test


@pytest.mark.parametrize("name", list(history.RANGES))
def test_every_range_is_bounded_and_ends_now(admin_client, name: str) -> None:
    end = now10()
    steady(end - 120, end + 10)
    data = admin_client.get(GROUP_URL + f"history/?range={name}").json()
    assert data["range"] == name and 2 < len(data["times"]) <= 2001
    assert data["times"][-1] <= end + 20 and data["times"][-1] > end - data["step"] * 2
    assert all(len(v) == len(data["times"]) for v in data["series"].values())
    assert newest(data["series"]["lag"]) == 3


def test_the_newest_bucket_still_filling_shows_the_rate_not_a_drop() -> None:
    hour = 1_800_000_000  # a multiple of 3,600: minute buckets start on it
    steady(hour - 600, hour + 10)  # the newest minute has 1 sample of its 6
    for name in ("24h", "6h"):  # minute points; raw points two by two
        found = history.history("default", KEY, GROUP, range=name, now=hour + 5)
        assert found.times[-1] == hour
        assert found.values["out_rate"][-3:] == (4.0, 4.0, 4.0), name


@pytest.mark.parametrize("bad", ["2h", "", "7d ", "<script>", "1h\x00"])
def test_a_bad_range_is_a_400_naming_the_ranges(admin_client, bad: str) -> None:
    for url in (URL, GROUP_URL, "/"):
        response = admin_client.get(url + "history/", {"range": bad})
        assert response.status_code == 400
        assert "use one of 15m, 1h, 6h, 24h, 7d" in response.json()["error"]


def test_an_outage_is_a_gap_of_nulls_and_no_rate_across_it(admin_client) -> None:
    end = now10()
    steady(end - 200, end - 100)
    steady(end - 50, end + 10)  # nothing sampled for 50 s: Redis was down
    data = admin_client.get(GROUP_URL + "history/?range=15m").json()
    at = dict(zip(data["times"], zip(data["series"]["lag"], data["series"]["out_rate"],
                                     strict=True), strict=True))
    assert at[end - 110] == (3, 4.0)
    assert [at[end - s] for s in (100, 90, 80, 70, 60)] == [(None, None)] * 5
    assert at[end - 50] == (3, None) and at[end - 40] == (3, 4.0)  # no rate across the gap


def test_pending_per_consumer_is_capped_and_says_how_many_were_left_out(admin_client) -> None:
    end = now10()
    steady(end - 30, end + 10, consumers=13)
    found = admin_client.get(GROUP_URL + "history/?range=15m").json()["consumers"]
    assert len(found["names"]) == len(found["pending"]) == 10
    assert found["left_out"] == 3


def test_sparklines_for_many_streams_in_one_request_and_few_queries(
        admin_client, django_assert_max_num_queries) -> None:
    end = now10()
    keys = [b"s%d" % i for i in range(30)] + [b"bin\xff"]
    for t in range(end - 100, end + 10, 10):
        for i, key in enumerate(keys):
            write(t, key, (group(b"a", 0, i), group(b"b", 0, 2 * i if i % 2 else None)))
    query = "&".join(f"key={to_token(k)}" for k in [*keys, b"never-sampled"])
    # login/session, sampler state (2), series, chunks, samples, groups: not one per stream
    with django_assert_max_num_queries(10):
        data = admin_client.get(f"/history/?range=1h&{query}").json()
    assert len(data["times"]) <= 121 and data["step"] == 30
    assert newest(data["streams"]["s7"]["worst_lag"]) == 14  # the worse of its two groups
    assert newest(data["streams"]["s8"]["worst_lag"]) == 8  # the other group's lag is unknown
    assert newest(data["streams"][to_token(b"bin\xff")]["in_rate"]) == 5.0
    assert set(data["streams"]["never-sampled"]["in_rate"]) == {None}
    too_many = "&".join(f"key=k{i}" for i in range(101))
    assert admin_client.get(f"/history/?{too_many}").status_code == 400


def test_history_stays_in_scope_and_in_its_target(client, django_user_model, settings,
                                                  tmp_path: Path) -> None:
    path = tmp_path / "targets.toml"
    path.write_text("""
default = "staging"
[targets.staging]
url = "redis://127.0.0.1:1"
key_pattern = "orders*"
[targets.prod]
url = "redis://127.0.0.1:1"
view = ["Prod viewers"]
""")
    settings.STREAMS_ADMIN_TARGETS = str(path)
    end = now10()
    steady(end - 30, end + 10, target="staging")
    steady(end - 30, end + 10, target="prod", lag=99)
    assert client.get(GROUP_URL + "history/").status_code == 302  # not logged in: the login
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    from django.contrib.auth.models import Group

    user.groups.add(Group.objects.get(name="Streams viewer"))
    client.force_login(user)
    staging = client.get(f"/t/staging{GROUP_URL}history/?range=15m").json()
    assert newest(staging["series"]["lag"]) == 3
    assert client.get(f"/t/prod{GROUP_URL}history/").status_code == 403
    assert client.get("/t/staging/streams/other/history/").status_code == 404  # out of scope
    sparks = client.get(f"/t/staging/history/?key={to_token(KEY)}&key=other").json()
    assert list(sparks["streams"]) == [to_token(KEY)]  # a key out of scope: left out
    user.groups.add(Group.objects.get_or_create(name="Prod viewers")[0])
    prod = client.get(f"/t/prod{GROUP_URL}history/?range=15m").json()
    assert newest(prod["series"]["lag"]) == 99  # each target its own history


def test_pages_render_with_no_history_and_say_why(admin_client, r: redis.Redis) -> None:
    r.xadd(KEY, {"a": "1"})
    r.xgroup_create(KEY, GROUP, id="0")
    for url in (URL, GROUP_URL, "/"):
        page = admin_client.get(url).content.decode()
        assert "uPlot.iife.min.js" in page and "charts.js" in page
        if url != "/":
            assert "The history sampler is not running" in page
            assert 'href="?range=7d#trends"' in page  # ranges without JavaScript
            assert 'href="?range=1h#trends" data-range-link="1h" aria-current="true"' in page
    page = admin_client.get(GROUP_URL + "?range=7d&consumer=x").content.decode()
    assert 'data-range-link="7d" aria-current="true"' in page
    assert 'href="?consumer=x&amp;range=1h#trends"' in page  # the other parameters kept
    overview = admin_client.get("/").content.decode()
    assert f'data-spark="{to_token(KEY)}"' in overview and "data-spark-url=\"/history/\"" in \
        overview


def test_a_chart_is_read_once_per_step_whatever_other_ranges_are_asked(
        admin_client, django_assert_max_num_queries, settings) -> None:
    step = history.step_of("7d")  # 10 minutes: not about to start a new one
    time.sleep(max(0.0, 3 - (time.time() % step - (step - 3))) if time.time() % step > step - 3
               else 0)
    steady(now10() - 120, now10() + 10)
    first = admin_client.get(GROUP_URL + "history/?range=7d").content
    settings.STREAMS_ADMIN = {"SAMPLE_INTERVAL": 1}  # 1 h in 2 s steps: kept 2 s
    time.sleep(2.2)
    assert admin_client.get(GROUP_URL + "history/?range=1h").status_code == 200
    with django_assert_max_num_queries(2):  # the session and its user: no history read
        again = admin_client.get(GROUP_URL + "history/?range=7d").content
    assert again == first


def test_the_page_brings_its_ranges_data(admin_client, r: redis.Redis) -> None:
    r.xadd(KEY, {"a": "1"})
    r.xgroup_create(KEY, GROUP, id="0")
    hostile = GroupSample(name=GROUP, entries_read=4, lag=3, time_lag_s=0.3, pending=2,
                          oldest_pending_s=12.5, trimmed_unread=0, stalled=(),
                          consumers=(ConsumerSample(b"</script><b>&", 2, 500, 700),),
                          consumer_count=1)
    for t in range(now10() - 120, now10() + 10, 10):
        write(t, groups=(hostile,))
    page = admin_client.get(GROUP_URL + "?range=24h").content.decode()
    embedded = re.findall(r'<script type="application/json" data-chart-data="24h">(.*?)</script>',
                          page, re.S)
    assert len(embedded) == 1 and "<" not in embedded[0]  # a name cannot end the script
    sent = admin_client.get(GROUP_URL + "history/?range=24h").json()  # the endpoint's JSON
    assert json.loads(embedded[0]) == sent
    assert sent["consumers"]["names"] == ["</script><b>&"]
    assert 'data-chart-data="1h"' in admin_client.get(URL + "?range=bad").content.decode()
