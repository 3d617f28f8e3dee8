"""The guard around django-anymail's webhooks (newsletter.webhooks): 400, 403 or 404, never a 500."""

from __future__ import annotations

import base64

import pytest
from anymail import urls as anymail_urls
from django.test import Client

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
