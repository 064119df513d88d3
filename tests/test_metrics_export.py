"""GET /metrics: what a Prometheus scraper gets, read with prometheus_client's own parser."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from streams_admin.redis import server
from tests.redis_server import free_port

TOKEN = "s3cret-token"
# Series of what Redis 6.2 does not report (entries-added, entries-read, lag): left out there.
NEEDS_REDIS_7 = {"redis_stream_entries_added_total", "redis_stream_group_entries_read",
                 "redis_stream_group_trimmed_unread"}


@pytest.fixture
def metrics_on(settings) -> None:
    settings.STREAMS_ADMIN = {**settings.STREAMS_ADMIN, "METRICS_TOKEN": TOKEN,
                              "METRICS_ALLOW": "", "METRICS_FRESHNESS": 0}


def scrape(client, token: str = TOKEN, **extra) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return samples(response.content.decode())


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample as {(name, sorted labels): value}."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def at(found: dict, name: str, **labels: str) -> float:
    return found[name, tuple(sorted({"target": "default", **labels}.items()))]


def scene(r: redis.Redis) -> int:
    """orders: 3 entries, group billing has read one (pending, idle 45 s), consumer idle."""
    now_ms = int(time.time() * 1000)
    for age in (90_000, 60_000, 30_000):
        r.xadd(b"orders", {b"n": b"1"}, id=f"{now_ms - age}-0")
    r.xgroup_create(b"orders", b"billing", id="0")
    first = r.xreadgroup(b"billing", b"c1", {b"orders": ">"}, count=1)
    entry_id = first[0][1][0][0] if isinstance(first, list) else first[b"orders"][0][0][0]
    r.xclaim(b"orders", b"billing", b"c1", 0, [entry_id], idle=45_000)
    return now_ms


def test_the_figures_of_streams_groups_and_consumers(any_redis, client, metrics_on,
                                                     settings) -> None:
    settings.STREAMS_ADMIN = {**settings.STREAMS_ADMIN, "IDLE_THRESHOLD_MS": 100}
    now_ms = scene(any_redis)
    time.sleep(0.2)
    found = scrape(client)
    stream = {"stream": "orders"}
    group = {**stream, "group": "billing"}
    consumer = {**group, "consumer": "c1"}
    assert at(found, "redis_up") == 1
    assert at(found, "redis_stream_length", **stream) == 3
    assert at(found, "redis_stream_groups", **stream) == 1
    assert at(found, "redis_stream_group_lag", **group) == 2  # counted on Redis 6.2
    if server().has_lag:
        assert at(found, "redis_stream_entries_added_total", **stream) == 3
        assert at(found, "redis_stream_group_entries_read", **group) == 1
        assert at(found, "redis_stream_group_trimmed_unread", **group) == 0
    else:  # Redis 6.2 cannot tell: no series rather than a wrong 0
        assert not NEEDS_REDIS_7 & {name for name, _ in found}
    assert at(found, "redis_stream_group_messages_pending", **group) == 1
    assert at(found, "redis_stream_group_consumers", **group) == 1
    assert at(found, "redis_stream_group_time_lag_seconds", **group) == pytest.approx(
        time.time() - (now_ms - 60_000) / 1000, abs=2)
    assert at(found, "redis_stream_group_oldest_pending_seconds", **group) == pytest.approx(
        45, abs=2)
    assert at(found, "redis_stream_group_consumer_messages_pending", **consumer) == 1
    assert at(found, "redis_stream_group_consumer_idle_seconds", **consumer) >= 0.1
    assert at(found, "redis_stream_group_consumer_stalled", **consumer) == 1
    assert at(found, "streams_admin_metrics_streams_left_out") == 0


def test_no_token_is_401_a_wrong_one_too_and_a_session_is_not_enough(
        r, client, admin_client, metrics_on) -> None:
    refused = client.get("/metrics")
    assert refused.status_code == 401 and refused["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401
    assert admin_client.get("/metrics").status_code == 401  # logged in: still no token
    assert client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405


def test_off_unless_a_token_or_an_allow_list_is_set(r, client, settings) -> None:
    settings.STREAMS_ADMIN = {**settings.STREAMS_ADMIN, "METRICS_TOKEN": "", "METRICS_ALLOW": ""}
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 403


def test_an_allowed_address_needs_no_token_others_are_refused(r, client, settings) -> None:
    settings.STREAMS_ADMIN = {**settings.STREAMS_ADMIN, "METRICS_TOKEN": "",
                              "METRICS_ALLOW": "10.1.0.0/16, 192.168.7.7"}
    r.xadd(b"s", {b"a": b"1"})
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.168.7.7").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.2.0.1").status_code == 403
    # A forged X-Forwarded-For is not believed unless the proxy is trusted.
    assert client.get("/metrics", REMOTE_ADDR="10.2.0.1",
                      HTTP_X_FORWARDED_FOR="10.1.2.3").status_code == 403


def test_per_consumer_series_off_and_the_cap_counted(r, client, metrics_on, settings) -> None:
    settings.STREAMS_ADMIN = {**settings.STREAMS_ADMIN, "METRICS_CONSUMERS": False,
                              "METRICS_MAX_STREAMS": 3, "IDLE_THRESHOLD_MS": 1500}
    for n in range(5):
        r.xadd(f"s{n}".encode(), {b"a": b"1"})
        r.xgroup_create(f"s{n}".encode(), b"g", id="0")
        r.xgroup_createconsumer(f"s{n}".encode(), b"g", b"healthy")
    r.xgroup_createconsumer(b"s0", b"g", b"dead")
    r.xadd(b"s0", {b"a": b"2"})
    time.sleep(1.8)
    r.xreadgroup(b"g", b"healthy", {b"s0": ">"}, count=1)  # s0 still lags: "dead" stalls
    found = scrape(client)
    assert {dict(labels)["stream"] for name, labels in found
            if name == "redis_stream_length"} == {"s0", "s1", "s2"}
    assert at(found, "streams_admin_metrics_streams_left_out") == 2
    per_consumer = [(name, dict(labels)) for name, labels in found if "consumer" in dict(labels)]
    # Only the stalled consumers are named, as 1: never a series per consumer.
    assert all(name == "redis_stream_group_consumer_stalled" for name, _ in per_consumer)
    assert {(labels["stream"], labels["consumer"]) for _, labels in per_consumer} == {
        ("s0", "dead"), ("s1", "healthy"), ("s2", "healthy")}


def test_any_bytes_in_names_are_a_valid_exposition(r, client, metrics_on) -> None:
    key = b'we"ird\n\\name\xff'
    r.xadd(key, {b"a": b"1"})
    r.xgroup_create(key, b'g"<script>', id="0")
    found = scrape(client)
    assert at(found, "redis_stream_group_lag", stream='we"ird\n\\name\\xff',
              group='g"<script>') == 1


def test_a_target_that_is_down_is_up_0_beside_the_others(r, client, metrics_on, settings,
                                                         tmp_path: Path) -> None:
    r.xadd(b"orders", {b"a": b"1"})
    path = tmp_path / "targets.toml"
    path.write_text(f'[targets.main]\nurl = "{settings.REDIS_URL}"\n\n'
                    f'[targets.gone]\nurl = "redis://127.0.0.1:{free_port()}/0"\n')
    settings.STREAMS_ADMIN_TARGETS = str(path)
    found = scrape(client)
    assert found["redis_up", (("target", "main"),)] == 1
    assert found["redis_up", (("target", "gone"),)] == 0
    assert found["redis_stream_length", (("stream", "orders"), ("target", "main"))] == 1
    assert not any(dict(labels).get("target") == "gone" for name, labels in found
                   if name.startswith("redis_stream"))


ROOT = Path(__file__).resolve().parent.parent


def test_a_real_prometheus_scrapes_and_a_promql_query_returns_the_lag(
        r, live_server, metrics_on, tmp_path: Path) -> None:
    # Not a skip: bin/test and .ci/run see that it is installed.
    assert shutil.which("prometheus"), "Debian's prometheus is missing: apt-get install prometheus"
    for n in range(3):
        r.xadd(b"orders", {b"n": str(n).encode()})
    r.xgroup_create(b"orders", b"billing", id="0")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(PROMETHEUS.format(rules=ROOT / "docs" / "prometheus-alerts.yml",
                                        token=TOKEN, address=live_server.url.split("//")[1]))
    with subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'db'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=(tmp_path / "log").open("wb")) as prometheus:
        try:
            query = 'redis_stream_group_lag{stream="orders",group="billing"}'
            result = until_answered(port, query, prometheus, tmp_path / "log")
            assert result[0]["metric"]["target"] == "default"
            assert result[0]["value"][1] == "3"
            rules = api(port, "rules")["groups"][0]["rules"]
            assert {rule["health"] for rule in rules} == {"ok"}  # docs' rules evaluate
        finally:
            prometheus.terminate()
            prometheus.wait(10)


PROMETHEUS = """
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: ["{rules}"]
scrape_configs:
  - job_name: streams-admin
    scrape_timeout: 1s
    authorization: {{type: Bearer, credentials: "{token}"}}
    static_configs: [{{targets: ["{address}"]}}]
