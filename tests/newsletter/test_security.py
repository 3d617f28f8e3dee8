"""Hostile content in papers and hostile input in headers: escaped everywhere, never interpreted."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from newsletter.models import Delivery
from newsletter.services.delivery import deliveries_send
from newsletter.services.dispatch import digests_dispatch
from newsletter.services.tokens import Purpose, token_make
from tests.factories import PaperFactory, SubscriberFactory

pytestmark = pytest.mark.django_db

XSS_TITLE = '<script>alert("t")</script><img src=x onerror=alert(1)> Robust speech recognition'
XSS_ABSTRACT = 'Speech recognition <b onmouseover="alert(2)">works</b> & "quotes" </p><iframe src=//evil>.'
INJECTION_TITLE = "Speech recognition\r\nBcc: victim@example.net\r\nSubject: pwned"


@pytest.fixture
def hostile_subscriber():
    PaperFactory(title=XSS_TITLE, abstract=XSS_ABSTRACT, url="https://arxiv.org/abs/2401.00001")
    PaperFactory(title=INJECTION_TITLE, abstract="Speech recognition for everyone.")
    return SubscriberFactory(
        email="reader@example.org",
        interests="speech recognition",
        next_send_at=timezone.now() - timedelta(minutes=1),
    )


def _assert_escaped(html: str) -> None:
    assert "<script>" not in html
    assert "<img src=x" not in html
    assert "<iframe" not in html
    assert 'onmouseover="alert' not in html
    assert "&lt;script&gt;" in html


def test_manage_page_preview_escapes_paper_markup(hostile_subscriber) -> None:
    token = token_make(subscriber=hostile_subscriber, purpose=Purpose.MANAGE)
    response = Client().get(f"/manage/{token}/")
    assert response.status_code == 200
    _assert_escaped(response.content.decode())


def test_digest_email_and_web_copy_escape_markup_and_keep_headers_intact(
    hostile_subscriber, mailoutbox
) -> None:
    for chunk in digests_dispatch():
        deliveries_send(delivery_ids=chunk)
    assert len(mailoutbox) == 1
    message = mailoutbox[0]
    html = message.alternatives[0][0]
    _assert_escaped(html)
    assert XSS_TITLE in message.body  # the plain-text part shows the title as the text it is
    # A paper title is never a header: no Bcc, one recipient, our subject.
    raw = message.message()
    assert raw["Bcc"] is None
    assert message.recipients() == ["reader@example.org"]
    assert "pwned" not in raw["Subject"]

    delivery = Delivery.objects.get()
    token = token_make(subscriber=hostile_subscriber, purpose=Purpose.DIGEST, object_id=delivery.pk)
    response = Client().get(f"/digests/{token}/")
    assert response.status_code == 200
    _assert_escaped(response.content.decode())


def test_delivery_log_lines_are_structured_and_carry_no_address(hostile_subscriber, caplog) -> None:
    caplog.set_level(logging.INFO, logger="newsletter")
    for chunk in digests_dispatch():
        deliveries_send(delivery_ids=chunk)
    attempts = [r.getMessage() for r in caplog.records if r.getMessage().startswith("delivery_attempt")]
    delivery = Delivery.objects.get()
    assert len(attempts) == 1
    assert f"delivery={delivery.pk} subscriber={hostile_subscriber.pk}" in attempts[0]
    assert "outcome=sent" in attempts[0] and "duration_ms=" in attempts[0]
    info = [r.getMessage() for r in caplog.records if r.levelno <= logging.INFO]
    assert not any("reader@example.org" in line for line in info)


def test_security_headers_on_pages() -> None:
    response = Client().get("/subscribe/")
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Content-Type-Options"] == "nosniff"
    csp = response["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
