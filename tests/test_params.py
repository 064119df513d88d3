"""Every bad input gets a clear 4xx or message, never a 500: one case per way it once broke."""

from __future__ import annotations

import html
import json

import pytest
import redis
from django.test import Client
from django.urls import reverse

from streams_admin import params
from streams_admin.filters import TailOptions
from streams_admin.models import AuditEntry
from streams_admin.operations import friendly
from tests.html import table

pytestmark = pytest.mark.django_db

S, G = b"orders", b"ship"
DLQ = b"agent:stream:deadletter:order.placed"
HUGE = "99999999999999999999"  # 20 digits, past 2^64 - 1
ARABIC = "\u0661\u0662\u0663"  # "١٢٣": digits to Python's \d and int(), not to Redis


@pytest.fixture
def scene(r: redis.Redis) -> list[str]:
    ids = [r.xadd(S, {"n": str(n)}).decode() for n in range(3)]
    r.xgroup_create(S, G, id="0")
    r.xreadgroup(G, "c1", {S: ">"})
    return ids


@pytest.fixture
def browser(admin_client: Client) -> Client:
    """The superuser, as a browser sees pages: a 500 is a response, not an exception."""
    admin_client.raise_request_exception = False
    return admin_client


def text(response) -> str:
    return html.unescape(response.content.decode())


def stream_page(client: Client, **query: str):
    return client.get(reverse("streams_admin:stream", args=[S]), query)


def group_page(client: Client, **query: str):
    return client.get(reverse("streams_admin:group", args=[S, G]), query)


# -- entry IDs: ASCII digits, each part at most 2^64 - 1, nothing after ------------------


@pytest.mark.parametrize("query", [{"at": f"{HUGE}-0"}, {"after": f"{HUGE}-0"},
                                   {"before": f"1-{HUGE}"}, {"after": ARABIC},
                                   {"before": "1-1\n"}, {"at": ARABIC, "q": "x"}])
def test_a_stream_page_says_what_is_wrong_with_an_id(browser, scene, query) -> None:
    page = stream_page(browser, **query)
    assert page.status_code == 200
    assert "is not a stream entry ID" in text(page) or "is neither an entry ID" in text(page)
    assert len(table(page.content, 1)) == 3  # and shows the newest entries instead


def test_nothing_before_0_0_is_a_message_not_a_redis_error(browser, scene) -> None:
    for query in ({"before": "0-0"}, {"before": "0-0", "q": "n"}):
        page = stream_page(browser, **query)
        assert page.status_code == 200
        assert "Nothing comes before 0-0" in text(page)


def test_nothing_after_the_highest_id_is_a_message(browser, scene) -> None:
    top = f"{2**64 - 1}-{2**64 - 1}"
    assert "Nothing comes after" in text(stream_page(browser, after=top))
    assert "Nothing comes after" in text(group_page(browser, after=top))
    dead = browser.get(reverse("streams_admin:dead-letters"), {"key": "orders",
                                                                "before": "0-0"})
    assert dead.status_code == 400 and "Nothing comes before 0-0" in text(dead)


@pytest.mark.parametrize("entry_id", [f"{2**64}-0", f"1-{2**64}", f"{HUGE}-0", ARABIC,
                                      "1-1%0A"])
def test_an_entry_page_with_a_bad_id_is_a_404(browser, scene, entry_id) -> None:
    url = reverse("streams_admin:entry", args=[S, "1-1"]).replace("1-1", entry_id)
    assert browser.get(url).status_code == 404


def test_the_highest_id_itself_is_an_id(browser, scene) -> None:
    url = reverse("streams_admin:entry", args=[S, f"{2**64 - 1}-{2**64 - 1}"])
    assert browser.get(url).status_code == 200


def test_ids_are_written_as_redis_writes_them() -> None:
    assert params.entry_id("007-01") == "7-1"
    assert params.entry_id("5") == "5"
    assert params.entry_ids([" 1-0", "1-0", "2-0 "]) == ["1-0", "2-0"]


# -- durations and counts: bounded before any conversion --------------------------------


def test_a_100000_digit_idle_filter_is_a_message(browser, scene) -> None:
    page = group_page(browser, idle="9" * 100_000)
    assert page.status_code == 200 and "is not a duration" in text(page)
    page = group_page(browser, idle="99999999999d")
    assert page.status_code == 200 and "longer than a century" in text(page)
    assert len(table(page.content, -1)) == 3  # the pending list, unfiltered


