"""The Alerts screen and rule forms: admins create, edit, disable, delete and test rules, each
audited; bad input is a form with the reason; viewers read, and are refused changes (403,
audited); firing alerts show on the Alerts screen and on the overview."""

from __future__ import annotations

import html
import re
import time

import pytest
from django.urls import reverse

from streams_admin.models import AuditEntry
from streams_admin.trends import sampler
from streams_admin.trends.alert_models import AlertEvent, AlertRule, AlertState
from tests.conftest import role_client
from tests.html import link
from tests.webhook import Receiver, free_port

pytestmark = pytest.mark.django_db
FORM = {"name": "billing behind", "metric": "lag", "stream_glob": "orders*",
        "group_glob": "*", "comparison": ">", "threshold": "100", "for_seconds": "60",
        "webhook_url": "https://hooks.example.com/alerts", "webhook_kind": "generic",
        "enabled": "on"}


@pytest.fixture
def admin(client, django_user_model):
    return role_client(client, django_user_model, "Streams admin", "alice")


@pytest.fixture
def receiver():
    found = Receiver().start()
    yield found
    found.stop()


def text(content: bytes | str) -> str:
    """What a reader sees of a page (or a part of one): its text, whitespace collapsed."""
    raw = content.decode() if isinstance(content, bytes) else content
    return " ".join(html.unescape(re.sub(r"<[^>]*>", " ", raw)).split())


def part(content: bytes, marker: str) -> str:
    """The element that carries marker (an attribute), up to its closing tag: its text."""
    raw = content.decode()
    start = raw.index(marker)
    start = raw.rindex("<", 0, start)
    tag = re.match(r"<(\w+)", raw[start:])[1]
    return text(raw[start:raw.index(f"</{tag}>", start)])


def make_rule(**fields) -> AlertRule:
    values = {k: v for k, v in FORM.items() if k != "enabled"} | {"target": "default"}
    return AlertRule.objects.create(**(values | fields))


def test_an_admin_creates_a_rule_and_it_is_audited(admin):
    response = admin.post(reverse("streams_admin:alert-new"), FORM, follow=True)
    assert response.status_code == 200
    rule = AlertRule.objects.get()
    assert (rule.name, rule.target, rule.threshold, rule.for_seconds) == (
        "billing behind", "default", 100.0, 60)
    assert "Rule “billing behind” created." in text(response.content)
    assert "billing behind" in part(response.content, "data-rule=")
    row = AuditEntry.objects.get()
    assert row.action == "alert-rule-create" and row.ok and row.username == "alice"
    assert row.arguments["webhook_url"] == FORM["webhook_url"]
    assert row.arguments["threshold"] == 100.0


@pytest.mark.parametrize("field, value, error", [
    ("webhook_url", "ftp://example.com/x", "Only http:// and https:// webhook URLs are allowed."),
    ("webhook_url", "javascript:alert(1)", "Only http:// and https:// webhook URLs are allowed."),
    ("webhook_url", "http:///nohost", "The URL has no host."),
    ("webhook_url", "http://example.com:99999/", "Not a URL"),
    ("threshold", "lots", "Enter a number."),
    ("threshold", "nan", "Enter a number."),
    ("for_seconds", "-5", "Ensure this value is greater than or equal to 0."),
    ("for_seconds", str(8 * 86400), "At most 604800 seconds"),
    ("name", "   ", "This field is required."),
    ("stream_glob", " ", "This field is required."),
    ("metric", "rss", "Select a valid choice."),
])
def test_bad_input_is_the_form_again_with_the_reason(admin, field, value, error):
    response = admin.post(reverse("streams_admin:alert-new"), FORM | {field: value})
    assert response.status_code == 200
    assert error in part(response.content, 'class="field invalid"')
    assert not AlertRule.objects.exists() and not AuditEntry.objects.exists()


