"""Operator actions against a real Redis: the state after each action, races, the audit row."""

from __future__ import annotations

import json

import pytest
import redis
from django.urls import reverse

from streams_admin.models import AuditEntry
from tests.html import table
from tests.redis_server import group_lag

pytestmark = pytest.mark.django_db

S, G = b"orders", b"ship"


def url(name: str, *args: bytes | str) -> str:
    return reverse(f"streams_admin:{name}", args=[S, *args] if name != "publish" else [])


@pytest.fixture
def held(r: redis.Redis) -> list[str]:
    """10 entries; "dead" holds 6 of them (read, never acked), "live" holds nothing."""
    ids = [r.xadd(S, {"event_id": f"e{n}", "event_type": "order.placed",
                      "timestamp": "2026-11-28T10:00:00+00:00", "data": json.dumps({"n": n})}
                  ).decode() for n in range(10)]
    r.xgroup_create(S, G, id="0")
    r.xreadgroup(G, "dead", {S: ">"}, count=6)
    r.xgroup_createconsumer(S, G, "live")
    return ids[:6]


def pending(r: redis.Redis, consumer: str | None = None) -> list[str]:
    rows = r.xpending_range(S, G, "-", "+", 1000, consumername=consumer)
    return [row["message_id"].decode() for row in rows]


def last_audit() -> AuditEntry:
    return AuditEntry.objects.order_by("-id").first()


def test_ack_selected(admin_client, r, held) -> None:
    response = admin_client.post(url("ack", G), {"ids": held[:2]}, follow=True)
    assert "Acknowledged 2 entries." in response.content.decode()
    assert pending(r) == held[2:]
    row = last_audit()
    assert (row.action, row.ok, row.ids, row.group) == ("ack", True, held[:2], "ship")
    assert row.username == "admin" and row.address == "127.0.0.1"


def test_ack_of_an_entry_acked_meanwhile_says_so(admin_client, r, held) -> None:
    r.xack(S, G, held[0])  # its consumer acked it while the page was open
    response = admin_client.post(url("ack", G), {"ids": held[:2]}, follow=True)
    assert "Acknowledged 1 entry; 1 was no longer pending" in response.content.decode()
    assert last_audit().result.startswith("Acknowledged 1 entry")


def test_claim_respects_the_min_idle_guard_and_keeps_delivery_counts(admin_client, r, held):
    response = admin_client.post(url("claim", G), {"ids": held[:3], "to": "live",
                                                   "min_idle": "1h"}, follow=True)
    assert "Claimed 0 entries" in response.content.decode()
    assert "taken by a consumer less than 3600 s ago" in response.content.decode()
    admin_client.post(url("claim", G), {"ids": held[:3], "to_token": "live", "min_idle": "0"})
    assert pending(r, "live") == held[:3]
    counts = {row["message_id"].decode(): row["times_delivered"]
              for row in r.xpending_range(S, G, "-", "+", 10)}
    assert {counts[i] for i in held[:3]} == {1}


def test_claim_all_idle_from_a_dead_consumer_in_steps(admin_client, r, held, settings) -> None:
    settings.STREAMS_ADMIN = {"ACTION_BUDGET": 2, "ACTION_CHUNK": 2}
    form = {"from": "dead", "to": "live", "min_idle": "0"}
    first = admin_client.post(url("claim-idle", G), form)
    assert "Working…" in first.content.decode() and len(pending(r, "live")) == 2
    steps = 1
    while b"Working" in first.content and steps < 10:
        after = first.content.decode().split('name="after" value="')[1].split('"')[0]
        done = first.content.decode().split('name="done_so_far" value="')[1].split('"')[0]
        first = admin_client.post(url("claim-idle", G), {**form, "after": after,
                                                          "done_so_far": done}, follow=True)
        steps += 1
    assert pending(r, "live") == held and pending(r, "dead") == []
    assert AuditEntry.objects.filter(action="claim-idle").count() == steps


def test_claim_all_idle_in_the_whole_group_uses_xautoclaim(admin_client, r, held) -> None:
    r.xreadgroup(G, "other", {S: ">"}, count=2)
    admin_client.post(url("claim-idle", G), {"from": "", "to": "live", "min_idle": "0"})
    assert len(pending(r, "live")) == 8


def test_requeue_copies_and_acks_atomically(admin_client, r, held) -> None:
    response = admin_client.post(url("requeue", G), {"ids": [held[0]]}, follow=True)
    assert "Requeued 1 entry as new entries." in response.content.decode()
    newest_id, fields = r.xrevrange(S, count=1)[0]
    assert fields[b"requeued_from"] == held[0].encode() and fields[b"requeue_count"] == b"1"
    assert fields[b"event_id"] == b"e0"
    assert held[0] not in pending(r)
    r.xreadgroup(G, "dead", {S: ">"})  # deliver the copy, then requeue it again
    admin_client.post(url("requeue", G), {"ids": [newest_id.decode()]})
    assert r.xrevrange(S, count=1)[0][1][b"requeue_count"] == b"2"


