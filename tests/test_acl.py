"""Least privilege on a real Redis: the README's ACL lines, a viewer-only Redis user (every
page works, each action its ACL forbids is shown disabled with the reason, a POST anyway is
refused clearly and audited) and an operator one (every action works)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from django.urls import reverse

from streams_admin import acl
from streams_admin.models import AuditEntry
from streams_admin.redis import server_from_info
from tests.redis_server import needs_redis_7

pytestmark = pytest.mark.django_db

S, G = "orders", "ship"
DLQ = "agent:stream:deadletter:order.placed"
README = Path(__file__).resolve().parent.parent / "README.md"


def readme_acl(user: str) -> list[str]:
    """The README's `ACL SETUSER user …` line, as arguments (PASSWORD replaced)."""
    line = next(line for line in README.read_text().splitlines()
                if line.startswith(f"ACL SETUSER {user} "))
    return line.replace(">PASSWORD", ">pw").split()[3:]


@pytest.fixture
def seeded(r: redis.Redis) -> list[str]:
    """orders: 6 entries, "dead" holds 4 of them in group ship; one dead letter."""
    ids = [r.xadd(S, {"event_id": f"e{n}", "event_type": "order.placed",
                      "timestamp": "2026-11-28T10:00:00+00:00", "data": json.dumps({"n": n})}
                  ).decode() for n in range(6)]
    r.xgroup_create(S, G, id="0")
    r.xreadgroup(G, "dead", {S: ">"}, count=4)
    r.xgroup_createconsumer(S, G, "live")
    r.xadd(DLQ, {"event_type": "order.placed", "data": "{}", "original_stream": S,
                 "original_id": ids[5], "error": "boom"})
    acl._answers.clear()
    acl._no_dryrun.clear()
    return ids[:4]


@pytest.fixture
def as_redis_user(r: redis.Redis, settings) -> Iterator[Callable[[str, list[str]], None]]:
    made: list[str] = []

    def login(user: str, rules: list[str]) -> None:
        r.execute_command("ACL", "SETUSER", user, *rules)
        settings.REDIS_OPTIONS = {"username": user, "password": "pw"}
        made.append(user)
        acl._answers.clear()

    yield login
    for user in made:
        r.acl_deluser(user)


def pages(held: list[str]) -> list[str]:
    stream, group = f"/streams/{S}/", f"/streams/{S}/groups/{G}/"
    return ["/", stream, group, f"{group}?consumer=dead", f"/streams/{S}/entries/{held[0]}/",
            f"/streams/{DLQ}/", "/tail/", f"{stream}tail/", "/dead-letters/", "/audit/",
            "/publish/", f"{stream}trim/", f"{stream}delete/", f"{group}set-id/",
            f"{group}destroy/", f"{group}consumers/live/delete/", f"{group}ack-matching/"]


def disabled(body: str, action_text: str) -> bool:
    return bool(re.search(r'disabled aria-disabled="true" title="The Redis user[^"]*'
                          + re.escape(action_text), body))


def test_viewer_acl_every_page_works_and_forbidden_actions_say_why(
        admin_client, r, seeded, as_redis_user) -> None:
    as_redis_user("streams-viewer", readme_acl("streams-viewer"))
    for page in pages(seeded):
        response = admin_client.get(page)
        assert response.status_code == 200, (page, response.content[:300])
    needs_redis_7(r, "has no ACL DRYRUN: nothing is known before a NOPERM answer (the tests "
                  "below: a POST anyway refused, then learned)")
    group = admin_client.get(f"/streams/{S}/groups/{G}/").content.decode()
    assert disabled(group, "may not run XACK") and disabled(group, "may not run XCLAIM")
    assert disabled(group, "may not run XGROUP CREATECONSUMER")
    note = re.search(r"Some actions are disabled: the Redis user may not run ([^(]*) \(its ACL",
                     group)
    assert note and "XACK" in note[1].split(", "), note
    stream = admin_client.get(f"/streams/{S}/").content.decode()
    assert disabled(stream, "may not run XTRIM") and disabled(stream, "may not run UNLINK")
    assert disabled(stream, "may not run XGROUP CREATE")
    confirmations = {"trim/?strategy=maxlen&threshold=2": "XTRIM", "delete/": "UNLINK",
                     f"groups/{G}/destroy/": "XGROUP DESTROY",
                     f"groups/{G}/set-id/?position=%24": "XGROUP SETID",
                     f"groups/{G}/consumers/live/delete/": "XGROUP DELCONSUMER"}
    for page, command in confirmations.items():
        body = admin_client.get(f"/streams/{S}/{page}").content.decode()
        assert disabled(body, f"may not run {command}"), page