"""


def api(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/{path}", timeout=5) as reply:
        return json.load(reply)["data"]


def until_answered(port: int, query: str, process: subprocess.Popen, log: Path) -> list:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            result = api(port, "query?" + urllib.parse.urlencode({"query": query}))["result"]
            if result:
                return result
        except OSError:
            pass  # not listening yet
        time.sleep(0.3)
    raise AssertionError(f"no answer to {query}:\n{log.read_text()}")


def test_the_docs_alerts_and_dashboard_use_only_names_the_exporter_serves(
        any_redis, client, metrics_on, settings) -> None:
    settings.STREAMS_ADMIN = {**settings.STREAMS_ADMIN, "IDLE_THRESHOLD_MS": 0}
    scene(any_redis)
    served = {name.removesuffix("_total") for name, _ in scrape(client)}
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    exprs.append((ROOT / "docs" / "prometheus-alerts.yml").read_text())
    used = {name.removesuffix("_total") for expr in exprs
            for name in re.findall(r"\b(?:redis|streams_admin)_[a-z_]+", expr)}
    lacking = set() if server().has_lag else {n.removesuffix("_total") for n in NEEDS_REDIS_7}
    assert used and used <= served | lacking, used - served


def test_a_target_that_hangs_is_up_0_without_holding_the_scrape(r, client, metrics_on, settings,
                                                                 tmp_path: Path) -> None:
    r.xadd(b"orders", {b"a": b"1"})
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        path = tmp_path / "targets.toml"
        path.write_text(f'[targets.main]\nurl = "{settings.REDIS_URL}"\n\n[targets.hung]\n'
                        f'url = "redis://127.0.0.1:{silent.getsockname()[1]}/0"\n')
        settings.STREAMS_ADMIN_TARGETS = str(path)
        settings.STREAMS_ADMIN = {**settings.STREAMS_ADMIN, "METRICS_TIMEOUT": 2.0,
                                  "SOCKET_TIMEOUT": 6.0}  # the hung one outlasts the wait
        found = scrape(client)
    assert found["redis_up", (("target", "hung"),)] == 0
    assert found["redis_up", (("target", "main"),)] == 1
    assert found["redis_stream_length", (("stream", "orders"), ("target", "main"))] == 1


def test_the_example_alerts_fire_on_the_series_they_are_written_for(tmp_path: Path) -> None:
    """promtool's rule unit tests: each alert fires after its `for`, with its labels."""
    assert shutil.which("promtool"), "Debian's prometheus is missing: apt-get install prometheus"
    labels = 'target="default", stream="orders", group="billing"'
    cases = tmp_path / "alerts_test.yml"
    cases.write_text(ALERT_CASES.format(rules=ROOT / "docs" / "prometheus-alerts.yml",
                                        g=labels, y=labels.replace("=", ": ")))
    run = subprocess.run(["promtool", "test", "rules", str(cases)], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


ALERT_CASES = """
rule_files: ["{rules}"]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'redis_stream_group_time_lag_seconds{{{g}}}'
        values: '0 0 400x10'
      - series: 'redis_stream_group_consumer_stalled{{{g}, consumer="w1"}}'
        values: '0 1x10'
      - series: 'redis_stream_group_oldest_pending_seconds{{{g}}}'
        values: '0 700x10'
      - series: 'redis_up{{target="down"}}'
        values: '0x10'
    alert_rule_test:
      - eval_time: 4m
        alertname: StreamGroupTimeLagHigh
        exp_alerts: []
      - eval_time: 8m
        alertname: StreamGroupTimeLagHigh
        exp_alerts:
          - exp_labels: {{severity: warning, {y}}}
            exp_annotations: {{summary: "orders / billing is 6m 40s behind"}}
      - eval_time: 8m
        alertname: StreamConsumerStalled
        exp_alerts:
          - exp_labels: {{severity: warning, {y}, consumer: w1}}
            exp_annotations: {{summary: "consumer w1 of orders / billing is stalled"}}
      - eval_time: 8m
        alertname: StreamOldestPendingStuck
        exp_alerts:
          - exp_labels: {{severity: warning, {y}}}
            exp_annotations:
              summary: "orders / billing: oldest pending entry idle 11m 40s"
      - eval_time: 3m
        alertname: RedisTargetDown
        exp_alerts:
          - exp_labels: {{severity: critical, target: down}}
            exp_annotations: {{summary: "Redis target down is not answering the dashboard"}}
"""
