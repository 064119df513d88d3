"""Several named targets on real servers: switching, per-target permissions and read-only,
the audit row's target, a down target's banner beside one that works, sockets per target,
the targets page, and config errors that name the file, the target and the field."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Group
from django.core.exceptions import ImproperlyConfigured

from streams_admin import consumers, stats, targets
from streams_admin.models import AuditEntry
from streams_admin.names import to_token
from streams_admin.redis import server_from_info
from streams_admin.routing import websocket_urlpatterns
from tests.redis_server import RedisServer, free_port

S, G = b"orders", b"ship"


@pytest.fixture(scope="module")
def prod_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def prod(prod_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(prod_server.url)
    client.flushall()
    yield client
    client.close()


def scene(r: redis.Redis, marker: str) -> None:
    """orders, with one entry pending in ship, and a stream only this server has."""
    r.xadd(S, {"a": "1"}, id="1-0")
    r.xgroup_create(S, G, id="0")
    r.xreadgroup(G, "c1", {S: ">"})
    r.xadd(f"only-{marker}", {"x": "1"})


@pytest.fixture
def two(r: redis.Redis, prod: redis.Redis, redis_server: RedisServer, prod_server: RedisServer,
        settings, tmp_path: Path) -> tuple[redis.Redis, redis.Redis]:
    """staging (the suite's server, the default), prod (its own; only "Prod operators" may act
    there) and down (a server that is stopped)."""
    scene(r, "staging")
    scene(prod, "prod")
    stopped = RedisServer()  # never started: nothing listens there
    path = tmp_path / "targets.toml"
    path.write_text(f"""