def test_an_admin_edits_disables_and_deletes_a_rule_each_audited(admin):
    rule = make_rule()
    AlertState.objects.create(rule=rule, stream=b"orders", group=b"g", digest=b"x" * 32,
                              state="firing", since=1.0, fired_at=1.0, value=500, value_at=1.0)
    edit = reverse("streams_admin:alert-edit", args=[rule.id])
    assert admin.post(edit, FORM | {"threshold": "250"}).status_code == 302
    rule.refresh_from_db()
    assert rule.threshold == 250
    admin.post(reverse("streams_admin:alert-enable", args=[rule.id]), {"enabled": "0"})
    rule.refresh_from_db()
    assert not rule.enabled and not AlertState.objects.exists()  # its states end with it
    assert AlertEvent.objects.get().note == "rule disabled"
    admin.post(reverse("streams_admin:alert-enable", args=[rule.id]), {"enabled": "1"})
    admin.post(reverse("streams_admin:alert-delete", args=[rule.id]))
    assert not AlertRule.objects.exists()
    actions = list(AuditEntry.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["alert-rule-edit", "alert-rule-disable", "alert-rule-enable",
                       "alert-rule-delete"]
    deleted = AuditEntry.objects.get(action="alert-rule-delete")
    assert deleted.arguments["name"] == "billing behind" and deleted.arguments["threshold"] == 250


def test_a_viewer_reads_the_alerts_screen_and_may_change_nothing(viewer_client):
    rule = make_rule()
    content = viewer_client.get(reverse("streams_admin:alerts")).content
    assert "billing behind" in part(content, "data-rule=")
    assert b"/alerts/new/" not in content and b"Send test" not in content
    assert viewer_client.get(reverse("streams_admin:alert-new")).status_code == 403
    assert viewer_client.post(reverse("streams_admin:alert-new"), FORM).status_code == 403
    for name in ("alert-edit", "alert-enable", "alert-delete", "alert-test"):
        assert viewer_client.post(reverse(f"streams_admin:{name}", args=[rule.id]),
                                  FORM).status_code == 403
    assert AlertRule.objects.get().threshold == 100 and AlertRule.objects.get().enabled
    refused = AuditEntry.objects.order_by("id")
    assert [a.action for a in refused] == ["alert-rule-create", "alert-rule-edit",
                                           "alert-rule-enable", "alert-rule-delete",
                                           "alert-test"]
    assert all(not a.ok and a.result.startswith("refused") for a in refused)


def test_anonymous_is_sent_to_log_in(client, db):
    response = client.get(reverse("streams_admin:alerts"))
    assert response.status_code == 302 and "login" in response["Location"]


def test_send_test_reaches_the_receiver_and_says_so(admin, receiver):
    rule = make_rule(webhook_url=receiver.url, webhook_kind="slack")
    response = admin.post(reverse("streams_admin:alert-test", args=[rule.id]), follow=True)
    assert "Test notification to 127.0.0.1: accepted." in text(response.content)
    (_, body), = receiver.received
    assert list(body) == ["text"] and body["text"].startswith("[TEST] billing behind")
    row = AuditEntry.objects.get()
    assert row.action == "alert-test" and row.ok


def test_send_test_to_a_receiver_that_is_down_shows_why(admin):
    rule = make_rule(webhook_url=f"http://127.0.0.1:{free_port()}/hook")
    response = admin.post(reverse("streams_admin:alert-test", args=[rule.id]), follow=True)
    said = part(response.content, 'class="banner bad"')
    assert "Test notification to 127.0.0.1: failed" in said and "Connection" in said
    row = AuditEntry.objects.get()
    assert row.action == "alert-test" and not row.ok


def test_firing_shows_on_the_alerts_screen_and_the_overview(admin, r):
    r.xadd(b"orders", {b"n": b"1"})
    r.xgroup_create(b"orders", b"billing", id="0")  # lag 1
    make_rule(threshold=0, for_seconds=0, webhook_url="http://127.0.0.1:1/hook")
    assert sampler.Sampler(10).cycle(int(time.time()))
    content = admin.get(reverse("streams_admin:alerts")).content
    row = part(content, 'data-state="firing"')
    assert "billing behind" in row and "orders › billing" in row
    assert link(content, "orders › billing") == "/streams/orders/groups/billing/"
    assert "1 firing" in part(content, 'id="now"')
    assert "firing" in part(content, 'data-event="firing"')
    assert "waiting" in part(content, 'data-delivery="queued"')
    assert b"data-sampler" not in content  # the cycle renewed the lease, sampled the target
    overview = admin.get(reverse("streams_admin:overview")).content
    banner = part(overview, "data-alerts-firing")
    assert "1 alert firing" in banner and "billing behind on orders › billing" in banner


def test_a_target_that_fails_to_sample_is_said_to_hold_its_alerts(admin, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    make_rule()
    assert sampler.Sampler(10).cycle(int(time.time()))
    content = admin.get(reverse("streams_admin:alerts")).content
    assert "nothing fires or resolves until it is sampled again" in part(
        content, 'data-sampler="failing"')


def test_no_sampler_running_is_said(admin):
    make_rule()
    content = admin.get(reverse("streams_admin:alerts")).content
    assert "No sampler is running" in part(content, 'data-sampler="stopped"')
