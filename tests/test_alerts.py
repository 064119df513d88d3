"""Alerts on real servers, to a real HTTP receiver: a rule fires within interval + "for" after
lag passes its threshold and resolves after, each with a POST; a receiver that is down gets
retries with backoff and loses nothing; a hanging one never delays sampling; a target that
fails to sample holds its alerts; a rule matching 1,000 groups writes nothing when nothing
changed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from streams_admin.redis import server_from_info
from streams_admin.trends import alerts, measure, notify, sampler
from streams_admin.trends.alert_models import AlertEvent, AlertRule, AlertState, Notification
from streams_admin.trends.models import Sample
from tests.test_sampler import ROOT, wait_for
from tests.webhook import Receiver, free_port

pytestmark = pytest.mark.django_db(transaction=True)
STREAM, GROUP = b"orders", b"billing"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver().start()
    yield found
    found.stop()


@pytest.fixture(autouse=True)
def quick_retries(settings) -> None:
    settings.STREAMS_ADMIN = {**settings.STREAMS_ADMIN, "ALERT_RETRY_MIN": 0.2,
                              "ALERT_RETRY_MAX": 0.8, "ALERT_TIMEOUT": 2.0,
                              "PUBLIC_URL": "https://streams.example.com"}


def rule(url: str, **fields) -> AlertRule:
    values = {"name": "billing behind", "target": "default", "metric": "lag",
              "stream_glob": "ord*", "group_glob": "bill*", "comparison": ">", "threshold": 5,
              "for_seconds": 20, "webhook_url": url} | fields
    return AlertRule.objects.create(**values)


def backlog(r, count: int) -> None:
    for i in range(count):
        r.xadd(STREAM, {b"n": str(i).encode()})


def catch_up(r) -> None:
    r.xreadgroup(GROUP.decode(), "c1", {STREAM: ">"})
    for entry_id in [e[0] for e in r.xrange(STREAM)]:
        r.xack(STREAM, GROUP, entry_id)


def aligned() -> int:
    return int(time.time()) // 10 * 10


def test_an_alert_fires_within_interval_plus_for_and_resolves(r, receiver):
    r.xgroup_create(STREAM, GROUP, id="$", mkstream=True)
    watching = rule(receiver.url, for_seconds=20)
    s, t0 = sampler.Sampler(10), aligned()
    assert s.cycle(t0)  # lag 0: nothing
    backlog(r, 10)  # lag passes 5 between the samples at t0 and t0 + 10
    slots = [t0 + 10 * i for i in range(1, 5)]
    for slot in slots:
        assert s.cycle(slot)
        if AlertState.objects.filter(state="firing").exists():
            break
    state = AlertState.objects.get()
    assert state.state == "firing" and state.since == t0 + 10 and state.value == 10
    assert state.fired_at - t0 <= s.interval + watching.for_seconds  # 30 s after t0
    assert notify.deliver() == 1
    (at, fired), = receiver.received
    assert fired["state"] == "firing" and fired["rule"] == "billing behind"
    assert (fired["target"], fired["stream"], fired["group"]) == ("default", "orders", "billing")
    assert fired["value"] == 10 and fired["threshold"] == 5 and fired["metric"] == "lag"
    assert fired["url"] == "https://streams.example.com/t/default/streams/orders/groups/billing/"
    assert fired["since"].startswith(time.strftime("%Y-%m-%dT", time.gmtime(t0 + 10)))
    assert fired["resolved_at"] is None and "[FIRING] billing behind" in fired["text"]

    catch_up(r)
    assert s.cycle(state.fired_at + 10)
    assert not AlertState.objects.exists()
    assert notify.deliver() == 1
    resolved = receiver.received[1][1]
    assert resolved["state"] == "resolved" and resolved["value"] == 0
    assert resolved["resolved_at"] is not None and resolved["fired_at"] == fired["fired_at"]
    kinds = list(AlertEvent.objects.order_by("id").values_list("kind", flat=True))
    assert kinds == ["pending", "firing", "resolved"]
    assert set(Notification.objects.values_list("status", flat=True)) == {"sent"}


def fire_and_resolve(r, url: str) -> sampler.Sampler:
    """A firing and a resolve queued for url (for 0: it fires on the first sample)."""
    r.xgroup_create(STREAM, GROUP, id="$", mkstream=True)
    rule(url, for_seconds=0)
    s, t0 = sampler.Sampler(10), aligned()
    backlog(r, 10)
    assert s.cycle(t0)
    catch_up(r)
    assert s.cycle(t0 + 10)
    assert list(Notification.objects.order_by("id").values_list("event", flat=True)) == [
        "firing", "resolved"]
    return s


def test_a_receiver_that_is_down_gets_retries_with_backoff_and_loses_nothing(r):
    port = free_port()  # nothing listens there yet
    fire_and_resolve(r, f"http://127.0.0.1:{port}/hook")
    waits = []
    for _ in range(5):
        first = Notification.objects.order_by("id").first()
        assert notify.deliver(now=first.next_try) == 1  # only the first: per URL, in order
        first.refresh_from_db()
        assert first.status == "queued" and "Connection" in first.last_error
        waits.append(round(first.next_try - first.last_try, 3))
    assert waits == [0.2, 0.4, 0.8, 0.8, 0.8]  # doubling from ALERT_RETRY_MIN, capped at MAX
    assert Notification.objects.order_by("id").last().attempts == 0  # waits behind the first
    came_back = Receiver(port).start()
    try:
        assert notify.deliver(now=time.time() + 1) == 1  # the firing: the resolve waits for it
        assert notify.deliver(now=time.time() + 1) == 1
        assert came_back.states() == ["firing", "resolved"]
    finally:
        came_back.stop()
    rows = list(Notification.objects.order_by("id").values_list("status", "attempts"))
    assert rows == [("sent", 6), ("sent", 1)]


def test_a_notification_is_given_up_after_alert_give_up(r, settings):
    settings.STREAMS_ADMIN = {**settings.STREAMS_ADMIN, "ALERT_GIVE_UP": 60}
    fire_and_resolve(r, f"http://127.0.0.1:{free_port()}/hook")
    Notification.objects.update(created_at=time.time() - 61)
    notify.deliver()
    notify.deliver()
    assert list(Notification.objects.values_list("status", flat=True)) == ["failed", "failed"]


def test_sampling_goes_on_while_the_receiver_hangs(r, receiver, settings):
    settings.STREAMS_ADMIN = {**settings.STREAMS_ADMIN, "ALERT_TIMEOUT": 60}
    receiver.hang = True
    s = fire_and_resolve(r, receiver.url)
    stop = threading.Event()
    notifier = notify.start(stop)
    try:
        assert receiver.arrived.wait(30)  # the notifier is inside its POST now, held there
        t = aligned() + 100
        for i in range(3):
            began = time.perf_counter()
            assert s.cycle(t + 10 * i)
            print(f"cycle {i} while a POST hangs: {time.perf_counter() - began:.3f} s")
        assert receiver.holding == 1  # still held: the cycles did not wait for it
        assert Sample.objects.filter(t__gte=t).count() == 3 * 3  # stream, group, consumer
        receiver.release.set()
        receiver.wait_for(2)
    finally:
        stop.set()
        notifier.join(30)
    assert receiver.states() == ["firing", "resolved"]


def test_a_receiver_slower_than_the_timeout_is_a_failed_try(r, receiver, settings):
    settings.STREAMS_ADMIN = {**settings.STREAMS_ADMIN, "ALERT_TIMEOUT": 0.5}
    receiver.hang = True
    fire_and_resolve(r, receiver.url)
    assert notify.deliver() == 1
    first = Notification.objects.order_by("id").first()
    assert first.status == "queued" and first.attempts == 1 and "timed out" in first.last_error
    receiver.release.set()


def test_a_receiver_answering_an_error_is_retried(r, receiver):
    receiver.status = 500
    fire_and_resolve(r, receiver.url)
    notify.deliver()
    first = Notification.objects.order_by("id").first()
    assert first.status == "queued" and first.last_error.startswith("HTTP 500")
    assert "receiver says no" in first.last_error


def test_a_target_that_fails_to_sample_neither_fires_nor_resolves(r, settings, redis_server):
    r.xgroup_create(STREAM, GROUP, id="$", mkstream=True)
    rule("http://127.0.0.1:1/hook", for_seconds=0)
    s, t0 = sampler.Sampler(10), aligned()
    backlog(r, 10)
    assert s.cycle(t0)
    assert AlertState.objects.get().state == "firing"
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # the target is down
    assert s.cycle(t0 + 10)
    assert sampler.state().targets[0].failing
    assert AlertState.objects.get().state == "firing"  # held, not resolved
    assert list(AlertEvent.objects.values_list("kind", flat=True)) == ["firing"]
    settings.REDIS_URL = redis_server.url
    catch_up(r)
    s.retry_at.clear()  # skip the backoff
    assert s.cycle(t0 + 20)
    assert not AlertState.objects.exists()


def test_rules_over_1000_groups_write_nothing_when_nothing_changed(r):
    with r.pipeline(transaction=False) as pipe:
        for i in range(1000):
            pipe.xadd(f"orders:{i:04}", {"n": "1"})
            pipe.xgroup_create(f"orders:{i:04}", "billing", id="0")  # lag 1 each
        pipe.execute()
    rule("http://127.0.0.1:1/hook", threshold=0, for_seconds=0, stream_glob="orders:*")
    rule("http://127.0.0.1:1/hook", name="slow", threshold=0, for_seconds=3600,
         stream_glob="orders:*")
    snap = measure.snapshot()
    evaluator, t0 = alerts.Evaluator(), aligned()
    assert evaluator.evaluate("default", t0, snap) == 2000  # 1,000 firing, 1,000 pending
    assert AlertState.objects.filter(state="firing").count() == 1000
    assert AlertState.objects.filter(state="pending").count() == 1000
    assert Notification.objects.count() == 1000
    for slot in (t0 + 10, t0 + 20):
        with CaptureQueriesContext(connection) as queries:
            assert evaluator.evaluate("default", slot, snap) == 0
        writes = [q["sql"] for q in queries if not q["sql"].lstrip().upper().startswith(
            ("SELECT", "SAVEPOINT", "RELEASE", "BEGIN", "COMMIT"))]
        assert writes == [] and len(queries) <= 6, [q["sql"][:80] for q in queries]
    print(f"2,000 held states, nothing changed: {len(queries)} queries, no write")
    with CaptureQueriesContext(connection) as queries:  # a minute on: values refreshed, batched
        evaluator.evaluate("default", t0 + alerts.VALUE_REFRESH, snap)
    assert len(queries) <= 12
    assert AlertState.objects.filter(value_at=t0 + alerts.VALUE_REFRESH).count() == 2000


def test_a_stream_gone_resolves_and_one_past_the_cap_is_held(r):
    for key in (b"orders:1", b"orders:2", b"orders:3"):
        r.xadd(key, {b"n": b"1"})
        r.xgroup_create(key, GROUP, id="0")  # lag 1
    rule("http://127.0.0.1:1/hook", threshold=0, for_seconds=0, stream_glob="orders:*")
    evaluator, t0 = alerts.Evaluator(), aligned()
    assert evaluator.evaluate("default", t0, measure.snapshot()) == 3
    capped = measure.snapshot(max_streams=2)  # orders:3 is left out, not gone
    assert capped.left_out == 1
    assert evaluator.evaluate("default", t0 + 10, capped) == 0
    r.delete(b"orders:1")
    assert evaluator.evaluate("default", t0 + 20, measure.snapshot(max_streams=2)) == 1
    event = AlertEvent.objects.get(kind="resolved")
    assert bytes(event.stream) == b"orders:1" and event.note == "gone, or no longer matched"
    held = sorted(bytes(s) for s in AlertState.objects.values_list("stream", flat=True))
    assert held == [b"orders:2", b"orders:3"]


def test_a_metric_the_server_does_not_report_is_unavailable_never_zero(r):
    r.xgroup_create(STREAM, GROUP, id="$", mkstream=True)
    out = rule("http://127.0.0.1:1/hook", metric="out_rate", comparison="<", threshold=1,
               for_seconds=0)
    lag = rule("http://127.0.0.1:1/hook", name="lag", threshold=0, for_seconds=0)
    s, t0 = sampler.Sampler(10), aligned()
    backlog(r, 3)
    r.xreadgroup(GROUP.decode(), "c1", {STREAM: ">"}, count=1)  # entries-read known (7.0+)
    assert s.cycle(t0) and s.cycle(t0 + 10)
    out.refresh_from_db()
    lag.refresh_from_db()
    assert out.matched == 1 and lag.matched == 1 and lag.unavailable == 0
    assert AlertState.objects.filter(rule=lag, state="firing").exists()  # lag is counted on 6.2
    if server_from_info(r.info()).has_lag:  # out-rate from entries-read: 0/s, under 1
        assert out.unavailable == 0
        assert AlertState.objects.filter(rule=out, state="firing").exists()
    else:  # Redis 6.2 gives no entries-read: unknown, so the rule neither fires nor resolves
        assert out.unavailable == 1
        assert not AlertState.objects.filter(rule=out).exists()


RULE = """
from streams_admin.trends.alert_models import AlertRule
AlertRule.objects.create(name="billing behind", target="default", metric="lag", threshold=5,
                         stream_glob="orders", webhook_url="{url}", for_seconds={for_seconds})