default = "staging"
[targets.prod]
url = "{prod_server.url}"
operate = ["Prod operators"]
[targets.staging]
url = "{redis_server.url}"
[targets.down]
url = "{stopped.url}"
[targets.frozen]
url = "{redis_server.url}"
read_only = true
[targets.scoped]
url = "{redis_server.url}"
key_pattern = "only-*"
""")
    settings.STREAMS_ADMIN_TARGETS = str(path)
    return r, prod


def operator(client, django_user_model, *groups: str):
    user = django_user_model.objects.create_user("op", password="pw", is_staff=True)
    for name in ("Streams operator", *groups):
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    client.force_login(user)
    return client


def pending(r: redis.Redis) -> int:
    return r.xpending(S, G)["pending"]


@pytest.mark.django_db
def test_each_target_shows_its_own_streams_and_links_carry_it(two, client,
                                                              django_user_model) -> None:
    operator(client, django_user_model)
    staging = client.get("/t/staging/").content.decode()
    prod = client.get("/t/prod/").content.decode()
    assert "only-staging" in staging and "only-prod" not in staging
    assert "only-prod" in prod and "only-staging" not in prod
    assert 'href="/t/prod/streams/orders/"' in prod  # every link stays on the target
    assert 'href="/t/prod/audit/"' in prod
    # The switcher: a link to each target (no JavaScript needed), the served one marked.
    assert '<a href="/t/staging/">staging</a>' in prod
    assert '<a href="/t/prod/" aria-current="page">prod</a>' in prod
    assert 'data-prefix="/t/prod/"' in prod  # where its sockets connect
    # A URL without /t/ is the default target's; an unknown target is a 404.
    assert "only-staging" in client.get("/").content.decode()
    assert client.get("/t/nope/").status_code == 404
    assert client.get("/t/prod").status_code == 302


@pytest.mark.django_db
def test_operate_staging_but_only_view_prod(two, client, django_user_model) -> None:
    r, prod = two
    operator(client, django_user_model)
    page = client.get("/t/prod/streams/orders/groups/ship/").content.decode()
    assert "data-select-all" not in page  # no action offered
    refused = client.post("/t/prod/streams/orders/groups/ship/ack/", {"ids": ["1-0"]})
    assert refused.status_code == 403 and pending(prod) == 1
    staging = client.get("/t/staging/streams/orders/groups/ship/").content.decode()
    assert 'action="/t/staging/streams/orders/groups/ship/ack/"' in staging
    assert "data-select-all" in staging
    done = client.post("/t/staging/streams/orders/groups/ship/ack/", {"ids": ["1-0"]})
    assert done.status_code == 302 and pending(r) == 0 and pending(prod) == 1
    # The audit rows say where: the refusal on prod, the ack on staging.
    rows = {(row.target, row.ok) for row in AuditEntry.objects.all()}
    assert rows == {("prod", False), ("staging", True)}
    assert "ack" in client.get("/t/staging/audit/").content.decode()
    assert "No actions recorded" not in client.get("/t/prod/audit/").content.decode()


@pytest.mark.django_db
def test_the_groups_a_target_names_may_operate_it(two, client, django_user_model) -> None:
    _, prod = two
    operator(client, django_user_model, "Prod operators")
    done = client.post("/t/prod/streams/orders/groups/ship/ack/", {"ids": ["1-0"]})
    assert done.status_code == 302 and pending(prod) == 0
    assert AuditEntry.objects.get().target == "prod"


@pytest.mark.django_db
def test_a_target_only_some_groups_may_view(two, client, django_user_model, settings,
                                            tmp_path: Path) -> None:
    path = Path(settings.STREAMS_ADMIN_TARGETS)
    path.write_text(path.read_text().replace('operate = ["Prod operators"]',
                                             'view = ["Prod viewers"]'))
    settings.STREAMS_ADMIN_TARGETS = str(path)  # read again
    operator(client, django_user_model)
    assert client.get("/t/prod/").status_code == 403
    staging = client.get("/t/staging/").content.decode()
    assert "/t/prod/" not in staging  # the switcher leaves it out


@pytest.mark.django_db
def test_a_read_only_target_refuses_every_action_and_shows_none(two, client,
                                                                django_user_model) -> None:
    r, _ = two
    operator(client, django_user_model)
    page = client.get("/t/frozen/streams/orders/groups/ship/").content.decode()
    assert "data-select-all" not in page and "read-only" in page
    refused = client.post("/t/frozen/streams/orders/groups/ship/ack/", {"ids": ["1-0"]})
    assert refused.status_code == 403 and pending(r) == 1
    row = AuditEntry.objects.get()
    assert (row.target, row.ok) == ("frozen", False)
    assert row.result == "refused: this target is read-only"


@pytest.mark.django_db
def test_each_target_has_its_own_key_pattern(two, client, django_user_model) -> None:
    operator(client, django_user_model)
    scoped = client.get("/t/scoped/").content.decode()
    assert "only-staging" in scoped and 'href="/t/scoped/streams/orders/"' not in scoped
    assert client.get("/t/scoped/streams/orders/").status_code == 404
    assert client.get("/t/staging/streams/orders/").status_code == 200  # the same server


@pytest.mark.django_db
def test_a_down_target_gives_its_own_pages_the_banner_only(two, r, client, django_user_model,
                                                           settings) -> None:
    operator(client, django_user_model)
    down = client.get("/t/down/streams/orders/")
    assert down.status_code == 503
    assert "Target down: Redis is not answering." in down.content.decode()
    assert client.get("/t/staging/streams/orders/").status_code == 200
    assert client.get("/t/prod/").status_code == 200
    page = client.get("/t/staging/targets/").content.decode()
    rows = {row.split('"', 1)[0]: row for row in page.split('data-target="')[1:]}
    running = server_from_info(r.info("server"))  # whichever server the run is on
    assert ">up<" in rows["staging"] and " ms<" in rows["prod"]
    assert f"{running.flavour} {running.version_text}<" in rows["staging"]
    assert ">down<" in rows["down"] and "Connection refused" in rows["down"]
    assert ">read-only<" in rows["frozen"]


@pytest.mark.django_db
def test_a_target_that_hangs_is_down_on_the_targets_page(two, client, django_user_model,
                                                        settings, tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        path = Path(settings.STREAMS_ADMIN_TARGETS)
        port = silent.getsockname()[1]
        path.write_text(path.read_text() + f'[targets.hung]\nurl = "redis://127.0.0.1:{port}/0"\n')
        settings.STREAMS_ADMIN_TARGETS = str(path)
        settings.STREAMS_ADMIN = {"SOCKET_TIMEOUT": 0.3, "CONNECT_TIMEOUT": 0.3}
        operator(client, django_user_model)
        page = client.get("/targets/").content.decode()
    rows = {row.split('"', 1)[0]: row for row in page.split('data-target="')[1:]}
    assert ">down<" in rows["hung"] and ">up<" in rows["staging"] and ">up<" in rows["prod"]


@pytest.mark.django_db(transaction=True)
async def test_under_asgi_too_links_carry_the_target(two, django_user_model) -> None:
    """Daphne's way: the middleware runs in a thread of its own; the prefix follows it there."""
    from asgiref.sync import sync_to_async
    from django.test import AsyncClient

    client = AsyncClient()
    await sync_to_async(operator)(client, django_user_model)
    prod = (await client.get("/t/prod/")).content.decode()
    assert 'href="/t/prod/streams/orders/"' in prod and "only-prod" in prod
    default = (await client.get("/")).content.decode()
    assert 'href="/streams/orders/"' in default and "only-staging" in default


async def open_socket(user, path: str) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
    communicator.scope["user"] = user
    assert (await communicator.connect(timeout=5))[0]
    return communicator


async def next_of(communicator: WebsocketCommunicator, kind: str) -> dict:
    while (message := await communicator.receive_json_from(timeout=5))["type"] != kind:
        pass
    return message