def test_a_100000_digit_claim_guard_is_a_message(browser, scene) -> None:
    response = browser.post(reverse("streams_admin:claim", args=[S, G]),
                            {"ids": scene[:1], "to": "c2", "min_idle": "9" * 100_000},
                            follow=True)
    assert response.status_code == 200 and "is not a duration" in text(response)


@pytest.mark.parametrize("value", ["\u00b2", "9" * 5000, ARABIC])
def test_odd_numbers_in_counts_are_ignored_or_refused(browser, scene, value) -> None:
    assert browser.get("/", {"page": value}).status_code == 200
    assert stream_page(browser, size=value).status_code == 200
    trim = browser.post(reverse("streams_admin:trim", args=[S]),
                        {"strategy": "maxlen", "threshold": value, "confirm": "orders"},
                        follow=True)
    assert "MAXLEN takes a number of entries to keep." in text(trim)
    assert browser.post(reverse("streams_admin:ack", args=[S, G]),
                        {"ids": scene[:1], "done_so_far": value}).status_code == 302


def test_an_age_older_than_1970_trims_nothing(browser, scene, r) -> None:
    url = reverse("streams_admin:trim", args=[S])
    preview = browser.get(url, {"strategy": "minid", "threshold": "36000d"})
    assert preview.status_code == 200 and "MINID 0-0" in " ".join(text(preview).split())
    browser.post(url, {"strategy": "minid", "threshold": "36000d", "confirm": "orders"})
    assert r.xlen(S) == 3


def test_a_group_set_to_the_first_moment_of_1970_reads_everything(browser, scene, r) -> None:
    response = browser.post(reverse("streams_admin:set-id", args=[S, G]),
                            {"position": "1970-01-01T00:00"}, follow=True)
    assert "now reads after 0-0" in text(response)
    assert r.xinfo_groups(S)[0]["last-delivered-id"] == b"0-0"


# -- the live tail's start ----------------------------------------------------------------


ARABIC_QUOTED = "%D9%A1%D9%A2%D9%A3"  # how a browser sends it


@pytest.mark.parametrize("query", [f"key=orders&after={ARABIC_QUOTED}",
                                   f"key=orders&from={ARABIC_QUOTED}",
                                   f"key=orders&from={HUGE}-0", "key=orders&from=0001-01-01",
                                   "key=orders&after=18446744073709551615-18446744073709551615"])
def test_a_tail_with_a_bad_start_is_refused_with_a_message(query) -> None:
    with pytest.raises(params.BadParam):
        TailOptions.from_query(query.encode())


def test_a_tail_from_0_0_starts_at_the_beginning() -> None:
    assert TailOptions.from_query(b"key=orders&from=0-0").since == "0-0"
    assert TailOptions.from_query(b"key=orders&from=5").since == "4-18446744073709551615"


# -- publish: JSON bounded before json.loads ----------------------------------------------


@pytest.mark.parametrize("data", ["[" * 100_000 + "]" * 100_000, '{"a":' * 5000 + "1" + "}" * 5000,
                                  "[" * 65 + "]" * 65])
def test_deeply_nested_json_is_refused_with_a_message(browser, r, data) -> None:
    response = browser.post(reverse("streams_admin:publish"),
                            {"event_type": "x.made", "data": data}, follow=True)
    assert response.status_code == 400  # the form again, with what was typed
    assert "The data is nested deeper than 64 levels." in text(response)
    assert r.exists(b"agent:stream:x.made") == 0


def test_json_over_a_mebibyte_is_refused_with_a_message(browser, r) -> None:
    response = browser.post(reverse("streams_admin:publish"),
                            {"event_type": "x.made", "data": json.dumps("x" * 2_000_000)},
                            follow=True)
    assert "The data is longer than 1,048,576 characters." in text(response)
    assert r.exists(b"agent:stream:x.made") == 0


def test_json_with_brackets_inside_strings_is_published(browser, r) -> None:
    data = json.dumps({"text": "[" * 1000, "nested": [[{"a": "}]"}]]})
    response = browser.post(reverse("streams_admin:publish"),
                            {"event_type": "x.made", "data": data}, follow=True)
    assert "Published x.made event" in text(response)


# -- IDs in POSTed lists: a clear message, audited as refused -----------------------------


