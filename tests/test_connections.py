"""Every URL form a deployment uses, on real servers: TLS (a CA and certificates made with
openssl here; verification on by default; a client certificate when the server asks for one),
a unix socket, an ACL user with a password, Sentinel following a failover; the pages, the
live sockets and the bus over them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model

from streams_admin.bus import EventBus
from streams_admin.bus.connect import options_from_env, parse_sentinel
from streams_admin.names import to_token
from streams_admin.stats import StatsConsumer
from tests.tls_server import SentinelSetup, TlsCluster, TlsRedisServer, make_ca, make_certs


def seed(r: redis.Redis) -> str:
    """A stream with a group holding one pending entry; its ID."""
    r.flushall()
    entry = r.xadd("s", {"event_type": "demo", "data": "{}"}).decode()
    r.xgroup_create("s", "g", id="0")
    r.xreadgroup("g", "c", {"s": ">"}, count=1)
    return entry


def pages(entry: str) -> list[str]:
    return ["/", "/streams/s/", "/streams/s/groups/g/", f"/streams/s/entries/{entry}/",
            "/tail/", "/dead-letters/", "/audit/"]


def assert_pages_work(client, entry: str) -> None:
    for page in pages(entry):
        response = client.get(page)
        assert response.status_code == 200, (page, response.content[:500])
    assert entry in client.get("/streams/s/groups/g/").content.decode()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_server(certs) -> Iterator[TlsRedisServer]:
    server = TlsRedisServer(certs).start()
    yield server
    server.stop()


@pytest.fixture
def on_tls(tls_server: TlsRedisServer, settings) -> Iterator[redis.Redis]:
    settings.REDIS_URL, settings.REDIS_OPTIONS = tls_server.url, tls_server.options
    client = tls_server.client()
    yield client
    client.close()


def test_pages_and_actions_work_over_tls(on_tls, operator_client) -> None:
    entry = seed(on_tls)
    assert_pages_work(operator_client, entry)
    response = operator_client.post("/streams/s/groups/g/ack/", {"ids": [entry]}, follow=True)
    assert "Acknowledged 1" in response.content.decode()
    assert on_tls.xpending("s", "g")["pending"] == 0


def test_a_server_certificate_from_another_ca_is_refused_with_a_banner(
        on_tls, tmp_path, settings, viewer_client) -> None:
    seed(on_tls)
    other_ca, _ = make_ca(tmp_path, "other-ca")
    settings.REDIS_OPTIONS = {"ssl_ca_certs": str(other_ca)}
    response = viewer_client.get("/")
    assert response.status_code == 503
    body = response.content.decode()
    assert "TLS certificate" in body and "not trusted" in body


def test_verification_is_on_by_default(on_tls, settings, viewer_client) -> None:
    """No CA given: the system's CAs, which never signed the test server's certificate."""
    seed(on_tls)
    settings.REDIS_OPTIONS = {}
    assert viewer_client.get("/").status_code == 503


def test_tls_files_with_a_plain_url_are_a_clear_error(r, settings) -> None:
    from streams_admin import redis as app_redis

    settings.REDIS_OPTIONS = {"ssl_ca_certs": "/tmp/ca.crt"}
    with pytest.raises(ValueError, match="not rediss://"):
        app_redis.client()


def test_a_client_certificate_when_the_server_asks_for_one(certs, settings,
                                                           viewer_client) -> None:
    server = TlsRedisServer(certs, auth_clients=True).start()
    try:
        entry = seed(server.client())
        settings.REDIS_URL = server.url
        settings.REDIS_OPTIONS = {"ssl_ca_certs": str(certs.ca)}  # no certificate: refused
        assert viewer_client.get("/").status_code == 503
        settings.REDIS_OPTIONS = server.options
        assert_pages_work(viewer_client, entry)
    finally:
        server.stop()


def test_the_environment_names_the_tls_files(certs) -> None:
    env = {"REDIS_TLS_CA": str(certs.ca), "REDIS_TLS_CERT": "c.crt", "REDIS_TLS_KEY": "c.key",
           "REDIS_USERNAME": "app", "REDIS_PASSWORD": "secret"}
    assert options_from_env(env) == {"ssl_ca_certs": str(certs.ca), "ssl_certfile": "c.crt",
                                     "ssl_keyfile": "c.key", "username": "app",
                                     "password": "secret"}
    assert options_from_env({"REDIS_TLS_VERIFY": "0"})["ssl_cert_reqs"] == "none"


def test_a_unix_socket(tls_server: TlsRedisServer, settings, viewer_client) -> None:
    entry = seed(tls_server.client())
    settings.REDIS_URL, settings.REDIS_OPTIONS = f"unix://{tls_server.socket}?db=0", {}
    assert_pages_work(viewer_client, entry)


@pytest.fixture
def acl_user(r: redis.Redis) -> Iterator[redis.Redis]:
    r.acl_setuser("app", enabled=True, passwords=["+s3cret"], keys=["*"], channels=["*"],
                  commands=["+@all"], reset=True)
    yield r
    r.acl_deluser("app")


def test_an_acl_user_with_a_password(acl_user, redis_server, settings, viewer_client) -> None:
    entry = seed(acl_user)
    settings.REDIS_OPTIONS = {"username": "app", "password": "s3cret"}
    assert_pages_work(viewer_client, entry)
    assert any(c["user"] == "app" for c in acl_user.client_list())
    settings.REDIS_OPTIONS = {}  # the same user in the URL
    settings.REDIS_URL = redis_server.url.replace("redis://", "redis://app:s3cret@")
    assert_pages_work(viewer_client, entry)


def test_a_wrong_password_is_a_banner_saying_so(acl_user, settings, viewer_client) -> None:
    settings.REDIS_OPTIONS = {"username": "app", "password": "wrong"}
    response = viewer_client.get("/")
    assert response.status_code == 503
    assert "username or password" in response.content.decode()


# -- live sockets and the bus over TLS ----------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_live_counts_and_tail_over_tls(on_tls) -> None:
    from streams_admin.consumers import TailConsumer

    on_tls.flushall()
    on_tls.xadd("s", {"n": "0"})
    staff = await get_user_model().objects.acreate_user("op", password="pw", is_staff=True)
    counts = WebsocketCommunicator(StatsConsumer.as_asgi(), f"/ws/stats/?key={to_token(b's')}")
    tail = WebsocketCommunicator(TailConsumer.as_asgi(), f"/ws/tail/?key={to_token(b's')}")
    counts.scope["user"] = tail.scope["user"] = staff
    assert (await counts.connect(timeout=10))[0] and (await tail.connect(timeout=10))[0]
    assert (await counts.receive_json_from(timeout=5))["streams"]["s"]["length"] == 1
    assert (await tail.receive_json_from(timeout=5))["type"] == "live"
    new_id = on_tls.xadd("s", {"n": "1"}).decode()
    message = await tail.receive_json_from(timeout=5)
    assert message["type"] == "entries" and message["last_id"] == new_id
    await counts.disconnect()
    await tail.disconnect()


async def test_the_bus_publishes_and_consumes_over_tls(tls_server: TlsRedisServer) -> None:
    await round_trip(EventBus(redis_url=tls_server.url, redis_options=tls_server.options,
                              prefix="tls-test:"))


async def round_trip(bus: EventBus) -> None:
    """An event published, consumed by a subscriber, the consumer stopped."""
    got: list[object] = []

    @bus.subscribe("ping")
    async def handle(data: object) -> None:
        got.append(data)

    consumer = asyncio.create_task(bus.start_consumer("g", "c"))
    await asyncio.sleep(0.5)
    await bus.publish("ping", {"n": 1})
    async with asyncio.timeout(10):
        while not got:
            await asyncio.sleep(0.05)
    await bus.stop_consumer()
    await consumer
    await bus.aclose()
    assert got == [{"n": 1}]


# -- Sentinel ----------------------------------------------------------------------------


def test_the_sentinel_url_form() -> None:
    target = parse_sentinel("redis+sentinel://u:p%40ss@h1:26379,h2,[::1]:26380/mymaster/2")
    assert target.sentinels == (("h1", 26379), ("h2", 26379), ("::1", 26380))
    assert (target.service, target.db, target.username, target.password) == (
        "mymaster", 2, "u", "p@ss")
    assert parse_sentinel("rediss+sentinel://h/svc").tls


@pytest.fixture(scope="module")
def sentinels() -> Iterator[SentinelSetup]:
    setup = SentinelSetup().start()
    yield setup
    setup.stop()


@pytest.mark.django_db(transaction=True)
async def test_live_counts_through_sentinel(sentinels: SentinelSetup, settings) -> None:
    settings.REDIS_URL, settings.REDIS_OPTIONS = sentinels.url, {}
    primary = redis.Redis(port=sentinels.primary_port())
    primary.flushall()
    primary.xadd("s", {"n": "0"})
    staff = await get_user_model().objects.acreate_user("op", password="pw", is_staff=True)
    counts = WebsocketCommunicator(StatsConsumer.as_asgi(), f"/ws/stats/?key={to_token(b's')}")
    counts.scope["user"] = staff
    assert (await counts.connect(timeout=10))[0]
    assert (await counts.receive_json_from(timeout=5))["streams"]["s"]["length"] == 1
    await counts.disconnect()


async def test_the_bus_through_sentinel(sentinels: SentinelSetup) -> None:
    await round_trip(EventBus(redis_url=sentinels.url, prefix="sentinel-test:"))
    bus = EventBus(redis_url=sentinels.url, prefix="sentinel-test:")
    assert await bus.publish("ping", {"n": 2})
    await bus.aclose()
    stream = redis.Redis(port=sentinels.primary_port()).xrange("sentinel-test:ping")
    assert len(stream) == 2


def test_pages_follow_a_sentinel_failover(sentinels: SentinelSetup, settings,
                                          operator_client) -> None:
    settings.REDIS_URL, settings.REDIS_OPTIONS = sentinels.url, {}
    primary = redis.Redis(port=sentinels.primary.port)
    entry = seed(primary)
    assert primary.wait(1, 5000) == 1  # the replica has it: the failover loses nothing
    assert_pages_work(operator_client, entry)
    new_port = sentinels.failover()
    assert new_port == sentinels.replica.port
    deadline, created = time.monotonic() + 30, False
    while not created:  # the banner maybe, for a moment; never a 500
        response = operator_client.get("/streams/s/")
        assert response.status_code in (200, 503)
        created = operator_client.post("/streams/s/create-group/", {"group": "after"},
                                       follow=True).status_code == 200 and bool(
            redis.Redis(port=new_port).xinfo_groups("s")[1:])
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert_pages_work(operator_client, entry)


# -- a cluster, its ACL user given as options ---------------------------------------------


@pytest.fixture
def cluster_user(rc, redis_cluster, settings) -> Iterator[redis.RedisCluster]:
    """An ACL user on every node, the app logging in with it from REDIS_OPTIONS (the URL
    has none): the cluster client, its per-node clients and the async ones all use it."""
    nodes = [redis.Redis.from_url(n.url) for n in redis_cluster.nodes if n.process]
    for node in nodes:
        node.acl_setuser("app", enabled=True, passwords=["+s3cret"], keys=["*"],
                         channels=["*"], commands=["+@all"], reset=True)
    settings.REDIS_OPTIONS = {"username": "app", "password": "s3cret"}
    yield rc
    for node in nodes:
        node.acl_deluser("app")
        node.close()


def test_cluster_pages_with_an_acl_user_from_the_options(cluster_user, viewer_client) -> None:
    entry = cluster_user.xadd("s", {"event_type": "demo", "data": "{}"}).decode()
    cluster_user.xgroup_create("s", "g", id="0")
    cluster_user.xreadgroup("g", "c", {"s": ">"}, count=1)
    assert_pages_work(viewer_client, entry)
    node = cluster_user.get_node_from_key("s")
    assert any(c["user"] == "app" for c in cluster_user.client_list(target_nodes=node))


@pytest.mark.django_db(transaction=True)
async def test_cluster_tail_with_an_acl_user_from_the_options(cluster_user) -> None:
    from streams_admin.consumers import TailConsumer

    cluster_user.xadd("s", {"n": "0"})
    staff = await get_user_model().objects.acreate_user("op", password="pw", is_staff=True)
    tail = WebsocketCommunicator(TailConsumer.as_asgi(), f"/ws/tail/?key={to_token(b's')}")
    tail.scope["user"] = staff
    assert (await tail.connect(timeout=10))[0]
    assert (await tail.receive_json_from(timeout=10))["type"] == "live"
    new_id = cluster_user.xadd("s", {"n": "1"}).decode()
    message = await tail.receive_json_from(timeout=10)
    assert message["type"] == "entries" and message["last_id"] == new_id
    await tail.disconnect()


# -- a cluster over TLS -------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_cluster(certs) -> Iterator[TlsCluster]:
    cluster = TlsCluster(certs).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def on_tls_cluster(tls_cluster: TlsCluster, settings) -> Iterator[redis.RedisCluster]:
    settings.REDIS_URL = tls_cluster.url
    settings.REDIS_OPTIONS = {"ssl_ca_certs": str(tls_cluster.certs.ca)}
    client = redis.RedisCluster.from_url(tls_cluster.url, ssl_ca_certs=str(tls_cluster.certs.ca))
    client.flushall(target_nodes=redis.RedisCluster.PRIMARIES)
    yield client
    client.close()


def test_cluster_pages_over_tls(on_tls_cluster, viewer_client) -> None:
    entry = on_tls_cluster.xadd("s", {"event_type": "demo", "data": "{}"}).decode()
    on_tls_cluster.xgroup_create("s", "g", id="0")
    on_tls_cluster.xreadgroup("g", "c", {"s": ">"}, count=1)
    assert_pages_work(viewer_client, entry)


@pytest.mark.django_db(transaction=True)
async def test_cluster_tail_and_counts_over_tls(on_tls_cluster) -> None:
    from streams_admin.consumers import TailConsumer

    on_tls_cluster.xadd("s", {"n": "0"})
    staff = await get_user_model().objects.acreate_user("op", password="pw", is_staff=True)
    tail = WebsocketCommunicator(TailConsumer.as_asgi(), f"/ws/tail/?key={to_token(b's')}")
    counts = WebsocketCommunicator(StatsConsumer.as_asgi(), f"/ws/stats/?key={to_token(b's')}")
    tail.scope["user"] = counts.scope["user"] = staff
    assert (await tail.connect(timeout=10))[0] and (await counts.connect(timeout=10))[0]
    assert (await tail.receive_json_from(timeout=10))["type"] == "live"
    assert (await counts.receive_json_from(timeout=10))["streams"]["s"]["length"] == 1
    new_id = on_tls_cluster.xadd("s", {"n": "1"}).decode()
    message = await tail.receive_json_from(timeout=10)
    assert message["type"] == "entries" and message["last_id"] == new_id
    await tail.disconnect()
    await counts.disconnect()


def test_a_targets_file_names_a_tls_target_with_an_acl_user_beside_a_plain_one(
        tls_server: TlsRedisServer, r, redis_server, settings, tmp_path, monkeypatch,
        viewer_client) -> None:
    """The two halves meet: a [targets.NAME] table's CA file and password_env reach every
    client of that target, while the plain target beside it needs neither."""
    secure = tls_server.client()
    entry = seed(secure)
    secure.acl_setuser("viewer", enabled=True, passwords=["+v13wer"], keys=["*"],
                       commands=["+@all"])
    r.xadd("plain-only", {"x": "1"})
    monkeypatch.setenv("SECURE_REDIS_PASSWORD", "v13wer")
    path = tmp_path / "targets.toml"
    path.write_text(f"""
[targets.plain]
url = "{redis_server.url}"
[targets.secure]
url = "{tls_server.url}"
ca = "{tls_server.certs.ca}"
username = "viewer"
password_env = "SECURE_REDIS_PASSWORD"
""")
    settings.STREAMS_ADMIN_TARGETS = str(path)
    assert "plain-only" in viewer_client.get("/t/plain/").content.decode()
    secure_group = viewer_client.get("/t/secure/streams/s/groups/g/")
    assert secure_group.status_code == 200 and entry in secure_group.content.decode()
    assert b"plain-only" not in viewer_client.get("/t/secure/").content
    assert any(c["user"] == "viewer" for c in secure.client_list())