@pytest.mark.django_db(transaction=True)
async def test_sockets_are_per_target(two, django_user_model, settings) -> None:
    r, prod = two
    settings.STREAMS_ADMIN = {"STATS_INTERVAL": 0.2}
    user = await django_user_model.objects.acreate(username="v", is_staff=True)
    query = f"key={to_token(S)}"
    tails = {name: await open_socket(user, f"/t/{name}/ws/tail/?{query}")
             for name in ("staging", "prod")}
    for tail in tails.values():
        assert (await next_of(tail, "live"))["type"] == "live"
    prod.xadd(S, {"where": "prod"}, id="5-0")
    r.xadd(S, {"where": "staging"}, id="7-0")
    for name, entry_id in (("prod", "5-0"), ("staging", "7-0")):
        rows = (await next_of(tails[name], "entries"))["rows"]
        assert len(rows) == 1 and f'data-id="{entry_id}"' in rows[0]
        assert f'href="/t/{name}/streams/orders/' in rows[0]
    for server in (r, prod):  # a tail's readers per target, each on its own server
        assert "streams-admin:tail-read" in {c["name"] for c in server.client_list()}
    counts = {name: await open_socket(user, f"/t/{name}/ws/stats/?{query}")
              for name in ("staging", "prod")}
    lengths = {name: (await next_of(c, "stats"))["streams"][to_token(S)]["length"]
               for name, c in counts.items()}
    assert lengths == {"staging": 2, "prod": 2}
    prod.xadd(S, {"more": "1"})
    assert (await next_of(counts["prod"], "stats"))["streams"][to_token(S)]["length"] == 3
    for server in (r, prod):  # a sampler per target, each on its own server
        assert stats.CLIENT_NAME in {c["name"] for c in server.client_list()}
    for communicator in (*tails.values(), *counts.values()):
        await communicator.disconnect()
    hubs = consumers._hubs[asyncio.get_running_loop()]
    assert set(hubs) == {"staging", "prod"} and all(hub.readers == {} for hub in hubs.values())


async def test_a_socket_for_an_unknown_target_is_refused(two) -> None:
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/t/nope/ws/tail/")
    connected, code = await communicator.connect(timeout=5)
    assert not connected and code == 4404


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "targets.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(("text", "says"), [
    ('[targets.prod]\nurl = "redis://h/0"\npassword_env = "NO_SUCH_VARIABLE_SET"\n',
     "target 'prod', field 'password_env': the environment variable NO_SUCH_VARIABLE_SET "
     "is not set"),
    ('[targets.prod]\nurl = "http://h/"\n', "target 'prod', field 'url': not a redis://"),
    ('[targets.prod]\n', "target 'prod', field 'url': missing"),
    ('[targets.prod]\nurl = "redis://h/0"\nread_onyl = true\n',
     "target 'prod', field 'read_onyl': unknown field"),
    ('[targets.prod]\nurl = "redis://h/0"\nread_only = "yes"\n',
     "target 'prod', field 'read_only': true or false"),
    ('[targets.prod]\nurl = "redis://h/0"\noperate = "ops"\n',
     "target 'prod', field 'operate': a list of Django group names"),
    ('[targets.prod]\nurl = "redis://h/0"\nca = "/no/such/ca.pem"\n',
     "target 'prod', field 'ca': no file at /no/such/ca.pem"),
    ('[targets."a b"]\nurl = "redis://h/0"\n', "target 'a b': a name is letters"),
    ('default = "nope"\n[targets.prod]\nurl = "redis://h/0"\n', "field 'default': no target"),
    ('url = "redis://h/0"\n', "field 'targets': no [targets.NAME] table"),
    ('[targets.prod\n', "targets.toml: "),
])
def test_config_errors_name_the_file_target_and_field(tmp_path: Path, text: str,
                                                      says: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ImproperlyConfigured) as raised:
        targets.load(path)
    assert str(raised.value).startswith(f"STREAMS_ADMIN_TARGETS: {path}")
    assert says in str(raised.value)


def test_a_mistake_in_the_file_stops_the_start(tmp_path: Path) -> None:
    path = write(tmp_path, '[targets.prod]\nurl = "redis://h/0"\npassword_env = "NOT_SET_HERE"\n')
    env = {k: v for k, v in os.environ.items() if k != "NOT_SET_HERE"}
    env |= {"SECRET_KEY": "tests-only", "STREAMS_ADMIN_TARGETS": path,
            "DJANGO_SETTINGS_MODULE": "dashboard.settings"}
    run = subprocess.run([sys.executable, "manage.py", "check"], cwd=Path(__file__).parent.parent,
                         env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert f"{path}, target 'prod', field 'password_env'" in run.stderr


def test_secrets_come_from_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PROD_REDIS_PASSWORD", "s3cret")
    path = write(tmp_path, '[targets.prod]\nurl = "rediss://h:6380/0"\nusername = "dash"\n'
                           'password_env = "PROD_REDIS_PASSWORD"\nverify = false\n')
    prod = targets.load(path)["prod"]
    assert dict(prod.options) == {"username": "dash", "password": "s3cret",
                                  "ssl_cert_reqs": "none", "ssl_check_hostname": False}
    assert "s3cret" not in repr(prod)


def test_redis_url_alone_is_the_default_target(settings) -> None:
    settings.STREAMS_ADMIN_TARGETS = ""
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    assert [(t.name, t.url) for t in targets.configured().values()] == [
        ("default", settings.REDIS_URL)]
