"""The confirmations that keep an operator from losing or repeating work, in a real Chromium
against Daphne: requeue names the other groups, deleting entries works without JavaScript
through a preview, moving a group to $ says what it skips, and a bad publish keeps the form.
Redis is checked after every step; each confirmation page is photographed."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import Dashboard
from tests.browser.test_flow import VIEWPORT, log_in, page, redis_client  # noqa: F401

pytestmark = pytest.mark.browser

PREFIX = "agent:stream:hardening."


def seed(r: redis.Redis, stream: str, *, others: tuple[str, ...] = ()) -> list[str]:
    """10 envelopes; group "ship": "dead" holds 6, "live" none, 4 unread; other groups at 0."""
    ids = [r.xadd(stream, {"event_type": "order.placed", "data": json.dumps({"n": n})}).decode()
           for n in range(10)]
    r.xgroup_create(stream, "ship", id="0")
    r.xreadgroup("ship", "dead", {stream: ">"}, count=6)
    r.xgroup_createconsumer(stream, "ship", "live")
    for group in others:
        r.xgroup_create(stream, group, id="0")
    return ids


def held(r: redis.Redis, stream: str, consumer: str | None = None) -> list[str]:
    rows = r.xpending_range(stream, "ship", "-", "+", 100, consumername=consumer)
    return [row["message_id"].decode() for row in rows]


def shoot(tab: Page, artifacts: Path, name: str) -> None:
    tab.screenshot(path=artifacts / f"hardening-{name}.png", full_page=True)


@pytest.fixture
def no_js(browser: Browser, dashboard: Dashboard) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT, base_url=dashboard.url,
                                  java_script_enabled=False)
    context.set_default_timeout(5000)
    yield context.new_page()
    context.close()


def test_requeue_names_the_other_groups_and_offers_a_claim(  # noqa: F811
        page, dashboard, redis_client, artifacts) -> None:  # noqa: F811
    r, stream = redis_client, PREFIX + "requeue"
    seed(r, stream, others=("audit-log",))
    r.xreadgroup("audit-log", "a1", {stream: ">"}, count=3)
    ids = held(r, stream)
    log_in(page, dashboard)
    page.goto(f"/streams/{stream}/groups/ship/?consumer=dead")
    claim_all = page.get_by_role("form", name="Claim all idle entries")
    expect(claim_all.locator("select[name=from] option:checked")).to_have_text("dead (6)")
    targets = claim_all.locator("select[name=to_token] option")
    expect(targets).to_have_count(1)  # the source is not among the targets
    expect(targets).to_have_text(re.compile(r"^live \(idle "))

    page.goto(f"/streams/{stream}/groups/ship/")  # no filter: choosing the source hides it
    claim_all.locator("select[name=to_token]").select_option("dead")
    claim_all.locator("select[name=from]").select_option(label="dead (6)")
    expect(claim_all.locator("select[name=to_token] option[value=dead]")).to_be_disabled()
    expect(claim_all.locator("select[name=to_token]")).to_have_value("live")

    for entry_id in ids[2:4]:
        page.get_by_role("checkbox", name=f"select {entry_id}").check()
    page.get_by_role("button", name="Requeue…").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Requeue 2 entries of group ship")
    expect(page.locator("#requeue-reach")).to_contain_text(
        "audit-log: already past 1 of them (delivered, or skipped when it started): gets "
        "those again as new entries, and the rest twice.")
    assert r.xlen(stream) == 10  # the page changed nothing
    shoot(page, artifacts, "requeue")

    page.get_by_label("to confirm").fill("ship")
    page.get_by_role("button", name="Requeue 2 entries").click()
    expect(page.get_by_role("status").filter(
        has_text="Requeued 2 entries as new entries.")).to_be_visible()
    assert r.xlen(stream) == 12 and held(r, stream) == ids[:2] + ids[4:]


def test_delete_selected_without_javascript(no_js, dashboard, redis_client,  # noqa: F811
                                            artifacts) -> None:
    r, stream = redis_client, PREFIX + "delete"
    ids = seed(r, stream)
    log_in(no_js, dashboard)
    no_js.goto(f"/streams/{stream}/")
    for entry_id in (ids[0], ids[9]):  # pending in ship; not yet read by ship
        no_js.get_by_role("checkbox", name=f"select {entry_id}").check()
    no_js.get_by_role("button", name="Delete selected…").click()
    expect(no_js.get_by_role("heading", level=1)).to_have_text(f"Delete 2 entries of {stream}")
    rows = no_js.locator("#delete-preview tbody tr")
    expect(rows.filter(has_text=ids[0]).locator("td").nth(2)).to_have_text("ship")
    expect(rows.filter(has_text=ids[9]).locator("td").nth(3)).to_have_text("ship")
    expect(no_js.locator("#delete-risk")).to_contain_text("1 is still pending in a group")
    assert r.xlen(stream) == 10
    shoot(no_js, artifacts, "delete-entries")

    no_js.get_by_label("to confirm").fill(stream[:-1])
    no_js.get_by_role("button", name="Delete 2 entries").click()
    expect(no_js.get_by_role("status").filter(
        has_text="Type the stream's name exactly")).to_be_visible()
    expect(no_js.get_by_role("heading", level=1)).to_have_text(f"Delete 2 entries of {stream}")
    assert r.xlen(stream) == 10
    no_js.get_by_label("to confirm").fill(stream)
    no_js.get_by_role("button", name="Delete 2 entries").click()
    expect(no_js.get_by_role("status").filter(
        has_text="Deleted 2 entries. 1 of them was still pending")).to_be_visible()
    assert r.xlen(stream) == 8 and not r.xrange(stream, ids[0], ids[0])


def test_set_id_to_dollar_needs_the_group_name(page, dashboard, redis_client,  # noqa: F811
                                               artifacts) -> None:
    r, stream = redis_client, PREFIX + "setid"
    seed(r, stream)
    log_in(page, dashboard)
    page.goto(f"/streams/{stream}/groups/ship/")
    page.get_by_role("link", name="Set ID…").click()
    page.get_by_label("New position").fill("$")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#setid-skips")).to_have_text(
        "The group skips 4 entries it has not read yet: its consumers will never get them.")
    shoot(page, artifacts, "set-id")
    page.get_by_label("to confirm").fill("ship")
    page.get_by_role("button", name="Skip them: set the ID").click()
    expect(page.get_by_role("status").filter(has_text="now reads after $")).to_be_visible()
    assert r.xinfo_groups(stream)[0]["lag"] == 0


def test_publish_keeps_the_form_on_bad_json(page, dashboard, redis_client,  # noqa: F811
                                            artifacts) -> None:
    r = redis_client
    log_in(page, dashboard)
    page.goto("/publish/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Publish an event")
    page.get_by_label("Event type").fill("hardening.publish")
    typed = '{"task_id": "t-1",'
    page.get_by_label("Data (JSON)").fill(typed)
    page.get_by_role("button", name="Publish").click()
    expect(page.get_by_role("alert")).to_contain_text("The data is not valid JSON")
    expect(page.get_by_label("Data (JSON)")).to_have_value(typed)
    expect(page.get_by_label("Event type")).to_have_value("hardening.publish")
    shoot(page, artifacts, "publish-error")
    assert not r.exists(PREFIX + "publish")

    page.get_by_label("Data (JSON)").fill('{"task_id": "t-1"}')
    page.get_by_role("button", name="Publish").click()
    expect(page.locator("#toast")).to_contain_text("Published hardening.publish event")
    (_, fields), = r.xrange(PREFIX + "publish")
    assert json.loads(fields[b"data"]) == {"task_id": "t-1"}
