"""What a cluster shard's poll reads (tail_cluster.SlotPolls): every slot group with entries
lately on every poll, quiet ones too while they are few, and spread over up to IDLE_EVERY
polls when they are many; on a real cluster a stream that sat idle still has every entry
delivered, in order."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from django.contrib.auth import get_user_model
from redis.crc import key_slot

from streams_admin.tail_cluster import IDLE_BATCH, IDLE_EVERY, QUIET_POLLS, SlotPolls
from tests.test_tail_hardening import open_page


class Reader:
    last_id = "0-0"


def read_slots(polls: SlotPolls, readers: dict, busy: set[int]) -> set[int]:
    """One poll: the slots it read; those in `busy` had entries."""
    due = polls.due(readers)
    for slot in due:
        polls.heard(slot, slot in busy)
    return set(due)


def quiet_keys(count: int) -> dict[bytes, Reader]:
    """`count` keys of as many slots."""
    keys: dict[int, bytes] = {}
    n = 0
    while len(keys) < count:
        keys.setdefault(key_slot(b"q%d" % n), b"q%d" % n)
        n += 1
    return {key: Reader() for key in keys.values()}


def test_many_quiet_slot_groups_are_spread_over_polls_and_a_busy_one_read_always() -> None:
    readers = {**quiet_keys(4 * IDLE_BATCH), b"busy": Reader()}
    busy = key_slot(b"busy")
    polls = SlotPolls()
    for _ in range(QUIET_POLLS):
        assert len(read_slots(polls, readers, {busy})) == len(readers)
    reads: Counter[int] = Counter()
    for _ in range(4 * IDLE_EVERY):
        due = read_slots(polls, readers, {busy})
        assert busy in due and len(due) <= IDLE_BATCH + 2  # about a batch of the quiet ones
        reads.update(due)
    assert set(reads.values()) == {4, 4 * IDLE_EVERY}  # each quiet one every IDLE_EVERY-th
    quiet = key_slot(next(iter(readers)))
    while quiet not in read_slots(polls, readers, {busy, quiet}):
        pass  # it has an entry at its next read: read on every poll again
    assert all(quiet in read_slots(polls, readers, set()) for _ in range(5))


def test_a_few_quiet_slot_groups_are_read_on_every_poll() -> None:
    readers = quiet_keys(IDLE_BATCH)
    polls = SlotPolls()
    for _ in range(QUIET_POLLS + 3 * IDLE_EVERY):
        assert len(read_slots(polls, readers, set())) == IDLE_BATCH


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
