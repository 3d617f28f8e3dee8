"""The local outbox (newsletter.outbox) and its DEBUG-only pages (newsletter.dev_views)."""

from __future__ import annotations

import pytest
from django.core.mail import EmailMultiAlternatives
from django.http import Http404
from django.test import RequestFactory

from newsletter import dev_views
from newsletter.outbox import OutboxBackend, outbox_messages, outbox_read


@pytest.fixture
def outbox(settings, tmp_path):
    settings.DEBUG = True
    settings.EMAIL_OUTBOX_DIR = tmp_path
    return tmp_path


def store(text: str, html: str | None = None) -> str:
    message = EmailMultiAlternatives("Hello", text, "from@example.org", ["to@example.org"])
    if html is not None:
        message.attach_alternative(html, "text/html")
    OutboxBackend().send_messages([message])
    return outbox_messages()[0]


def test_a_stored_message_reads_back(outbox) -> None:
    name = store("plain body")

    assert outbox_read(name)["Subject"] == "Hello"


@pytest.mark.parametrize(
    "name", ["a" * 300 + ".eml", "missing.eml", "../secret.eml", ".hidden.eml", "nul\x00.eml", "x.txt"]
)
def test_names_that_are_not_outbox_files_read_as_nothing(outbox, name: str) -> None:
    assert outbox_read(name) is None


@pytest.mark.parametrize("view", [dev_views.outbox_message, dev_views.outbox_html, dev_views.outbox_raw])
def test_every_message_page_answers_404_for_a_name_too_long_for_the_file_system(outbox, view) -> None:
    with pytest.raises(Http404):
        view(RequestFactory().get("/"), "a" * 300 + ".eml")
