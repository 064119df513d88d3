"""Operator actions on a real Redis Cluster (REDIS_URL naming one node): the main actions of
test_actions run here unchanged against the cluster; moves between streams in different
slots go in two steps (copy first, then ack/delete) that may duplicate but never lose."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator

import pytest
import redis
from django.urls import reverse

from streams_admin.models import AuditEntry
from tests.cluster_server import RedisCluster
from tests.test_actions import (  # noqa: F401 (collected here, run on the cluster)
    held,
    test_a_refused_confirmation_comes_back_to_its_page,
    test_ack_matching_needs_the_typed_name_and_honours_the_filter,
    test_ack_of_an_entry_acked_meanwhile_says_so,
    test_ack_selected,
    test_bad_input_is_a_message_and_an_audit_row,
    test_claim_all_idle_from_a_dead_consumer_in_steps,
    test_claim_all_idle_in_the_whole_group_in_steps,
    test_claim_all_idle_in_the_whole_group_uses_xautoclaim,
    test_claim_respects_the_min_idle_guard_and_keeps_delivery_counts,
    test_create_group_from_a_date_and_busygroup,
    test_dead_letter_then_redrive,
    test_delete_consumer_holding_entries_warns,
    test_delete_entries_and_stream,
    test_destroy_group_with_typed_name_and_a_race,
    test_htmx_actions_answer_204_with_an_event,
    test_publish_validates_json_and_shows_the_event,
    test_requeue_copies_and_acks_atomically,
    test_requeue_of_gone_or_acked_entries_is_explained,
    test_set_id_shows_the_resulting_lag_first,
    test_trim_by_minid_that_nobody_needs_goes_through,
    test_trim_preview_counts_what_groups_still_need,
)
from tests.test_actions_hardening import (  # noqa: F401 (the same, those without `held`)
    test_publish_invalid_json_keeps_the_text_and_the_error,
    test_redrive_all_goes_past_refused_letters,
    test_redrive_refuses_a_target_outside_the_scope,
    test_the_demo_has_dead_letters_to_redrive,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def r(rc: redis.RedisCluster) -> redis.RedisCluster:
    """The tests of test_actions take `r`: here it is the emptied cluster."""
    return rc


S, G = b"orders", b"ship"
DLQ = b"agent:stream:deadletter:order.placed"
TWO_STEPS = "two steps on this cluster: may duplicate, never loses"


def text(content: bytes) -> str:
    """The page's words as a user reads them."""
    return " ".join(re.sub(r"<[^>]+>", " ", html.unescape(content.decode())).split())


@pytest.fixture
def refusing(redis_cluster: RedisCluster, settings) -> Iterator[Callable[[str], None]]:
    """Point the app at the cluster as a user who may not run one command (ACL on every
    node): a real failure between the two steps of a move, as a crash or timeout would."""
    def nodes() -> list[redis.Redis]:
        return [redis.Redis.from_url(n.url) for n in redis_cluster.nodes if n.process]

    def refuse(command: str) -> None:
        for node in nodes():
            # -acl|dryrun, else the action is refused before it starts (6.2 has no DRYRUN,
            # and takes no -command|subcommand)
            six = int(node.info("server")["redis_version"].split(".")[0]) < 7
            dryrun = () if six else ("-acl|dryrun",)
            node.execute_command("ACL", "SETUSER", "limited", "reset", "on", ">pw", "~*", "&*",
                                 "+@all", f"-{command}", *dryrun)
            node.close()
        settings.REDIS_URL = redis_cluster.url.replace("redis://", "redis://limited:pw@")

    yield refuse
    settings.REDIS_URL = redis_cluster.url
    for node in nodes():
        node.execute_command("ACL", "DELUSER", "limited")
        node.close()


def pending_ids(r: redis.RedisCluster) -> list[str]:
    return [row["message_id"].decode() for row in r.xpending_range(S, G, "-", "+", 100)]


