"""Security basics: login throttling, the Content-Security-Policy, TLS settings from the
environment, and the one permission rule every caller goes through."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import redis
from channels.testing import WebsocketCommunicator
from django.core.management import call_command
from django.urls import reverse

from streams_admin import permissions
from streams_admin.consumers import TailConsumer
from streams_admin.models import AuditEntry
from streams_admin.stats import StatsConsumer

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent
S, G = b"orders", b"ship"


def try_login(client, username: str, password: str, address: str = "10.0.0.1"):
    return client.post(reverse("login"), {"username": username, "password": password},
                       REMOTE_ADDR=address)


def logged_in(client) -> bool:
    return client.get(reverse("streams_admin:audit")).status_code == 200


@pytest.fixture
def admin(django_user_model):
    return django_user_model.objects.create_superuser("boss", password="right")


# -- login throttling -------------------------------------------------------------------


def test_the_right_password_is_refused_after_ten_wrong_ones(client, admin, r) -> None:
    statuses = [try_login(client, "boss", "wrong").status_code for _ in range(10)]
    assert statuses == [200] * 9 + [429]  # the tenth failure locks
    response = try_login(client, "boss", "right")
    page = response.content.decode()
    assert response.status_code == 429
    assert "Too many failed attempts" in page and "Try again in 15 minutes" in page
    assert "axes_reset" in page
    assert not logged_in(client)


def test_nine_wrong_passwords_do_not_lock_anyone_out(client, admin, r) -> None:
    for _ in range(9):
        try_login(client, "boss", "wrong")
    assert try_login(client, "boss", "right").status_code == 302
    assert logged_in(client)


def test_a_lockout_holds_one_username_from_one_address_only(client, admin, r, django_user_model):
    """A guesser cannot lock the admin out from everywhere: the lock is per username *and*
    address."""
    django_user_model.objects.create_user("other", password="pw", is_staff=True)
    for _ in range(10):
        try_login(client, "boss", "wrong", "10.0.0.1")
    assert try_login(client, "boss", "right", "10.0.0.1").status_code == 429
    assert try_login(client, "other", "pw", "10.0.0.1").status_code == 302
    client.logout()
    assert try_login(client, "boss", "right", "10.0.0.2").status_code == 302


def test_axes_reset_lifts_the_lockout(client, admin, r) -> None:
    for _ in range(10):
        try_login(client, "boss", "wrong")
    assert try_login(client, "boss", "right").status_code == 429
    call_command("axes_reset", verbosity=0)
    assert try_login(client, "boss", "right").status_code == 302


def test_behind_a_trusted_proxy_the_forwarded_address_counts(client, admin, r, settings):
    settings.TRUST_PROXY_FORWARDED_FOR = True
    for _ in range(10):  # all through one proxy at 10.0.0.9, from the guesser's 203.0.113.5
        client.post(reverse("login"), {"username": "boss", "password": "wrong"},
                    REMOTE_ADDR="10.0.0.9", HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.5")
    assert client.post(reverse("login"), {"username": "boss", "password": "right"},
                       REMOTE_ADDR="10.0.0.9",
                       HTTP_X_FORWARDED_FOR="203.0.113.5").status_code == 429
    assert client.post(reverse("login"), {"username": "boss", "password": "right"},
                       REMOTE_ADDR="10.0.0.9",
                       HTTP_X_FORWARDED_FOR="198.51.100.7").status_code == 302


# -- Content-Security-Policy ------------------------------------------------------------


def csp(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {name: values for name, *values in (part.split() for part in header.split(";"))}


@pytest.fixture
def scene(r: redis.Redis) -> redis.Redis:
    r.xadd(S, {"a": "1"}, id="1-0")
    r.xadd(S, {"a": "2"}, id="2-0")
    r.xgroup_create(S, G, id="0")
    r.xreadgroup(G, "c1", {S: ">"})
    r.xadd(b"agent:stream:deadletter:x", {"a": "1"})
    return r


PAGES = [
    ("overview", []), ("firehose", []), ("dead-letters", []), ("audit", []),
    ("stream", [S]), ("tail", [S]), ("entry", [S, "1-0"]), ("group", [S, G]),
    ("trim", [S]), ("delete-stream", [S]), ("destroy-group", [S, G]), ("set-id", [S, G]),
    ("ack-matching", [S, G]), ("delete-consumer", [S, G, b"c1"]),
]


class _Scripts(HTMLParser):
    """Inline scripts and event-handler attributes: what a policy without 'unsafe-inline'
    blocks. A <script type="application/json"> is a data block, never run (the charts' data)."""

    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "script" and not named.get("src") and named.get("type") != "application/json":
            self.inline.append("<script> without src")
        self.inline += [f"{tag} {name}=" for name, _ in attrs if name.startswith("on")]
        self.inline += [f"{tag} {name}=" for name, value in attrs
                        if (value or "").strip().lower().startswith("javascript:")]


def inline_scripts(html: bytes) -> list[str]:
    parser = _Scripts()
    parser.feed(html.decode())
    return parser.inline


@pytest.mark.parametrize(("name", "args"), PAGES, ids=[p[0] for p in PAGES])
def test_every_page_has_a_policy_and_no_inline_script(admin_client, scene, name, args) -> None:
    response = admin_client.get(reverse(f"streams_admin:{name}", args=args))
    assert response.status_code == 200
    policy = csp(response)
    assert policy["script-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"] and policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"] and policy["form-action"] == ["'self'"]
    assert inline_scripts(response.content) == []


def test_the_login_progress_lockout_and_error_pages_too(client, admin_client, admin, scene,
                                                        settings) -> None:
    settings.STREAMS_ADMIN = {"ACTION_BUDGET": 1, "ACTION_CHUNK": 1}
    progress = admin_client.post(reverse("streams_admin:claim-idle", args=[S, G]),
                                 {"from": "", "to": "c2", "min_idle": "0"})
    assert "Working…" in progress.content.decode()
    missing = admin_client.get(reverse("streams_admin:stream", args=[b"nothing"]))
    assert missing.status_code == 404
    for _ in range(10):
        try_login(client, "nobody", "wrong")
    locked = try_login(client, "nobody", "wrong")
    assert locked.status_code == 429
    for response in (client.get(reverse("login")), progress, missing, locked):
        assert "'unsafe-inline'" not in csp(response)["script-src"]
        assert inline_scripts(response.content) == []


# -- TLS settings from the environment --------------------------------------------------


def settings_under(**env: str) -> dict:
    code = ("import json, dashboard.settings as s; print(json.dumps({n: getattr(s, n, None) "
            "for n in ('SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SECURE_HSTS_SECONDS', "
            "'SECURE_SSL_REDIRECT', 'SECURE_PROXY_SSL_HEADER')}))")
    clean = {k: v for k, v in os.environ.items() if k not in {
        "SECURE_COOKIES", "SECURE_HSTS_SECONDS", "SECURE_SSL_REDIRECT", "TRUST_PROXY_TLS_HEADER"}}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**clean, "SECRET_KEY": "x", **env}, check=True, timeout=60)
    return json.loads(done.stdout)


