"""Timestamps far beyond any calendar (issue 18 item 7): each ESP's webhook answers 400, never 500,
and stores nothing."""

from __future__ import annotations

import base64
import errno
import json

import pytest
from django.test import Client, RequestFactory

from newsletter.models import EmailEvent
from newsletter.webhooks import guard

pytestmark = pytest.mark.django_db

AUTH = "hook:s3cret-webhook"
HUGE = 10**17  # seconds: datetime.fromtimestamp() raises OSError, OverflowError or ValueError
HUGE_MS = 10**20  # Brevo's ts_epoch is in milliseconds

PROBES = {
    "sendgrid": [{"event": "bounce", "email": "x@example.com", "timestamp": HUGE, "sg_event_id": "e1"}],
    "mailjet": [{"event": "bounce", "email": "x@example.com", "time": HUGE, "hard_bounce": True}],
    "mailtrap": {
        "events": [{"event": "bounce", "email": "x@example.com", "timestamp": HUGE, "event_id": "e1"}]
    },
    "sparkpost": [
        {
            "msys": {
                "message_event": {
                    "type": "bounce",
                    "rcpt_to": "x@example.com",
                    "timestamp": str(HUGE),
                    "event_id": "e1",
                    "bounce_class": "10",
                }
            }
        }
    ],
    "brevo": {"event": "hard_bounce", "email": "x@example.com", "ts_epoch": HUGE_MS, "message-id": "<m1@x>"},
    "sendinblue": {
        "event": "hard_bounce",
        "email": "x@example.com",
        "ts_epoch": HUGE_MS,
        "message-id": "<m1@x>",
    },
}


@pytest.mark.parametrize("esp", sorted(PROBES))
def test_a_timestamp_beyond_the_calendar_is_a_400(settings, esp: str) -> None:
    settings.ANYMAIL = {"WEBHOOK_SECRET": AUTH}
    client = Client(raise_request_exception=False)

    response = client.post(
        f"/anymail/{esp}/tracking/",
        data=json.dumps(PROBES[esp]),
        content_type="application/json",
        HTTP_AUTHORIZATION="Basic " + base64.b64encode(AUTH.encode()).decode(),
    )

    assert response.status_code == 400
    assert not EmailEvent.objects.exists()


def test_any_other_os_error_stays_a_server_error_so_the_esp_retries() -> None:
    def view(request):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        guard(view)(RequestFactory().post("/anymail/sendgrid/tracking/"))