def test_dead_letter_across_slots_goes_in_two_steps_and_a_retry_adds_no_copy(
        admin_client, r, held, refusing, redis_cluster, settings) -> None:  # noqa: F811
    assert r.keyslot(S) != r.keyslot(DLQ)
    group_page = admin_client.get(reverse("streams_admin:group", args=[S, G]))
    assert f"Dead-letter: {TWO_STEPS}" in text(group_page.content)
    entry_page = admin_client.get(reverse("streams_admin:entry", args=[S, held[0]]))
    assert f"Dead-letter: {TWO_STEPS}" in text(entry_page.content)

    refusing("xack")  # the copy is written, then acking the original fails
    failed = admin_client.post(reverse("streams_admin:dead-letter", args=[S, G]),
                               {"ids": held[:2], "reason": "bad"}, follow=True)
    assert (f"Stopped between the two steps (NoPermissionError): {held[0]} is copied to "
            f"{DLQ.decode()} but not yet acked. Nothing is lost: try again"
            in text(failed.content))
    assert pending_ids(r) == held  # nothing lost: still pending, still there
    (copy_id, copy), = r.xrange(DLQ)
    assert copy[b"original_stream"] == S and copy[b"original_id"] == held[0].encode()
    assert copy[b"event_id"] == b"e0" and copy[b"consumer"] == b"dead"

    settings.REDIS_URL = redis_cluster.url  # the operator tries again
    again = admin_client.post(reverse("streams_admin:dead-letter", args=[S, G]),
                              {"ids": held[:2], "reason": "bad"}, follow=True)
    assert (f"Moved 2 entries to the dead-letter stream (2 entries in {TWO_STEPS})."
            in text(again.content))
    letters = r.xrange(DLQ)
    assert [f[b"original_id"].decode() for _, f in letters] == held[:2]  # no duplicate
    assert letters[0][0] == copy_id  # the retry recognised its own copy
    assert pending_ids(r) == held[2:]
    row = AuditEntry.objects.order_by("-id").first()
    assert row.ok and TWO_STEPS in row.result


def test_redrive_across_slots_goes_in_two_steps_and_a_retry_adds_no_copy(
        admin_client, r, held, refusing, redis_cluster, settings) -> None:  # noqa: F811
    admin_client.post(reverse("streams_admin:dead-letter", args=[S, G]), {"ids": held[:1]})
    (letter_id, _), = r.xrange(DLQ)
    screen = admin_client.get(reverse("streams_admin:dead-letters") + f"?key={DLQ.decode()}")
    assert f"Re-drive: {TWO_STEPS}" in text(screen.content)
    length = r.xlen(S)

    refusing("xdel")  # the copy is back on its stream, then deleting the dead letter fails
    failed = admin_client.post(reverse("streams_admin:redrive", args=[DLQ]),
                               {"ids": [letter_id.decode()]}, follow=True)
    assert f"{letter_id.decode()} is copied to orders but not yet deleted" in text(failed.content)
    assert r.xlen(DLQ) == 1 and r.xlen(S) == length + 1
    back_id, back = r.xrevrange(S, count=1)[0]
    assert back[b"event_id"] == b"e0" and b"error" not in back
    assert back[b"redriven_from"] == DLQ and back[b"redriven_id"] == letter_id

    settings.REDIS_URL = redis_cluster.url
    again = admin_client.post(reverse("streams_admin:redrive", args=[DLQ]),
                              {"ids": [letter_id.decode()]}, follow=True)
    assert f"Re-drove 1 dead letter to orders (1 entry in {TWO_STEPS})." in text(again.content)
    assert r.xlen(DLQ) == 0 and r.xlen(S) == length + 1  # no duplicate
    assert r.xrevrange(S, count=1)[0][0] == back_id


def test_dead_letter_and_redrive_within_one_slot_stay_atomic(admin_client, r) -> None:
    key, dlq = b"{x}a", b"agent:stream:deadletter:{x}b"
    assert r.keyslot(key) == r.keyslot(dlq)
    entry_id = r.xadd(key, {"event_id": "e1", "event_type": "{x}b", "data": "{}"}).decode()
    r.xgroup_create(key, G, id="0")
    r.xreadgroup(G, "c", {key: ">"})
    page = admin_client.get(reverse("streams_admin:group", args=[key, G]))
    assert "Dead-letter: atomic" in text(page.content)
    moved = admin_client.post(reverse("streams_admin:dead-letter", args=[key, G]),
                              {"ids": [entry_id]}, follow=True)
    assert "Moved 1 entry to the dead-letter stream (1 entry atomic)." in text(moved.content)
    (letter_id, letter), = r.xrange(dlq)
    assert letter[b"original_stream"] == key and r.xpending(key, G)["pending"] == 0
    screen = admin_client.get(reverse("streams_admin:dead-letters") + "?key=" + dlq.decode())
    assert "Re-drive: atomic" in text(screen.content)
    back = admin_client.post(reverse("streams_admin:redrive", args=[dlq]),
                             {"ids": [letter_id.decode()]}, follow=True)
    assert "(1 entry atomic)." in text(back.content)
    assert r.xlen(dlq) == 0 and r.xlen(key) == 2
    copy = r.xrevrange(key, count=1)[0][1]
    assert copy[b"event_id"] == b"e1" and b"redriven_from" not in copy  # the one script
