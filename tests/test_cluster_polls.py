"""What a cluster shard's poll reads (tail_cluster.SlotPolls): every slot group with entries
lately on every poll, a quiet one every IDLE_EVERY-th poll; and on a real cluster a stream
that sat idle still has every entry delivered, in order."""

from __future__ import annotations

import asyncio

import pytest
from django.contrib.auth import get_user_model
from redis.crc import key_slot

from streams_admin.tail_cluster import IDLE_EVERY, QUIET_POLLS, SlotPolls
from tests.test_tail_hardening import open_page


class Reader:
    last_id = "0-0"


def read_slots(polls: SlotPolls, readers: dict, busy: set[int]) -> set[int]:
    """One poll: the slots it read; those in `busy` had entries."""
    due = polls.due(readers)
    for slot in due:
        polls.heard(slot, slot in busy)
    return set(due)


def test_a_quiet_slot_group_is_read_every_idle_every_th_poll_and_a_busy_one_always() -> None:
    readers = {b"quiet": Reader(), b"busy": Reader()}
    quiet, busy = key_slot(b"quiet"), key_slot(b"busy")
    polls = SlotPolls()
    for _ in range(QUIET_POLLS):
        assert read_slots(polls, readers, {busy}) == {quiet, busy}
    seen = [quiet in read_slots(polls, readers, {busy}) for _ in range(4 * IDLE_EVERY)]
    assert seen.count(True) == 4  # every IDLE_EVERY-th poll
    assert all(busy in read_slots(polls, readers, {busy}) for _ in range(10))
    while quiet not in read_slots(polls, readers, {busy, quiet}):
        pass  # the quiet one has an entry at its next read: read on every poll again
    assert all(quiet in read_slots(polls, readers, set()) for _ in range(QUIET_POLLS - 1))


@pytest.mark.django_db(transaction=True)
async def test_an_idle_stream_on_a_cluster_still_gets_every_entry(rc):
    staff = await asyncio.to_thread(get_user_model().objects.create_user, "op",
                                    password="pw", is_staff=True)
    rc.xadd("idle", {"n": "0"})
    page = await open_page(staff, "key=idle")
    await asyncio.sleep(QUIET_POLLS * 0.05 * 1.5)  # quiet for longer than QUIET_POLLS polls
    written = []
    for n in range(1, 6):
        written.append(rc.xadd("idle", {"n": str(n)}).decode())
        await page.until(lambda: written[-1] in page.ids)
    assert page.ids == written
    await page.communicator.disconnect()