def test_requeue_of_gone_or_acked_entries_is_explained(admin_client, r, held) -> None:
    r.xdel(S, held[0])
    r.xack(S, G, held[1])
    response = admin_client.post(url("requeue", G), {"ids": held[:2]}, follow=True)
    text = response.content.decode()
    assert "1 entry no longer pending" in text and "1 entry whose data is gone" in text
    assert r.xlen(S) == 9


def test_dead_letter_then_redrive(admin_client, r, held) -> None:
    admin_client.post(url("dead-letter", G), {"ids": held[:2], "reason": "bad <data>"})
    dlq = b"agent:stream:deadletter:order.placed"
    letters = r.xrange(dlq)
    assert len(letters) == 2 and held[0] not in pending(r)
    fields = letters[0][1]
    assert fields[b"original_stream"] == S and fields[b"original_id"] == held[0].encode()
    assert fields[b"delivery_count"] == b"1" and fields[b"consumer"] == b"dead"
    assert b"bad <data>" in fields[b"error"] and fields[b"event_id"] == b"e0"
    screen = admin_client.get(reverse("streams_admin:dead-letters")).content.decode()
    assert "bad &lt;data&gt;" in screen and "order.placed" in screen
    length = r.xlen(S)
    admin_client.post(reverse("streams_admin:redrive", args=[dlq]),
                      {"ids": [letters[0][0].decode()]})
    assert r.xlen(dlq) == 1 and r.xlen(S) == length + 1
    back = r.xrevrange(S, count=1)[0][1]
    assert back[b"event_id"] == b"e0" and b"error" not in back
    admin_client.post(reverse("streams_admin:redrive", args=[dlq]), {"all": "1"})
    assert r.xlen(dlq) == 0 and r.xlen(S) == length + 2


def test_ack_matching_needs_the_typed_name_and_honours_the_filter(admin_client, r, held):
    r.xreadgroup(G, "other", {S: ">"}, count=2)
    page = admin_client.get(url("ack-matching", G) + "?consumer=dead")
    assert "up to 6 entries" in page.content.decode()
    refused = admin_client.post(url("ack-matching", G), {"consumer": "dead", "confirm": "x"},
                                follow=True)
    assert "Type the group" in refused.content.decode() and len(pending(r)) == 8
    admin_client.post(url("ack-matching", G), {"consumer": "dead", "confirm": "ship"})
    assert pending(r, "dead") == [] and len(pending(r, "other")) == 2


def test_create_group_from_a_date_and_busygroup(admin_client, r, held) -> None:
    admin_client.post(url("create-group"), {"group": "late", "start": "0"})
    admin_client.post(url("create-group"), {"group": "new", "start": "$"})
    assert group_lag(r, S, "late") == 10 and group_lag(r, S, "new") == 0
    again = admin_client.post(url("create-group"), {"group": "new", "start": "$"}, follow=True)
    assert "already exists" in again.content.decode()
    assert last_audit().ok is False


def test_set_id_shows_the_resulting_lag_first(admin_client, r, held) -> None:
    ids = [i[0].decode() for i in r.xrange(S)]
    page = admin_client.get(url("set-id", G) + f"?position={ids[3]}").content.decode()
    assert "lag <strong>6</strong>" in page
    admin_client.post(url("set-id", G), {"position": ids[3]})
    group = r.xinfo_groups(S)[0]
    assert group["last-delivered-id"].decode() == ids[3] and group_lag(r, S, G) == 6


def test_destroy_group_with_typed_name_and_a_race(admin_client, r, held) -> None:
    page = admin_client.get(url("destroy-group", G)).content.decode()
    assert "6 pending entries" in page
    wrong = admin_client.post(url("destroy-group", G), {"confirm": "shi"}, follow=True)
    assert "Type the group" in wrong.content.decode() and r.xinfo_groups(S)
    admin_client.post(url("destroy-group", G), {"confirm": "ship"})
    assert r.xinfo_groups(S) == []
    late = admin_client.post(url("ack", G), {"ids": held[:1]}, follow=True)  # another tab
    assert "That consumer group does not exist any more" in late.content.decode()
    assert last_audit().ok is False


def test_delete_consumer_holding_entries_warns(admin_client, r, held) -> None:
    page = admin_client.get(url("delete-consumer", G, b"dead")).content.decode()
    assert "holds 6 pending entries" in page and "Claim them" in page
    refused = admin_client.post(url("delete-consumer", G, b"dead"), {"confirm": ""},
                                follow=True)
    assert "claim them to another consumer first" in refused.content.decode()
    admin_client.post(url("delete-consumer", G, b"live"), {})
    admin_client.post(url("delete-consumer", G, b"dead"), {"confirm": "dead"})
    assert r.xinfo_consumers(S, G) == [] and pending(r) == []


def test_trim_preview_counts_what_groups_still_need(admin_client, r, held) -> None:
    page = admin_client.get(url("trim") + "?strategy=maxlen&threshold=2").content.decode()
    assert "<strong>8</strong> of 10 entries would go" in page
    rows = table(page)
    assert rows == [["ship", "6", "2"]]  # 6 pending, 2 (of the 8) never delivered
    refused = admin_client.post(url("trim"), {"strategy": "maxlen", "threshold": "2",
                                              "confirm": "orders"}, follow=True)
    assert "Refused: 8 entries" in refused.content.decode() and r.xlen(S) == 10
    admin_client.post(url("trim"), {"strategy": "maxlen", "threshold": "2", "override": "1",
                                    "confirm": "orders"})
    assert r.xlen(S) == 2


