"""Who may do what: every action endpoint for every role; CSRF; GET never changes Redis."""

from __future__ import annotations

import pytest
import redis
from django.test import Client
from django.urls import reverse

from streams_admin.models import AuditEntry
from tests.conftest import role_client

pytestmark = pytest.mark.django_db

S, G, DLQ = b"orders", b"ship", b"agent:stream:deadletter:x"
OPERATE, ADMIN = "operate", "admin"
# (url name, URL arguments, who may, form)
ENDPOINTS = [
    ("ack", [S, G], OPERATE, {"ids": ["1-0"]}),
    ("claim", [S, G], OPERATE, {"ids": ["1-0"], "to": "c2"}),
    ("claim-idle", [S, G], OPERATE, {"to": "c2", "min_idle": "0"}),
    ("requeue", [S, G], OPERATE, {"ids": ["1-0"]}),
    ("dead-letter", [S, G], OPERATE, {"ids": ["1-0"]}),
    ("ack-matching", [S, G], OPERATE, {"confirm": "ship"}),
    ("create-consumer", [S, G], OPERATE, {"consumer": "c3"}),
    ("create-group", [S], OPERATE, {"group": "g2", "start": "$"}),
    ("redrive", [DLQ], OPERATE, {"all": "1"}),
    ("publish", [], OPERATE, {"event_type": "x", "data": "{}"}),
    ("set-id", [S, G], ADMIN, {"position": "0"}),
    ("destroy-group", [S, G], ADMIN, {"confirm": "ship"}),
    ("delete-consumer", [S, G, b"c1"], ADMIN, {"confirm": "c1"}),
    ("trim", [S], ADMIN, {"strategy": "maxlen", "threshold": "1", "confirm": "orders",
                          "override": "1"}),
    ("delete-entries", [S], ADMIN, {"ids": ["1-0"]}),
    ("delete-stream", [S], ADMIN, {"confirm": "orders"}),
]
ROLES = {"viewer": "Streams viewer", "operator": "Streams operator", "admin": "Streams admin"}
MAY = {"viewer": set(), "operator": {OPERATE}, "admin": {OPERATE, ADMIN}}


@pytest.fixture
def scene(r: redis.Redis) -> redis.Redis:
    r.xadd(S, {"a": "1"}, id="1-0")
    r.xadd(S, {"a": "2"}, id="2-0")
    r.xgroup_create(S, G, id="0")
    r.xreadgroup(G, "c1", {S: ">"})
    return r


def snapshot(r: redis.Redis) -> dict:
    state = {}
    for key in sorted(r.scan_iter()):
        groups = r.xinfo_groups(key)
        state[key] = (r.xrange(key), [(g["name"], g["last-delivered-id"], g["pending"])
                                      for g in groups],
                      [[(p["message_id"], p["consumer"], p["times_delivered"])
                        for p in r.xpending_range(key, g["name"], "-", "+", 100)]
                       for g in groups])
    return state


@pytest.mark.parametrize(("name", "args", "level", "form"), ENDPOINTS,
                         ids=[e[0] for e in ENDPOINTS])
@pytest.mark.parametrize("role", list(ROLES))
def test_permission_matrix(client, django_user_model, scene, role, name, args, level, form):
    role_client(client, django_user_model, ROLES[role], role)
    before = snapshot(scene)
    response = client.post(reverse(f"streams_admin:{name}", args=args), form)
    if level in MAY[role]:
        assert response.status_code in (200, 302), response.content[:300]
    else:
        assert response.status_code == 403
        assert snapshot(scene) == before
        row = AuditEntry.objects.get()
        assert (row.action, row.ok, row.username) == (name, False, role)
        assert row.result == "refused: you may not do this"


@pytest.mark.parametrize(("name", "args", "level", "form"), ENDPOINTS,
                         ids=[e[0] for e in ENDPOINTS])
def test_anonymous_is_sent_to_log_in(client, scene, name, args, level, form) -> None:
    before = snapshot(scene)
    response = client.post(reverse(f"streams_admin:{name}", args=args), form)
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert snapshot(scene) == before


@pytest.mark.parametrize(("name", "args", "level", "form"), ENDPOINTS,
                         ids=[e[0] for e in ENDPOINTS])
def test_read_only_refuses_everything(admin_client, scene, settings, name, args, level, form):
    settings.STREAMS_ADMIN = {"READ_ONLY": True}
    before = snapshot(scene)
    response = admin_client.post(reverse(f"streams_admin:{name}", args=args), form)
    assert response.status_code == 403 and snapshot(scene) == before
    assert AuditEntry.objects.get().result == "refused: the dashboard is read-only"


@pytest.mark.parametrize(("name", "args", "level", "form"), ENDPOINTS,
                         ids=[e[0] for e in ENDPOINTS])
def test_get_never_changes_redis(admin_client, scene, name, args, level, form) -> None:
    before = snapshot(scene)
    query = "&".join(f"{k}={v}" for k, v in form.items() if isinstance(v, str))
    response = admin_client.get(reverse(f"streams_admin:{name}", args=args) + "?" + query)
    assert response.status_code in (200, 405)
    assert snapshot(scene) == before
    assert not AuditEntry.objects.exists()


@pytest.mark.parametrize(("name", "args", "level", "form"), ENDPOINTS,
                         ids=[e[0] for e in ENDPOINTS])
def test_csrf_is_enforced(django_user_model, scene, name, args, level, form) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(django_user_model.objects.create_superuser("root", password="pw"))
    before = snapshot(scene)
    response = client.post(reverse(f"streams_admin:{name}", args=args), form)
    assert response.status_code == 403 and snapshot(scene) == before


def test_buttons_follow_the_role(client, django_user_model, scene) -> None:
    group_url = reverse("streams_admin:group", args=[S, G])
    stream_url = reverse("streams_admin:stream", args=[S])
    seen = {}
    for role in ROLES:
        c = role_client(Client(), django_user_model, ROLES[role], role)
        page = c.get(group_url).content.decode() + c.get(stream_url).content.decode()
        seen[role] = {label for label in ("Claim all", "Requeue", "Destroy group…", "Trim…",
                                          "Create group", "Publish an event") if label in page}
    assert seen["viewer"] == set()
    assert seen["operator"] == {"Claim all", "Requeue", "Create group", "Publish an event"}
    assert seen["admin"] == seen["operator"] | {"Destroy group…", "Trim…"}
