"""Feedback from the email, in Chromium: a digest in the local outbox, "More like this", confirm,
and the manage-page preview learns from it."""

from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import Page, expect

from newsletter.models import Feedback, Subscriber
from newsletter.services.tokens import Purpose, token_make
from papers.models import Paper, Topic
from tests.conftest import SAMPLE_DATA
from tests.factories import SubscriberFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture(autouse=True)
def outbox(settings, tmp_path):
    settings.DEBUG = True
    settings.ROOT_URLCONF = "tests.e2e.outbox_urls"
    settings.EMAIL_BACKEND = "newsletter.outbox.OutboxBackend"
    settings.EMAIL_OUTBOX_DIR = tmp_path


def preview_of(page: Page, manage_url: str) -> str:
    page.goto(manage_url)
    return page.locator("#preview").inner_text()


def test_more_like_this_from_a_digest_in_the_outbox_changes_the_preview(
    page: Page, console_errors: list
) -> None:
    call_command("ingest_papers", str(SAMPLE_DATA), "--quiet", stdout=StringIO())
    subscriber = SubscriberFactory(
        interests="",
        topics=[Topic.objects.get(slug="multimodal")],  # 83 sample papers: the preview is full
        papers_per_digest=5,
        next_send_at=timezone.now() - timedelta(minutes=1),
        last_digest_at=None,
    )
    call_command("send_digests", "--now", stdout=StringIO())
    manage_url = f"/manage/{token_make(subscriber=subscriber, purpose=Purpose.MANAGE)}/"
    before = preview_of(page, manage_url)
    assert "Because you liked" not in before

    page.goto("/dev/outbox/")
    page.get_by_role("link", name=re.compile(r" and 4 more papers ")).click()  # the subject
    email = page.frame_locator("iframe.email")
    first_title = email.locator(".paper-title").first.inner_text()
    with page.expect_popup() as opened:  # links leave the sandboxed frame, as in a webmail
        email.get_by_role("link", name="More like this").first.click()
    feedback_page = opened.value
    expect(feedback_page.get_by_role("heading", name="More like this?")).to_be_visible()
    expect(feedback_page.locator(".paper-title")).to_have_text(first_title)
    assert not Feedback.objects.exists()  # opening the link records nothing

    feedback_page.get_by_role("button", name="More like this").click()

    expect(feedback_page.get_by_text("Saved.")).to_be_visible()
    expect(feedback_page.get_by_role("button", name="Undo")).to_be_visible()
    (mark,) = Feedback.objects.all()
    assert (mark.subscriber_id, mark.paper.title, mark.choice) == (subscriber.pk, first_title, "more")
    feedback_page.get_by_role("link", name="Your preferences and the papers you rated").click()
    expect(feedback_page.locator("#rated")).to_contain_text(first_title)
    after = feedback_page.locator("#preview").inner_text()
    assert after != before  # re-ranked by the model fitted from the one mark
    assert Subscriber.objects.get(pk=subscriber.pk).reader_model.ratings == 1
    assert console_errors == []


def test_a_like_credits_itself_on_the_paper_that_leads_the_next_preview(
    page: Page, console_errors: list
) -> None:
    """The issue's walk-through: a reader of speech papers likes Ask2Mask (masked speech modelling);
    W2v-BERT, the closest paper they have not been sent, leads the next preview because of it."""
    call_command("ingest_papers", str(SAMPLE_DATA), "--quiet", stdout=StringIO())
    subscriber = SubscriberFactory(
        interests="speech recognition, text to speech",
        papers_per_digest=3,  # Ask2Mask is sent, W2v-BERT (fourth) is not
        next_send_at=timezone.now() - timedelta(minutes=1),
        last_digest_at=None,
    )
    call_command("send_digests", "--now", stdout=StringIO())
    ask2mask = Paper.objects.get(title__startswith="Ask2Mask:")
    w2v_bert = Paper.objects.get(title__startswith="W2v-BERT:")
    manage_url = f"/manage/{token_make(subscriber=subscriber, purpose=Purpose.MANAGE)}/"
    assert "Because you liked" not in preview_of(page, manage_url)

    page.goto("/dev/outbox/")
    page.get_by_role("link", name=re.compile(r" and 2 more papers ")).click()  # the subject
    paper = page.frame_locator("iframe.email").locator(".paper", has_text=ask2mask.title)
    with page.expect_popup() as opened:
        paper.get_by_role("link", name="More like this").click()
    feedback_page = opened.value
    feedback_page.get_by_role("button", name="More like this").click()

    expect(feedback_page.locator("#feedback-state")).to_contain_text(
        f"Your next digest will lead with papers like this one, starting with “{w2v_bert.title}”."
    )
    feedback_page.get_by_role("link", name="Your preferences and the papers you rated").click()
    lead = feedback_page.locator("#preview .paper-title").first
    expect(lead).to_have_text(w2v_bert.title)
    expect(feedback_page.locator("#preview .reasons").first).to_contain_text(
        f"Because you liked “{ask2mask.title}”"
    )
    assert console_errors == []