def test_trim_by_minid_that_nobody_needs_goes_through(admin_client, r, held) -> None:
    r.xack(S, G, *held)
    r.xreadgroup(G, "dead", {S: ">"})
    r.xack(S, G, *[i[0] for i in r.xrange(S)])
    ids = [i[0].decode() for i in r.xrange(S)]
    page = admin_client.get(url("trim") + f"?strategy=minid&threshold={ids[4]}").content
    assert b"<strong>4</strong> of 10" in page and b"still needed" not in page
    admin_client.post(url("trim"), {"strategy": "minid", "threshold": ids[4],
                                    "confirm": "orders"})
    assert [i[0].decode() for i in r.xrange(S)] == ids[4:]


def test_delete_entries_and_stream(admin_client, r, held) -> None:
    admin_client.post(url("delete-entries"), {"ids": held[:2]})  # no typed name: refused
    assert r.xlen(S) == 10
    admin_client.post(url("delete-entries"), {"ids": held[:2], "confirm": "orders"})
    assert r.xlen(S) == 8
    admin_client.post(url("delete-stream"), {"confirm": "nope"})
    assert r.exists(S)
    response = admin_client.post(url("delete-stream"), {"confirm": "orders"}, follow=True)
    assert not r.exists(S) and response.request["PATH_INFO"] == "/"


def test_publish_validates_json_and_shows_the_event(admin_client, r) -> None:
    bad = admin_client.post(reverse("streams_admin:publish"),
                            {"event_type": "task.created", "data": "{oops"}, follow=True)
    assert "not valid JSON" in bad.content.decode() and not r.exists("agent:stream:task.created")
    good = admin_client.post(reverse("streams_admin:publish"),
                             {"event_type": "task.created", "data": '{"task_id": "t-1"}',
                              "correlation_id": "c-9"}, follow=True)
    assert good.request["PATH_INFO"] == "/streams/agent:stream:task.created/"
    (_, fields), = r.xrange("agent:stream:task.created")
    assert json.loads(fields[b"data"]) == {"task_id": "t-1"}
    assert fields[b"correlation_id"] == b"c-9" and b"t-1" in good.content


def test_htmx_actions_answer_204_with_an_event(admin_client, r, held) -> None:
    response = admin_client.post(url("ack", G), {"ids": held[:1]}, headers={"HX-Request": "true"})
    assert response.status_code == 204
    trigger = json.loads(response["HX-Trigger"])
    assert "streams-changed" in trigger and trigger["show-message"]["ok"] is True


def test_bad_input_is_a_message_and_an_audit_row(admin_client, r, held) -> None:
    response = admin_client.post(url("claim", G), {"ids": ["nope"], "to": "x"}, follow=True)
    assert "Not entry IDs: nope" in response.content.decode()
    none = admin_client.post(url("ack", G), {}, follow=True)
    assert "Select at least one entry" in none.content.decode()
    idle = admin_client.post(url("claim", G), {"ids": held[:1], "to": "x", "min_idle": "soon"},
                             follow=True)
    assert "is not a duration" in idle.content.decode()
    assert AuditEntry.objects.filter(ok=False).count() == 3


def test_redis_down_during_an_action_is_a_message(admin_client, r, held, redis_server) -> None:
    redis_server.stop()
    try:
        response = admin_client.post(url("ack", G), {"ids": held[:1]})
    finally:
        redis_server.start()
    assert response.status_code in (302, 503)
    assert last_audit() is None or last_audit().ok is False


def test_a_refused_confirmation_comes_back_to_its_page(admin_client, r, held) -> None:
    page = url("trim") + "?strategy=maxlen&threshold=2"
    response = admin_client.post(url("trim"), {"strategy": "maxlen", "threshold": "2",
                                               "confirm": "orders", "retry": page}, follow=True)
    assert response.redirect_chain[-1][0] == page
    assert "Refused: 8 entries" in response.content.decode()
    assert 'id="trim-preview"' in response.content.decode()


def test_claim_all_idle_in_the_whole_group_in_steps(admin_client, r, held, settings) -> None:
    settings.STREAMS_ADMIN = {"ACTION_BUDGET": 2, "ACTION_CHUNK": 2}
    form = {"from": "", "to": "live", "min_idle": "0"}
    response = admin_client.post(url("claim-idle", G), form)
    for _ in range(10):
        if b"Working" not in response.content:
            break
        text = response.content.decode()
        after = text.split('name="after" value="')[1].split('"')[0]
        done = text.split('name="done_so_far" value="')[1].split('"')[0]
        response = admin_client.post(url("claim-idle", G), {**form, "after": after,
                                                            "done_so_far": done}, follow=True)
    assert pending(r, "live") == held and pending(r, "dead") == []
    assert "(6 in all, over several steps.)" in response.content.decode()
