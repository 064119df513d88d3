"""The live tail over real websockets and a real Redis: what arrives, what is refused, cleanup."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model

from dashboard.asgi import application
from streams_admin import consumers
from streams_admin.consumers import TailConsumer
from streams_admin.names import to_token

pytestmark = pytest.mark.django_db(transaction=True)


def envelope(event_type: str, n: int) -> dict[str, str]:
    return {"event_id": f"e{n}", "event_type": event_type,
            "timestamp": "2026-11-28T10:00:00+00:00", "data": json.dumps({"n": n})}


@pytest.fixture
def staff():
    return get_user_model().objects.create_user("op", password="pw", is_staff=True)


async def open_tail(user, query: str) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(TailConsumer.as_asgi(), f"/ws/tail/?{query}")
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    assert connected
    communicator.live = await communicator.receive_json_from(timeout=3)
    assert communicator.live["type"] == "live"  # every stream is being read from now on
    return communicator


async def receive_ids(communicator: WebsocketCommunicator, count: int) -> list[str]:
    """Entry IDs from the rows received until `count` have arrived."""
    ids: list[str] = []
    while len(ids) < count:
        message = await communicator.receive_json_from(timeout=3)
        if message["type"] == "entries":
            await communicator.send_json_to({"ack": message["seq"]})
            ids += [row.split('data-id="', 1)[1].split('"', 1)[0] for row in message["rows"]]
    return ids


async def drain(communicator: WebsocketCommunicator) -> list[dict]:
    """Every message until the socket has been quiet for a second."""
    messages = []
    while not await communicator.receive_nothing(timeout=1):
        messages.append(await communicator.receive_json_from())
        if messages[-1]["type"] == "entries":
            await communicator.send_json_to({"ack": messages[-1]["seq"]})
    return messages


async def test_new_entries_arrive_rendered_and_escaped(r: redis.Redis, staff) -> None:
    r.xadd("s", {"a": "old"})
    tail = await open_tail(staff, f"key={to_token(b's')}")
    new_id = r.xadd("s", {"<b>f</b>": "<script>x</script>"}).decode()
    message = await tail.receive_json_from(timeout=3)
    assert message["type"] == "entries" and message["last_id"] == new_id
    assert "&lt;script&gt;x&lt;/script&gt;" in message["rows"][0]
    assert "<script>" not in message["rows"][0]
    await tail.disconnect()


async def test_from_an_id_then_live_has_no_gap_and_no_duplicate(r: redis.Redis, staff) -> None:
    ids = [r.xadd("s", {"n": str(n)}).decode() for n in range(20)]
    tail = await open_tail(staff, f"key=s&after={ids[9]}")
    writer = asyncio.create_task(asyncio.to_thread(
        lambda: [r.xadd("s", {"n": str(n)}).decode() for n in range(20, 40)]))
    received = await receive_ids(tail, 30)
    ids += await writer
    assert received == ids[10:]
    await tail.disconnect()


async def test_from_a_date_time_is_inclusive(r: redis.Redis, staff) -> None:
    for ms in (1000, 2000, 3000):
        r.xadd("s", {"n": "1"}, id=f"{ms}-0")
    tail = await open_tail(staff, "key=s&from=1970-01-01T00:00:02Z")
    assert await receive_ids(tail, 2) == ["2000-0", "3000-0"]
    await tail.disconnect()


async def test_filters_apply_before_sending(r: redis.Redis, staff) -> None:
    tail = await open_tail(staff, "key=s&type=order.paid&field=event_id&op=contains&value=7")
    for n in range(20):
        r.xadd("s", envelope("order.paid" if n % 2 else "order.placed", n))
    ids = [row for message in await drain(tail) for row in message.get("rows", [])]
    assert len(ids) == 2 and "e7" in ids[0] and "e17" in ids[1]
    await tail.disconnect()


async def test_text_search(r: redis.Redis, staff) -> None:
    tail = await open_tail(staff, "key=s&q=NEEDLE")
    r.xadd("s", {"a": "hay"})
    r.xadd("s", {"a": "a needle here"})
    rows = [row for message in await drain(tail) for row in message["rows"]]
    assert len(rows) == 1 and "a needle here" in rows[0]
    await tail.disconnect()


async def test_firehose_follows_a_pattern_including_new_streams(r, staff, monkeypatch) -> None:
    monkeypatch.setattr(consumers, "RESCAN", 0.1)
    monkeypatch.setattr(consumers, "HEARTBEAT", 0.2)
    r.xadd("agent:stream:a", {"n": "1"})
    r.xadd("other", {"n": "1"})
    tail = await open_tail(staff, "pattern=agent:stream:*")
    a = r.xadd("agent:stream:a", {"n": "2"}).decode()
    r.xadd("other", {"n": "2"})
    b = r.xadd("agent:stream:b", {"n": "1"}).decode()  # created after the tail opened
    assert sorted(await receive_ids(tail, 2)) == sorted([a, b])
    await tail.disconnect()


async def test_firehose_rows_from_several_streams_come_in_id_order(r, staff) -> None:
    r.xadd("m:a", {"n": "seed"})
    r.xadd("m:b", {"n": "seed"})
    tail = await open_tail(staff, "pattern=m:*")
    unacked = []
    for n in range(consumers.WINDOW):  # fill the page's window, one message each, no ack
        r.xadd("m:a", {"n": f"w{n}"})
        unacked.append(await tail.receive_json_from(timeout=3))
    written = []  # alternating streams: frames from both readers wait in the queue
    for n in range(8):
        written.append(r.xadd("m:a" if n % 2 else "m:b", {"n": str(n)}).decode())
        await asyncio.sleep(0.01)
    readers = consumers.hub().readers
    async with asyncio.timeout(3):  # until both readers have queued everything for the page
        while {readers[b"m:a"].last_id, readers[b"m:b"].last_id} != set(written[-2:]):
            await asyncio.sleep(0.01)
    await tail.send_json_to({"ack": unacked[-1]["seq"]})
    rest = await drain(tail)
    assert len(rest) == 1  # one message, merged from several frames of two streams
    shown = [row.split('data-id="')[1].split('"')[0] for row in rest[0]["rows"]]
    assert shown == written and rest[0]["last_id"] == written[-1]
    await tail.disconnect()


async def test_watching_never_touches_groups(r: redis.Redis, staff) -> None:
    r.xadd("s", {"n": "0"})
    r.xgroup_create("s", "g", id="0")
    tail = await open_tail(staff, "key=s&from=0")
    r.xadd("s", {"n": "1"})
    await receive_ids(tail, 2)
    await tail.disconnect()
    assert r.xpending("s", "g")["pending"] == 0
    assert r.xinfo_groups("s")[0]["last-delivered-id"] == b"0-0"


async def test_one_reader_per_stream_and_cleanup(r: redis.Redis, staff) -> None:
    r.xadd("s", {"n": "0"})
    clients_before = len(r.client_list())
    tasks_before = len(asyncio.all_tasks())
    tails = [await open_tail(staff, "key=s") for _ in range(5)]
    assert len(consumers.hub().readers) == 1
    r.xadd("s", {"n": "1"})
    for tail in tails:
        assert len(await receive_ids(tail, 1)) == 1
    for tail in tails:
        await tail.disconnect()
    assert consumers.hub().readers == {}
    await asyncio.sleep(0.1)
    assert len(asyncio.all_tasks()) == tasks_before
    assert len(r.client_list()) == clients_before


async def test_a_slow_client_gets_a_skipped_marker_and_a_fast_one_everything(r, staff, settings):
    settings.STREAMS_ADMIN = {"TAIL_QUEUE_BYTES": 1}  # keeps only the newest frame
    fast = await open_tail(staff, "key=s")
    slow = await open_tail(staff, "key=s")  # reads, but never acknowledges until the end
    reading = asyncio.create_task(receive_ids(fast, 12))  # the fast page keeps up
    written = []
    for n in range(12):
        written.append(r.xadd("s", {"n": str(n)}).decode())
        await asyncio.sleep(0.08)  # one frame each
    assert await reading == written
    await fast.disconnect()
    unacked = []
    while not await slow.receive_nothing(timeout=0.5):
        unacked.append(await slow.receive_json_from())
    assert len(unacked) == consumers.WINDOW  # then the server stopped sending
    await slow.send_json_to({"ack": unacked[-1]["seq"]})
    rest = await drain(slow)
    assert rest[0] == {"type": "skipped", "count": 12 - consumers.WINDOW - 1}
    assert [m["last_id"] for m in rest[1:]] == written[-1:]
    await slow.disconnect()


async def test_a_page_that_fell_behind_catches_up_in_one_message(r, staff) -> None:
    slow = await open_tail(staff, "key=s")
    written = []
    for n in range(12):
        written.append(r.xadd("s", {"n": str(n)}).decode())
        await asyncio.sleep(0.08)  # one frame each
    unacked = []
    while not await slow.receive_nothing(timeout=0.5):
        unacked.append(await slow.receive_json_from())
    assert len(unacked) == consumers.WINDOW
    await slow.send_json_to({"ack": unacked[-1]["seq"]})
    rest = await drain(slow)
    assert len(rest) == 1 and rest[0]["read"] == 12 - consumers.WINDOW  # nothing skipped
    received = [m["rows"][0].split('data-id="')[1].split('"')[0] for m in unacked]
    received += [row.split('data-id="')[1].split('"')[0] for row in rest[0]["rows"]]
    assert received == written
    await slow.disconnect()


async def test_junk_from_the_page_is_ignored_and_the_tail_goes_on(r: redis.Redis, staff) -> None:
    tail = await open_tail(staff, "key=s")
    for junk in ("not json", "{", '"ack"', '{"ack": "1"}', "[]", "null"):
        await tail.send_to(text_data=junk)
    await tail.send_to(bytes_data=b"\xff\x00binary")
    ids = [r.xadd("s", {"n": str(n)}).decode() for n in range(3)]
    assert await receive_ids(tail, 3) == ids
    await tail.disconnect()


async def test_filtered_and_unfiltered_viewers_share_the_reader(r: redis.Redis, staff) -> None:
    everything = await open_tail(staff, "key=s")
    needles = await open_tail(staff, "key=s&q=needle")
    assert len(consumers.hub().readers) == 1
    ids = [r.xadd("s", {"a": text}).decode() for text in ("hay", "needle", "hay")]
    assert await receive_ids(everything, 3) == ids
    filtered = await drain(needles)
    rows = [row for m in filtered for row in m["rows"]]
    assert len(rows) == 1 and f'data-id="{ids[1]}"' in rows[0]
    assert sum(m["read"] for m in filtered) == 3  # it read past what it did not show,
    assert filtered[-1]["last_id"] == ids[-1]  # so a reconnect resumes after the last one
    await everything.disconnect()
    await needles.disconnect()


async def test_unauthenticated_and_non_staff_sockets_are_refused(r, django_user_model) -> None:
    anonymous = WebsocketCommunicator(TailConsumer.as_asgi(), "/ws/tail/?key=s")
    assert (await anonymous.connect())[0] is False


async def test_full_stack_checks_session_and_origin(r, client, staff) -> None:
    await asyncio.to_thread(client.force_login, staff)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    good = WebsocketCommunicator(application, "/ws/tail/?key=s",
                                 headers=[(b"cookie", cookie), (b"origin", b"http://localhost"),
                                          (b"host", b"localhost")])
    assert (await good.connect())[0] is True
    await good.disconnect()
    evil = WebsocketCommunicator(application, "/ws/tail/?key=s",
                                 headers=[(b"cookie", cookie), (b"origin", b"http://evil.example"),
                                          (b"host", b"localhost")])
    assert (await evil.connect())[0] is False
    no_session = WebsocketCommunicator(application, "/ws/tail/?key=s",
                                       headers=[(b"origin", b"http://localhost")])
    assert (await no_session.connect())[0] is False


async def test_bad_parameters_get_a_clear_error(r, staff) -> None:
    tail = WebsocketCommunicator(TailConsumer.as_asgi(), "/ws/tail/?key=s&from=someday")
    tail.scope["user"] = staff
    await tail.connect()
    message = await tail.receive_json_from(timeout=3)
    assert message["type"] == "error" and "someday" in message["message"]


def row_ids(message: dict) -> list[str]:
    return [row.split('data-id="')[1].split('"')[0] for row in message["rows"]]


async def test_a_firehose_page_resumes_each_stream_from_its_own_position(r, staff) -> None:
    a0, b0 = r.xadd("m:a", {"n": "a0"}).decode(), r.xadd("m:b", {"n": "b0"}).decode()
    tail = await open_tail(staff, "pattern=m:*")
    assert tail.live["positions"] == {"m:a": a0, "m:b": b0}
    a1 = r.xadd("m:a", {"n": "a1"}).decode()
    message = await tail.receive_json_from(timeout=3)
    assert row_ids(message) == [a1] and message["positions"] == {"m:a": a1}
    a2 = r.xadd("m:a", {"n": "a2"}).decode()  # on its way to the page when the socket drops,
    b1 = r.xadd("m:b", {"n": "b1"}).decode()  # while this newer one of another stream got there
    await tail.disconnect()
    c0 = r.xadd("m:c", {"n": "c0"}).decode()  # a stream the page never heard of

    page = WebsocketCommunicator(TailConsumer.as_asgi(), "/ws/tail/?pattern=m:*&resume=1")
    page.scope["user"] = staff
    assert (await page.connect())[0]
    await page.send_json_to({"resume": {"m:a": a1, "m:b": b1, "~!!": "1-0", "m:x": "nope"}})
    live = await page.receive_json_from(timeout=3)
    assert live == {"type": "live", "positions": {"m:a": a1, "m:b": b1, "m:c": "0-0"}}
    caught_up = await page.receive_json_from(timeout=3)
    assert row_ids(caught_up) == [a2, c0]  # one last ID (b1) would have lost a2
    assert caught_up["positions"] == {"m:a": a2, "m:c": c0}
    await page.disconnect()


async def test_a_resume_that_never_comes_starts_from_now(r, staff, monkeypatch) -> None:
    monkeypatch.setattr(consumers, "RESUME_WAIT", 0.2)
    a0 = r.xadd("m:a", {"n": "a0"}).decode()
    page = WebsocketCommunicator(TailConsumer.as_asgi(), "/ws/tail/?pattern=m:*&resume=1")
    page.scope["user"] = staff
    assert (await page.connect())[0]
    assert await page.receive_json_from(timeout=3) == {"type": "live", "positions": {"m:a": a0}}
    a1 = r.xadd("m:a", {"n": "a1"}).decode()
    assert row_ids(await page.receive_json_from(timeout=3)) == [a1]
    await page.disconnect()