@pytest.mark.parametrize("action", ["ack", "claim", "requeue", "dead-letter"])
def test_a_bad_id_in_a_selection_is_refused_and_audited(browser, scene, r, action) -> None:
    response = browser.post(reverse(f"streams_admin:{action}", args=[S, G]),
                            {"ids": [scene[0], f"{HUGE}-0"], "to": "c2", "min_idle": "0"},
                            follow=True)
    assert response.status_code == 200
    assert f"Not entry IDs: {HUGE}-0." in text(response)
    row = AuditEntry.objects.order_by("-id").first()
    assert (row.action, row.ok, row.result) == (action, False, f"refused: Not entry IDs: {HUGE}-0.")
    assert len(r.xpending_range(S, G, "-", "+", 10, consumername="c1")) == 3  # nothing done


def test_redis_errors_read_as_a_sentence_without_the_script_sha(r) -> None:
    script = r.register_script('return redis.call("XRANGE", KEYS[1], ARGV[1], "+")')
    with pytest.raises(redis.ResponseError) as caught:
        script(keys=[S], args=[f"{HUGE}-0"])
    assert "@user_script:1" in str(caught.value)  # what Redis says, as the dashboard got it
    assert friendly(caught.value) == ("Redis refused: Invalid stream ID specified as stream "
                                      "command argument.")


# -- malformed dead letters ---------------------------------------------------------------


@pytest.fixture
def dead_letters(r: redis.Redis) -> dict[str, str]:
    letters = {
        "good": {"original_stream": "orders", "original_id": "1-0", "data": "1"},
        "slash": {"original_stream": "orders", "original_id": "a/b", "data": "2"},
        "empty": {"original_stream": "orders", "original_id": "", "data": "3"},
        "nowhere": {"original_stream": "", "original_id": "1-0", "data": "4"},
    }
    return {name: r.xadd(DLQ, fields).decode() for name, fields in letters.items()}


def test_malformed_dead_letters_say_so_and_the_screen_works(browser, dead_letters) -> None:
    page = browser.get(reverse("streams_admin:dead-letters"))
    assert page.status_code == 200
    assert [row[3] for row in table(page.content, 1)] == [  # newest first
        "no original_stream field: nowhere to re-drive it to",
        "orders malformed: original_id “” is not an entry ID",
        "orders malformed: original_id “a/b” is not an entry ID",
        "orders 1-0",
    ]


def test_redriving_a_malformed_dead_letter_is_refused_clearly(browser, r, dead_letters) -> None:
    ids = [dead_letters["good"], dead_letters["slash"]]
    response = browser.post(reverse("streams_admin:redrive", args=[DLQ]), {"ids": ids},
                            follow=True)
    assert (f"Re-drove 1 dead letter to {S.decode()}; refused 1 entry: {dead_letters['slash']}"
            " (malformed: original_id “a/b” is not an entry ID).") in text(response)
    assert r.xlen(S) == 1 and r.xlen(DLQ) == 3  # the good one went back, the others stay


# -- where an action goes back to ---------------------------------------------------------


@pytest.mark.parametrize("target", ["0-0", "orders", "http://evil.example/", "//evil.example/",
                                    "/" + "x" * 20_000])
def test_an_action_goes_back_to_its_page_when_next_is_not_a_path_here(browser, scene,
                                                                     target) -> None:
    response = browser.post(reverse("streams_admin:ack", args=[S, G]),
                            {"ids": scene[:1], "next": target})
    assert response.status_code == 302
    assert response["Location"] == reverse("streams_admin:group", args=[S, G])


def test_a_tail_page_after_a_bad_id_is_a_400(browser, scene) -> None:
    url = reverse("streams_admin:tail", args=[S])
    assert browser.get(url, {"after": scene[0]}).status_code == 200
    page = browser.get(url, {"after": f"{HUGE}-0"})
    assert page.status_code == 400 and "is not a stream entry ID" in text(page)


def test_a_consumer_for_a_missing_stream_is_refused_in_words(browser, r) -> None:
    response = browser.post(reverse("streams_admin:create-consumer", args=[b"gone", G]),
                            {"consumer": "c9"}, follow=True)
    assert "The stream does not exist any more." in text(response)


def test_dead_letters_of_a_key_that_is_not_a_stream_is_a_404(browser, r) -> None:
    r.set("plain", "not a stream")
    for key in ("plain", "missing"):
        page = browser.get(reverse("streams_admin:dead-letters"), {"key": key})
        assert page.status_code == 404 and f"{key} does not exist (any more)." in text(page)
