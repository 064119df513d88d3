"""Operator actions that could lose or repeat work without saying so: requeue to other groups,
deleting entries, skipping a group ahead, re-driving out of scope, claim-all's target, and
publishing (a bad form, GET, a Redis that is down). Real redis-server; the state is checked."""

from __future__ import annotations

import html
import json
import re
import time

import pytest
import redis
from django.urls import reverse

from streams_admin import demo
from streams_admin.models import AuditEntry
from streams_admin.redis import client
from tests.html import table
from tests.redis_server import free_port, group_lag

pytestmark = pytest.mark.django_db

S, G, OTHER = b"orders", b"ship", b"bill"
DLQ = b"agent:stream:deadletter:order.placed"


def url(name: str, *args: bytes | str) -> str:
    return reverse(f"streams_admin:{name}", args=[S, *args])


def text(response) -> str:
    """The page's text as a user reads it: tags dropped, entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.content.decode())).split())


@pytest.fixture
def held(r: redis.Redis) -> list[str]:
    """10 entries; group ship: "dead" holds 6 (read, never acked), 4 unread; "live" idle."""
    ids = [r.xadd(S, {"event_type": "order.placed", "data": json.dumps({"n": n})}).decode()
           for n in range(10)]
    r.xgroup_create(S, G, id="0")
    r.xreadgroup(G, "dead", {S: ">"}, count=6)
    r.xgroup_createconsumer(S, G, "live")
    return ids[:6]


def pending(r: redis.Redis, group: bytes = G, consumer: str | None = None) -> list[str]:
    rows = r.xpending_range(S, group, "-", "+", 1000, consumername=consumer)
    return [row["message_id"].decode() for row in rows]


def last_audit() -> AuditEntry:
    return AuditEntry.objects.order_by("-id").first()


# -- requeue ------------------------------------------------------------------------------


def test_requeue_page_names_the_groups_that_get_the_copy_again(admin_client, r, held) -> None:
    r.xgroup_create(S, OTHER, id="0")
    r.xreadgroup(OTHER, "b1", {S: ">"}, count=3)  # bill already read the first 3
    page = admin_client.post(url("requeue", G), {"ids": held[:4], "preview": "1"})
    assert page.status_code == 200 and r.xlen(S) == 10  # the preview changes nothing
    words = text(page)
    assert "every group of the stream gets it" in words
    assert ("bill: already past 3 of them (delivered, or skipped when it started): gets "
            "those again as new entries, and the rest twice") in words
    assert "Claim them instead" in words and 'name="confirm"' in page.content.decode()

    retry = html.unescape(page.content.decode().split('name="retry" value="')[1].split('"')[0])
    refused = admin_client.post(url("requeue", G), {"ids": held[:4], "confirm": "",
                                                    "retry": retry}, follow=True)
    assert "Other groups read this stream and will get the copies too" in text(refused)
    assert r.xlen(S) == 10 and pending(r) == held and last_audit().ok is False
    assert refused.redirect_chain[-1][0] == retry  # back on the page, selection kept
    assert "already past 3 of them" in text(refused)

    admin_client.post(url("requeue", G), {"ids": held[:4], "confirm": "ship"})
    assert r.xlen(S) == 14 and pending(r) == held[4:]


def test_requeue_with_no_other_group_needs_no_typed_name(admin_client, r, held) -> None:
    page = admin_client.get(url("requeue", G) + f"?ids={held[0]}")
    assert page.status_code == 200 and "Requeue 1 entry of group ship" in text(page)
    assert 'name="confirm"' not in page.content.decode()
    assert "will get the copies too" not in text(page) and "requeue-reach" not in text(page)
    admin_client.post(url("requeue", G), {"ids": [held[0]]})
    assert r.xlen(S) == 11 and held[0] not in pending(r)


def test_claim_instead_keeps_it_in_this_group(admin_client, r, held) -> None:
    r.xgroup_create(S, OTHER, id="0")
    page = admin_client.get(url("requeue", G) + f"?ids={held[0]}&ids={held[1]}")
    words = text(page)
    assert "bill: has not read them yet: gets each twice" in words
    form = page.content.decode().split('id="requeue-claim"')[1].split("</form>")[0]
    assert reverse("streams_admin:claim", args=[S, G]) in page.content.decode()
    assert 'name="min_idle" value="0"' in form and '<option value="live">' in form
    admin_client.post(reverse("streams_admin:claim", args=[S, G]),
                      {"ids": held[:2], "to_token": "live", "min_idle": "0"})
    assert pending(r, consumer="live") == held[:2] and r.xlen(S) == 10


# -- delete entries -----------------------------------------------------------------------


def test_delete_selected_goes_through_a_preview_that_flags_pending(admin_client, r, held):
    r.xack(S, G, held[1])
    chosen = [held[0], held[1], "1-0"]  # pending, delivered and acked, never existed
    unread = r.xrevrange(S, count=1)[0][0].decode()
    page = admin_client.post(url("delete-entries"),
                             {"ids": [*chosen, unread], "preview": "1", "next": "/"})
    assert page.status_code == 200 and r.xlen(S) == 10
    rows = {row[0]: row[1:] for row in table(page.content)}
    assert rows[held[0]] == ["yes", "ship", "–"]
    assert rows[held[1]] == ["yes", "–", "–"]
    assert rows["1-0"] == ["gone", "–", "–"]
    assert rows[unread] == ["yes", "–", "ship"]
    assert "1 is still pending in a group" in text(page)
    assert "1 has not been read by some group yet" in text(page)
    assert "hx-confirm" not in admin_client.get(url("stream")).content.decode()

    refused = admin_client.post(url("delete-entries"), {"ids": chosen, "confirm": "order"},
                                follow=True)
    assert "Type the stream's name exactly" in text(refused) and r.xlen(S) == 10
    done = admin_client.post(url("delete-entries"), {"ids": chosen, "confirm": "orders"},
                             follow=True)
    assert "Deleted 2 entries; 1 was already gone. 1 of them was still pending" in text(done)
    assert r.xlen(S) == 8 and last_audit().ids == chosen


def test_delete_preview_is_bounded(admin_client, r, held) -> None:
    many = [f"{n}-0" for n in range(1, 502)]
    page = admin_client.post(url("delete-entries"), {"ids": many, "preview": "1"})
    assert "Select at most 500 entries" in text(page)


# -- set ID -------------------------------------------------------------------------------


def test_set_id_to_dollar_says_what_it_skips_and_needs_the_name(admin_client, r, held):
    before = r.xinfo_groups(S)[0]["last-delivered-id"]
    page = admin_client.get(url("set-id", G) + "?position=$")
    assert "The group skips 4 entries it has not read yet" in text(page)
    assert 'name="confirm"' in page.content.decode()
    refused = admin_client.post(url("set-id", G), {"position": "$", "confirm": "shi"},
                                follow=True)
    assert "type the group's name exactly" in text(refused)
    assert r.xinfo_groups(S)[0]["last-delivered-id"] == before
    admin_client.post(url("set-id", G), {"position": "$", "confirm": "ship"})
    group = r.xinfo_groups(S)[0]
    assert group["last-delivered-id"] == r.xrevrange(S, count=1)[0][0]
    assert group_lag(r, S, G) == 0
    assert last_audit().arguments["skipped"] is True
    back = admin_client.get(url("set-id", G) + "?position=0")  # a rewind skips nothing
    assert "lag <strong>10</strong>" in back.content.decode() and "skips" not in text(back)
    assert 'name="confirm"' not in back.content.decode()
    admin_client.post(url("set-id", G), {"position": "0"})
    assert group_lag(r, S, G) == 10



# -- re-drive -----------------------------------------------------------------------------


def letter(r: redis.Redis, original: bytes, n: int) -> str:
    return r.xadd(DLQ, {"event_type": "order.placed", "data": json.dumps({"n": n}),
                        "original_stream": original, "error": "boom"}).decode()


def test_redrive_refuses_a_target_outside_the_scope(admin_client, r, settings) -> None:
    settings.STREAMS_ADMIN = {"KEY_PATTERN": "agent:*"}
    bad = letter(r, b"secret:stream:payroll", 1)
    good = letter(r, b"agent:stream:order.placed", 2)
    response = admin_client.post(reverse("streams_admin:redrive", args=[DLQ]),
                                 {"ids": [bad, good]}, follow=True)
    assert not r.exists("secret:stream:payroll")
    assert r.xlen("agent:stream:order.placed") == 1
    assert [i.decode() for i, _ in r.xrange(DLQ)] == [bad]  # left where it was
    words = text(response)
    assert "1 entry refused: secret:stream:payroll is outside the streams" in words
    row = last_audit()
    assert (row.action, row.ok) == ("redrive", False)
    assert row.arguments["refused_targets"] == {"secret:stream:payroll": 1}
    assert row.arguments["targets"] == {"agent:stream:order.placed": 1}


def test_redrive_all_goes_past_refused_letters(admin_client, r, settings) -> None:
    settings.STREAMS_ADMIN = {"KEY_PATTERN": "agent:*", "ACTION_CHUNK": 2}
    refused = [letter(r, b"secret:x", n) for n in range(2)]
    for n in range(3):
        letter(r, b"agent:stream:order.placed", n)
    form = {"all": "1"}
    response = admin_client.post(reverse("streams_admin:redrive", args=[DLQ]), form)
    for _ in range(10):
        if b"Working" not in response.content:
            break
        page = response.content.decode()
        after = page.split('name="after" value="')[1].split('"')[0]
        done = page.split('name="done_so_far" value="')[1].split('"')[0]
        response = admin_client.post(reverse("streams_admin:redrive", args=[DLQ]),
                                     {**form, "after": after, "done_so_far": done})
    assert r.xlen("agent:stream:order.placed") == 3 and not r.exists("secret:x")
    assert [i.decode() for i, _ in r.xrange(DLQ)] == refused
    rows = AuditEntry.objects.filter(action="redrive")
    assert sum(sum(row.arguments["targets"].values()) for row in rows) == 3


# -- claim all idle -----------------------------------------------------------------------


def select(page: str, name: str) -> tuple[list[str], list[str]]:
    """The option values of a <select name=...> of the claim-all form, and the selected ones."""
    form = page.split('aria-label="Claim all idle entries"')[1].split("</form>")[0]
    body = form.split(f'name="{name}"')[1].split("</select>")[0]
    options = re.findall(r'<option value="([^"]*)"( selected)?', body)
    return [v for v, _ in options], [v for v, chosen in options if chosen]


def test_claim_all_leaves_the_source_out_of_the_targets(admin_client, r, held) -> None:
    r.xreadgroup(G, "dead", {S: ">"}, count=1)  # the dead one read last: the least idle
    page = admin_client.get(url("group", G) + "?consumer=dead").content.decode()
    sources, chosen = select(page, "from")
    assert "dead" in sources and chosen == ["dead"]
    targets, _ = select(page, "to_token")
    assert targets == ["live"]
    unfiltered = admin_client.get(url("group", G)).content.decode()
    assert select(unfiltered, "from")[1] == []  # the whole group
    assert select(unfiltered, "to_token")[0][0] == "live"  # holding nothing comes first


# -- publish ------------------------------------------------------------------------------


def test_get_publish_is_a_form(admin_client) -> None:
    page = admin_client.get(reverse("streams_admin:publish") + "?event_type=task.created")
    assert page.status_code == 200
    assert 'name="event_type" value="task.created"' in page.content.decode()
    assert "Back to all streams" in text(page)


def test_publish_invalid_json_keeps_the_text_and_the_error(admin_client, r) -> None:
    typed = '{"task_id": "t-1", <oops>'
    form = {"event_type": "task.created", "data": typed, "correlation_id": "c-1"}
    page = admin_client.post(reverse("streams_admin:publish"), form)
    assert page.status_code == 400
    assert "The data is not valid JSON" in text(page) and typed in text(page)
    assert 'value="c-1"' in page.content.decode()
    partial = admin_client.post(reverse("streams_admin:publish"), form,
                                headers={"HX-Request": "true"})
    assert partial.status_code == 200 and "<html" not in partial.content.decode()
    assert "The data is not valid JSON" in text(partial) and typed in text(partial)
    assert not r.exists("agent:stream:task.created")
    assert last_audit().ok is False


def test_publish_with_redis_down_answers_fast(admin_client, settings) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    page = admin_client.post(reverse("streams_admin:publish"),
                             {"event_type": "task.created", "data": "{}"})
    assert time.monotonic() - started < 5  # the bus's own retry took 11 s here
    assert "Redis is not answering" in text(page)
    assert '{}' in page.content.decode() and last_audit().ok is False


def test_the_demo_has_dead_letters_to_redrive(admin_client, r) -> None:
    demo.seed(client())  # the dashboard's client, as `manage.py demo_data` uses it
    dead = b"agent:stream:deadletter:document.processed"
    stream = b"agent:stream:document.processed"
    letters = r.xrange(dead)
    assert len(letters) == 5 and {f[b"original_stream"] for _, f in letters} == {stream}
    page = admin_client.get(reverse("streams_admin:dead-letters") + f"?key={dead.decode()}")
    assert "TimeoutError: parser timeout" in text(page)
    length = r.xlen(stream)
    admin_client.post(reverse("streams_admin:redrive", args=[dead]), {"all": "1"})
    assert r.xlen(dead) == 0 and r.xlen(stream) == length + 5
    assert last_audit().arguments["targets"] == {stream.decode(): 5}