def test_a_post_anyway_is_refused_clearly_changes_nothing_and_is_audited(
        admin_client, r, seeded, as_redis_user) -> None:
    as_redis_user("streams-viewer", readme_acl("streams-viewer"))
    response = admin_client.post(f"/streams/{S}/groups/{G}/ack/", {"ids": seeded[:2]},
                                 follow=True)
    # Redis 6.2 has no ACL DRYRUN: the action runs, Redis answers NOPERM, and the page says
    # the same as where it is known beforehand (the audit row keeps Redis's own words).
    dryrun = server_from_info(r.info("server")).compat >= (7, 0)
    assert response.status_code == 200
    assert "may not run XACK (its ACL)" in response.content.decode()
    assert "no permissions" not in response.content.decode()
    assert r.xpending(S, G)["pending"] == 4
    row = AuditEntry.objects.order_by("-id").first()
    assert row.action == "ack" and not row.ok
    assert row.result.startswith("refused:" if dryrun else "Redis refused: this user has no")
    htmx = admin_client.post(f"/streams/{S}/trim/", {"strategy": "maxlen", "threshold": "1",
                                                     "override": "1", "confirm": S},
                             headers={"HX-Request": "true"})
    assert htmx.status_code == 204 and "may not run XTRIM" in htmx["HX-Trigger"]
    assert r.xlen(S) == 6


def test_without_dryrun_the_noperm_answer_is_shown_then_learned(
        admin_client, r, seeded, as_redis_user) -> None:
    rules = [rule for rule in readme_acl("streams-viewer") if rule != "+acl|dryrun"]
    as_redis_user("no-dryrun", rules)
    group = f"/streams/{S}/groups/{G}/"
    assert not disabled(admin_client.get(group).content.decode(), "XACK")  # not known yet
    response = admin_client.post(f"{group}ack/", {"ids": seeded[:1]}, follow=True)
    assert "may not run XACK (its ACL)" in response.content.decode()
    assert r.xpending(S, G)["pending"] == 4
    assert disabled(admin_client.get(group).content.decode(), "may not run XACK")


def test_operator_acl_every_action_works(admin_client, r, seeded, as_redis_user) -> None:
    as_redis_user("streams-operator", readme_acl("streams-operator"))
    held = seeded

    def post(name: str, form: dict, *args: str) -> str:
        target = reverse(f"streams_admin:{name}", args=[a.encode() for a in args])
        body = admin_client.post(target, form, follow=True).content.decode()
        assert "disabled aria-disabled" not in body and "Redis refused" not in body, name
        return body

    group = (S, G)
    post("ack", {"ids": held[:1]}, *group)
    post("claim", {"ids": held[1:2], "to": "live", "min_idle": "0"}, *group)
    post("claim-idle", {"from": "", "to": "live", "min_idle": "0"}, *group)
    post("requeue", {"ids": held[1:2]}, *group)
    post("dead-letter", {"ids": held[2:3], "reason": "r"}, *group)
    post("redrive", {"all": "1"}, DLQ)
    post("ack-matching", {"consumer": "live", "confirm": G}, *group)
    post("publish", {"event_type": "order.placed", "data": "{}"})
    post("create-group", {"group": "other", "start": "$"}, S)
    post("create-consumer", {"consumer": "extra"}, *group)
    post("set-id", {"position": "$", "confirm": G}, *group)
    post("delete-consumer", {"confirm": "extra"}, S, G, "extra")
    post("destroy-group", {"confirm": "other"}, S, "other")
    post("trim", {"strategy": "maxlen", "threshold": "100", "override": "1", "confirm": S}, S)
    newest = r.xrevrange(S, count=1)[0][0].decode()
    post("delete-entries", {"ids": [newest], "confirm": S}, S)
    assert r.xpending(S, G)["pending"] == 0 and r.xlen(DLQ) == 0
    assert not r.exists("nothing") and [g["name"] for g in r.xinfo_groups(S)] == [G.encode()]
    post("delete-stream", {"confirm": S}, S)
    assert not r.exists(S)
    failed = AuditEntry.objects.filter(ok=False).values_list("action", "result")
    assert not list(failed)


@pytest.mark.django_db(transaction=True)
async def test_the_live_tail_and_counts_work_for_a_viewer_user(r, settings) -> None:
    from channels.testing import WebsocketCommunicator
    from django.contrib.auth import get_user_model

    from streams_admin.consumers import TailConsumer
    from streams_admin.stats import StatsConsumer

    r.execute_command("ACL", "SETUSER", "streams-viewer", *readme_acl("streams-viewer"))
    settings.REDIS_OPTIONS = {"username": "streams-viewer", "password": "pw"}
    try:
        r.xadd(S, {"n": "0"})
        staff = await get_user_model().objects.acreate_user("op", password="pw", is_staff=True)
        tail = WebsocketCommunicator(TailConsumer.as_asgi(), f"/ws/tail/?key={S}")
        counts = WebsocketCommunicator(StatsConsumer.as_asgi(), f"/ws/stats/?key={S}")
        tail.scope["user"] = counts.scope["user"] = staff
        assert (await tail.connect(timeout=10))[0] and (await counts.connect(timeout=10))[0]
        assert (await tail.receive_json_from(timeout=5))["type"] == "live"
        assert (await counts.receive_json_from(timeout=5))["streams"][S]["length"] == 1
        new_id = r.xadd(S, {"n": "1"}).decode()
        message = await tail.receive_json_from(timeout=10)
        assert message["type"] == "entries" and message["last_id"] == new_id
        await tail.disconnect()
        await counts.disconnect()
    finally:
        r.acl_deluser("streams-viewer")
