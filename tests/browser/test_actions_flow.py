"""The operator loop for a dead consumer in a real Chromium against Daphne: claim everything it
holds to a live consumer, ack one entry without a reload, trim with a preview, and destroy the
group behind a typed confirmation. Redis is checked after every step."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import ROOT
from tests.browser.test_flow import log_in, page, redis_client  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser

STREAM = "agent:stream:task.created"
GROUP = "billing-group"
DEAD, LIVE = "billing-7", "billing-1"
KEEP = 5


def seed(r: redis.Redis) -> None:
    """20 spec envelopes; the dead consumer read 8 and never acked; the live one holds none."""
    for i in range(20):
        r.xadd(STREAM, {
            "event_id": f"00000000-0000-4000-8000-{i:012d}",
            "event_type": "task.created",
            "timestamp": datetime(2026, 1, 2, 3, 4, i, tzinfo=UTC).isoformat(),
            "data": json.dumps({"task_id": f"task-{i}", "amount": i * 10}),
        })
    r.xgroup_create(STREAM, GROUP, id="0")
    r.xreadgroup(GROUP, DEAD, {STREAM: ">"}, count=8)
    r.execute_command("XGROUP", "CREATECONSUMER", STREAM, GROUP, LIVE)


def held(r: redis.Redis, consumer: str) -> list[str]:
    rows = r.xpending_range(STREAM, GROUP, "-", "+", 100, consumername=consumer)
    return [row["message_id"].decode() for row in rows]


def expected_trim(r: redis.Redis, keep: int) -> tuple[int, int, int]:
    """What MAXLEN keep removes, and how many of those the group has pending / not yet read."""
    ids = [entry_id for entry_id, _ in r.xrange(STREAM)]
    removed = set(ids[:max(0, len(ids) - keep)])
    pending = {row["message_id"] for row in r.xpending_range(STREAM, GROUP, "-", "+", 1000)}
    last = r.xinfo_groups(STREAM)[0]["last-delivered-id"].decode()
    undelivered = {entry_id for entry_id, _ in r.xrange(STREAM, min=f"({last}")}
    return len(removed), len(removed & pending), len(removed & undelivered)


def shoot(tab: Page, artifacts: Path, name: str, *, docs: bool = False) -> None:
    tab.screenshot(path=artifacts / f"actions-{name}-full.png", full_page=True)
    tab.screenshot(path=artifacts / f"actions-{name}.png")  # the 1400x900 viewport
    # Opt-in, like test_flow: the shots carry times and uptimes.
    if docs and os.environ.get("UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(artifacts / f"actions-{name}.png",
                        ROOT / "docs" / "screenshots" / f"actions-{name}.png")


def test_claim_dead_consumer_ack_trim_destroy(page, dashboard, redis_client: redis.Redis,  # noqa: F811
                                              artifacts: Path) -> None:
    r = redis_client
    seed(r)
    dead_held = held(r, DEAD)
    assert len(dead_held) == 8 and held(r, LIVE) == []

    log_in(page, dashboard)
    page.locator("#streams").get_by_role("link", name=STREAM, exact=True).click()
    page.get_by_role("link", name=GROUP, exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(GROUP)
    consumers = page.locator("table.consumers tbody tr")  # (the charts above have tables)
    pending_rows = page.locator("#pending tbody tr")
    expect(consumer_row(page, DEAD).locator("td.num").first).to_have_text("8")
    expect(consumer_row(page, LIVE).locator("td.num").first).to_have_text("0")
    expect(pending_rows.locator("td.key")).to_have_text([DEAD] * 8)
    shoot(page, artifacts, "1-dead-consumer")

    # Claim all idle: everything the dead consumer holds goes to the live one.
    claim = page.get_by_role("form", name="Claim all idle entries")
    claim.locator("select[name=from]").select_option(label=f"{DEAD} (8)")
    claim.locator("select[name=to_token]").select_option(value=LIVE)
    claim.locator("input[name=min_idle]").fill("0")
    claim.get_by_role("button", name="Claim all").click()
    expect(page.get_by_role("status").filter(
        has_text=f"Claimed 8 entries from {DEAD} to {LIVE}.")).to_be_visible()
    expect(consumer_row(page, LIVE).locator("td.num").first).to_have_text("8")
    expect(consumer_row(page, DEAD).locator("td.num").first).to_have_text("0")
    expect(consumers).to_have_count(2)
    expect(pending_rows.locator("td.key")).to_have_text([LIVE] * 8)
    expect(pending_rows.locator("td.id")).to_have_text(dead_held)
    assert held(r, LIVE) == dead_held and held(r, DEAD) == []
    assert r.xpending(STREAM, GROUP)["pending"] == 8

    # Ack one through the action bar: htmx answers 204, the table refreshes, no reload.
    page.evaluate("window.sameDocument = true")
    acked = dead_held[0]
    page.get_by_role("checkbox", name=f"select {acked}").check()
    shoot(page, artifacts, "group", docs=True)
    page.get_by_role("group", name="Actions on selected entries").get_by_role(
        "button", name="Ack", exact=True).click()
    expect(page.locator("#toast")).to_contain_text("Acknowledged 1 entry.")
    expect(pending_rows).to_have_count(7)
    expect(pending_rows.locator("td.id")).to_have_text(dead_held[1:])
    assert page.evaluate("window.sameDocument") is True
    assert r.xpending(STREAM, GROUP)["pending"] == 7
    assert held(r, LIVE) == dead_held[1:]
    shoot(page, artifacts, "2-acked")

    # Trim with a preview: MAXLEN 5 would cut pending and undelivered entries.
    removed, pending, undelivered = expected_trim(r, KEEP)
    assert (removed, pending, undelivered) == (15, 7, 7)
    page.locator(".crumbs").get_by_role("link", name=STREAM).click()
    page.get_by_role("link", name="Trim…").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Trim {STREAM}")
    page.get_by_label("keep the newest (MAXLEN)").check()
    page.get_by_label("Threshold").fill(str(KEEP))
    page.get_by_role("button", name="Preview").click()
    preview = page.locator("#trim-preview")
    expect(preview.locator("p").first).to_have_text(
        f"{removed} of 20 entries would go (MAXLEN {KEEP}).")
    expect(preview.locator("tbody tr td")).to_have_text([GROUP, str(pending), str(undelivered)])
    expect(preview.get_by_role("alert")).to_have_text(
        f"{pending + undelivered} of these entries are still needed by a group. "
        "Trimming is refused unless you override.")
    assert r.xlen(STREAM) == 20  # a preview changes nothing
    shoot(page, artifacts, "trim", docs=True)

    preview.get_by_label("Trim anyway").check()
    preview.get_by_label("to confirm").fill(STREAM)
    preview.get_by_role("button", name="Trim").click()
    trimmed = page.get_by_role("status").filter(has_text=f"Trimmed {removed} entries.")
    expect(trimmed).to_be_visible()
    assert r.xlen(STREAM) == KEEP
    shoot(page, artifacts, "3-trimmed")

    # Destroy the group: a wrong name is refused and changes nothing; the right one destroys.
    page.get_by_role("link", name=GROUP, exact=True).click()
    page.get_by_role("link", name="Destroy group…").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Destroy group {GROUP}")
    expect(page.locator(".banner.bad")).to_have_text(
        "The group's 7 pending entries and 2 consumers go with it; its consumers will get "
        "NOGROUP errors. The stream's entries stay.")
    confirm_url = page.url
    page.get_by_label("to confirm").fill(GROUP[:-1])
    shoot(page, artifacts, "4-destroy-confirm")
    page.get_by_role("button", name="Destroy the group").click()
    expect(page.get_by_role("status").filter(
        has_text="Type the group's name exactly to destroy it.")).to_be_visible()
    assert [g["name"].decode() for g in r.xinfo_groups(STREAM)] == [GROUP]
    assert r.xpending(STREAM, GROUP)["pending"] == 7
    shoot(page, artifacts, "5-destroy-refused")

    page.goto(confirm_url)  # the refusal lands on the stream page, not back here
    page.get_by_label("to confirm").fill(GROUP)
    page.get_by_role("button", name="Destroy the group").click()
    expect(page.get_by_role("status").filter(has_text=f"Destroyed group {GROUP}")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_have_text(STREAM)
    expect(page.get_by_role("link", name=GROUP, exact=True)).to_have_count(0)
    assert r.xinfo_groups(STREAM) == []
    assert r.xlen(STREAM) == KEEP  # the stream's entries stay
    shoot(page, artifacts, "6-destroyed")


def consumer_row(tab: Page, name: str) -> Locator:
    return tab.locator("table.consumers tbody tr").filter(
        has=tab.get_by_role("link", name=name, exact=True))
