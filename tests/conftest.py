from __future__ import annotations

import importlib
import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import redis

from tests.cluster_server import RedisCluster
from tests.redis_server import ENV, RedisServer, chosen

# A test that uses one of these talks to the chosen server: marked `redis`, so
# `pytest -m redis` runs what differs between servers (STREAMS_ADMIN_TEST_SERVER).
POSTGRES_ADMIN_URL = os.environ.get("POSTGRES_ADMIN_URL",
                                    "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_FIXTURES = {"r", "rc", "any_redis", "redis_server", "redis_cluster",
                  "redis_url", "cluster_url", "make_bus"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "redis: talks to the chosen Redis or Valkey server")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if REDIS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.redis)


def pytest_report_header() -> str:
    return f"server: {chosen()} ({ENV})"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def r(redis_server: RedisServer, settings) -> Iterator[redis.Redis]:
    """A bytes client on the suite's own, emptied redis-server; the app is pointed at it."""
    if redis_server.process is None:
        redis_server.start()
    settings.REDIS_URL = redis_server.url
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A real cluster (3 primaries, 3 replicas), started once, only when a test asks."""
    cluster = RedisCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["standalone", "cluster"])
def any_redis(request, settings) -> Iterator[redis.Redis]:
    """An emptied standalone server or cluster, the app pointed at it (REDIS_URL names one
    node, as a user would): each screen test runs on both."""
    if request.param == "standalone":
        yield request.getfixturevalue("r")
        return
    yield request.getfixturevalue("rc")


@pytest.fixture
def rc(redis_cluster: RedisCluster, settings) -> Iterator[redis.RedisCluster]:
    """The emptied cluster, the app pointed at it (REDIS_URL names one node)."""
    redis_cluster.wait_ok()  # a test that killed a node left the cluster failing over
    settings.REDIS_URL = redis_cluster.url
    client = redis_cluster.client()
    client.flushall(target_nodes=redis.RedisCluster.PRIMARIES)
    yield client
    client.close()


def role_client(client, django_user_model, role: str | None, username: str):
    """A logged-in staff user in one of the roles the migrations create."""
    from django.contrib.auth.models import Group, Permission

    user = django_user_model.objects.create_user(username, password="pw", is_staff=True)
    if role:
        group, made = Group.objects.get_or_create(name=role)
        if made:  # a transactional test's flush removed the rows the migration made
            codenames = importlib.import_module("streams_admin.migrations.0002_roles").ROLES[role]
            group.permissions.set(Permission.objects.filter(
                content_type__app_label="streams_admin", codename__in=codenames))
        user.groups.add(group)
    client.force_login(user)
    return client


@pytest.fixture
def viewer_client(client, django_user_model, db):
    return role_client(client, django_user_model, "Streams viewer", "viewer")


@pytest.fixture
def operator_client(client, django_user_model, db):
    return role_client(client, django_user_model, "Streams operator", "operator")


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A database of its own on the local PostgreSQL (trust auth, as on the project's machines;
    POSTGRES_ADMIN_URL names another), dropped afterwards. Fails, loudly, when none answers."""
    name = f"streams_admin_test_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL does not answer at {POSTGRES_ADMIN_URL} ({exc}); start it "
                    "(pg_ctlcluster ... main start) or set POSTGRES_ADMIN_URL")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        finally:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
