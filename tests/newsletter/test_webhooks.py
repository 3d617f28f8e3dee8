"""The guard around django-anymail's webhooks (newsletter.webhooks): 400, 403 or 404, never a 500."""

from __future__ import annotations

import base64
import json

import pytest
from anymail import urls as anymail_urls
from django.test import Client

from newsletter.models import EmailEvent

pytestmark = pytest.mark.django_db

AUTH = "hook:s3cret-webhook"
TRACKING = sorted(str(p.pattern) for p in anymail_urls.urlpatterns if p.name.endswith("_tracking_webhook"))
INBOUND = sorted(
    str(p.pattern).strip("^$").replace("(_mime)?", "")
    for p in anymail_urls.urlpatterns
    if not p.name.endswith("_tracking_webhook")
)


@pytest.fixture
def client(settings) -> Client:
    settings.ANYMAIL = {"WEBHOOK_SECRET": AUTH}
    # A 500 would surface as a 500 response here instead of an exception in the test.
    return Client(raise_request_exception=False)


def post(client: Client, route: str, body: str) -> int:
    auth = "Basic " + base64.b64encode(AUTH.encode()).decode()
    response = client.post(
        f"/anymail/{route}", data=body, content_type="application/json", HTTP_AUTHORIZATION=auth
    )
    return response.status_code


@pytest.mark.parametrize("route", TRACKING)
def test_no_tracking_webhook_answers_500_to_an_empty_payload(client: Client, route: str) -> None:
    assert post(client, route, "{}") in (200, 400, 403, 404)


@pytest.mark.parametrize(
    "route",
    [
        "mailgun/tracking/",
        "mailersend/tracking/",
        "postal/tracking/",
        "unisender_go/tracking/",
        "mandrill/tracking/",
        "amazon_ses/tracking/",
    ],
)
def test_an_esp_without_its_keys_configured_answers_404(client: Client, route: str) -> None:
    assert post(client, route, "{}") == 404


@pytest.mark.parametrize("route", INBOUND)
def test_inbound_mail_webhooks_are_not_mounted(client: Client, route: str) -> None:
    assert post(client, route, "{}") == 404


def test_json_nested_beyond_the_recursion_limit_is_a_400(client: Client) -> None:
    assert post(client, "postmark/tracking/", "[" * 50_000 + "]" * 50_000) == 400


def test_a_timestamp_beyond_the_platform_time_range_is_a_400(client: Client) -> None:
    events = [
        {"email": "a@example.org", "timestamp": 1763800000, "event": "bounce", "sg_event_id": "ok"},
        {"email": "b@example.org", "timestamp": 10**20, "event": "bounce", "sg_event_id": "huge"},
    ]

    assert post(client, "sendgrid/tracking/", json.dumps(events)) == 400
    assert not EmailEvent.objects.exists()  # the whole batch is refused, not half of it