def test_tls_settings_are_off_for_local_http_and_on_from_the_environment() -> None:
    assert settings_under() == {"SESSION_COOKIE_SECURE": False, "CSRF_COOKIE_SECURE": False,
                                "SECURE_HSTS_SECONDS": 0, "SECURE_SSL_REDIRECT": False,
                                "SECURE_PROXY_SSL_HEADER": None}
    assert settings_under(SECURE_COOKIES="1", SECURE_HSTS_SECONDS="31536000",
                          SECURE_SSL_REDIRECT="1", TRUST_PROXY_TLS_HEADER="1") == {
        "SESSION_COOKIE_SECURE": True, "CSRF_COOKIE_SECURE": True,
        "SECURE_HSTS_SECONDS": 31536000, "SECURE_SSL_REDIRECT": True,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"]}


# -- one permission rule ----------------------------------------------------------------


async def socket_accepted(consumer, path: str, user) -> bool:
    communicator = WebsocketCommunicator(consumer.as_asgi(), path)
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    await communicator.disconnect()
    return connected


@pytest.mark.django_db(transaction=True)
async def test_pages_buttons_actions_and_sockets_all_follow_the_one_rule(
        scene, monkeypatch, django_user_model) -> None:
    """Change the rule in permissions.py and every caller follows: nobody spells it again."""
    from asgiref.sync import sync_to_async
    from django.test import AsyncClient

    user = await sync_to_async(django_user_model.objects.create_superuser)("root", password="x")
    client = AsyncClient()
    await sync_to_async(client.force_login)(user)
    assert (await client.get(reverse("streams_admin:group", args=[S, G]))).status_code == 200
    assert await socket_accepted(TailConsumer, "/ws/tail/?key=orders", user)

    monkeypatch.setattr(permissions, "refusal", lambda user, permission: "rule says no")
    page = await client.get(reverse("streams_admin:group", args=[S, G]))
    assert page.status_code == 200 and b">Ack</button>" not in page.content  # no action buttons
    ack = await client.post(reverse("streams_admin:ack", args=[S, G]), {"ids": ["1-0"]})
    assert ack.status_code == 403 and len(scene.xpending_range(S, G, "-", "+", 10)) == 2
    row = await AuditEntry.objects.aget()
    assert row.result == "refused: rule says no"
    confirm = await client.get(reverse("streams_admin:trim", args=[S]))
    assert confirm.status_code == 403

    monkeypatch.setattr(permissions, "may_view", lambda user: False)
    assert (await client.get(reverse("streams_admin:overview"))).status_code == 302  # to login
    assert not await socket_accepted(TailConsumer, "/ws/tail/?key=orders", user)
    assert not await socket_accepted(StatsConsumer, "/ws/stats/?key=orders", user)