"""
MANAGE = [sys.executable, "manage.py"]


def deployment(url: str, redis_url: str, webhook: str, for_seconds: int) -> dict[str, str]:
    """The environment of a dashboard on database url, migrated, with one rule on lag > 5."""
    env = {**os.environ, "SECRET_KEY": "alerts", "REDIS_URL": redis_url, "DATABASE_URL": url,
           "DJANGO_SETTINGS_MODULE": "dashboard.settings", "LOG_LEVEL": "INFO"}
    subprocess.run([*MANAGE, "migrate", "--noinput"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=120)
    rule = RULE.format(url=webhook, for_seconds=for_seconds)
    subprocess.run([*MANAGE, "shell", "-c", rule], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=120)
    return env


def start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*MANAGE, "sampler", "--interval", "1"], cwd=ROOT, env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(30)


def test_the_running_sampler_sends_within_interval_plus_for(r, receiver, redis_server,
                                                            tmp_path):
    """`manage.py sampler --interval 1` and its notifier, timed on the wall clock."""
    env = deployment(f"sqlite:///{tmp_path / 'db.sqlite3'}", redis_server.url, receiver.url, 2)
    r.xgroup_create(STREAM, GROUP, id="$", mkstream=True)
    log = tmp_path / "sampler.log"
    process = start(env, log)
    try:
        wait_for(lambda: ": sampling" in log.read_text(), 60)
        time.sleep(1.5)  # a sample of lag 0 first
        crossed = time.time()
        backlog(r, 10)
        receiver.wait_for(1)
        took = receiver.received[0][0] - crossed
        print(f"lag crossed -> firing POST received: {took:.2f} s (interval 1 + for 2)")
        assert took < 1 + 2 + 5  # 5 s of slack for a busy machine (2 cores, 4 helpers)
        catch_up(r)
        receiver.wait_for(2)
    finally:
        stop(process)
    assert receiver.states() == ["firing", "resolved"]
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_nothing_is_lost_across_a_sampler_restart_nor_sent_twice(database, request, tmp_path,
                                                                  r, redis_server):
    """Two `manage.py sampler` processes (one holds the lease); the receiver is down when the
    alert fires; both stop; the receiver comes up; a sampler starts again and sends it, then
    the resolve: each once, in order."""
    url = (f"sqlite:///{tmp_path / 'db.sqlite3'}" if database == "sqlite"
           else request.getfixturevalue("postgres_url"))
    later = Receiver()  # its port, not listening yet
    env = deployment(url, redis_server.url, later.url, 0)
    r.xgroup_create(STREAM, GROUP, id="$", mkstream=True)
    logs = [tmp_path / f"{name}.log" for name in ("a", "b", "c")]
    first = [start(env, logs[0]), start(env, logs[1])]
    try:
        backlog(r, 10)
        wait_for(lambda: any("firing to" in log.read_text() for log in logs[:2]), 60)
    finally:
        for process in first:
            stop(process)
    later.start()
    again = start(env, logs[2])
    try:
        later.wait_for(1, 60)  # the row waited out its backoff, through the restart
        catch_up(r)
        later.wait_for(2, 60)
        time.sleep(2)  # nothing more comes
    finally:
        stop(again)
        later.stop()
    assert later.states() == ["firing", "resolved"]
    assert later.received[0][1]["value"] == 10
    texts = [log.read_text() for log in logs]
    assert not any("Traceback" in t for t in texts), texts
