"""A reader's papers: the "More like this" / "Not for me" links of a digest, the library, the liked
papers, the archive of past digests and the data export. Thin views, as in views.py."""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from newsletter.export_selectors import subscriber_export
from newsletter.forms import LibraryForm
from newsletter.models import Feedback, Subscriber
from newsletter.selectors import feedback_choice
from newsletter.services.archive import archive_export, digests_archived, feed_url, papers_liked_rows
from newsletter.services.learning.feedback import feedback_record, feedback_remove, like_effect
from newsletter.services.learning.library import LibraryReport, library_entry_remove, library_import
from newsletter.services.render import paper_card
from newsletter.services.tokens import (
    Purpose,
    ascii_id,
    feedback_token_load,
    token_make,
)
from newsletter.tasks import fit_reader_model
from newsletter.view_helpers import invalid_link, manage_subscriber, rate_limited, too_many
from papers.selectors import papers_by_ids


@never_cache
@require_http_methods(["POST"])
def feedback_forget(request: HttpRequest, token: str) -> HttpResponse:
    """The manage page's "remove" next to a liked or dismissed paper."""
    subscriber = manage_subscriber(token)
    if subscriber is None:
        return invalid_link(request)
    paper_id = ascii_id(request.POST.get("paper", ""))
    if paper_id is not None and feedback_remove(subscriber=subscriber, paper_id=paper_id):
        fit_reader_model.delay_on_commit(subscriber.pk)
        messages.success(request, "Removed. Your next digests no longer learn from that paper.")
    return redirect("newsletter:manage", token=token)


# --- the reader's library (learning.library): add from a paste or an export, remove an entry ---


def _library_summary(report: LibraryReport) -> str:
    parts = [
        (report.liked, "papers we have, now liked"),
        (report.abstracts, "with an abstract your digest learns from"),
        (report.titles, "titles added to your interests"),
        (report.waiting, "not in our database yet"),
        (report.skipped, "already in your library"),
    ]
    counts = "; ".join(f"{count} {label}" for count, label in parts if count)
    return f"Added {report.added} papers to your library ({counts})." if counts else "Nothing to add."


@never_cache
@require_http_methods(["GET", "POST"])
def library_add(request: HttpRequest, token: str) -> HttpResponse:
    """The manage page's "Add to your library"; its own page when the input has errors."""
    subscriber = manage_subscriber(token)
    if subscriber is None or subscriber.status != Subscriber.Status.ACTIVE:
        return invalid_link(request)
    form = LibraryForm()
    if request.method == "POST":
        form = LibraryForm(request.POST, request.FILES)
        if form.is_valid():
            # Each import queues a model fit: one address may not flood the workers.
            if too_many(request, "library-ip", settings.NEWSLETTER_FEEDBACK_PER_IP_PER_HOUR):
                return rate_limited(request)
            report = library_import(subscriber=subscriber, items=form.library_items())
            if report.added:
                fit_reader_model.delay_on_commit(subscriber.pk)
            messages.success(request, _library_summary(report))
            return redirect(reverse("newsletter:manage", args=[token]) + "#library")
    context = {"library_form": form, "token": token, "subscriber": subscriber}
    return render(request, "newsletter/library.html", context)


@never_cache
@require_http_methods(["POST"])
def library_remove(request: HttpRequest, token: str) -> HttpResponse:
    subscriber = manage_subscriber(token)
    if subscriber is None:
        return invalid_link(request)
    entry_id = request.POST.get("entry", "")
    if entry_id.isdigit() and library_entry_remove(subscriber=subscriber, entry_id=int(entry_id)):
        fit_reader_model.delay_on_commit(subscriber.pk)
        messages.success(request, "Removed from your library. Your next digests no longer learn from it.")
    return redirect(reverse("newsletter:manage", args=[token]) + "#library")


@never_cache
@require_http_methods(["GET"])
def export(request: HttpRequest, token: str) -> HttpResponse:
    subscriber = manage_subscriber(token)
    if subscriber is None:
        return invalid_link(request)
    response = HttpResponse(
        json.dumps(
            {**subscriber_export(subscriber=subscriber), "archive": archive_export(subscriber=subscriber)},
            indent=2,
            ensure_ascii=False,
        ),
        content_type="application/json; charset=utf-8",
    )
    response["Content-Disposition"] = 'attachment; filename="paper-digest-data.json"'
    return response


@never_cache
@require_http_methods(["GET"])
def archive(request: HttpRequest, token: str) -> HttpResponse:
    """Past digests, each opening its web copy, and the private feed of them."""
    subscriber = manage_subscriber(token)
    if subscriber is None:
        return invalid_link(request)
    context = {
        "token": token,
        "manage_url": reverse("newsletter:manage", args=[token]),
        "digests": digests_archived(subscriber=subscriber),
        "feed_url": feed_url(subscriber=subscriber),
    }
    return render(request, "newsletter/archive.html", context)


@never_cache
@require_http_methods(["GET"])
def liked(request: HttpRequest, token: str) -> HttpResponse:
    subscriber = manage_subscriber(token)
    if subscriber is None:
        return invalid_link(request)
    context = {
        "token": token,
        "manage_url": reverse("newsletter:manage", args=[token]),
        "items": papers_liked_rows(subscriber=subscriber),
    }
    return render(request, "newsletter/liked.html", context)


@never_cache
@require_http_methods(["GET", "POST"])
def feedback(request: HttpRequest, token: str, choice: str) -> HttpResponse:
    """ "More like this" / "Not for me" from a digest. GET only shows the paper and one button (mail
    scanners open every link); POST records the choice, or with `undo` forgets it."""
    loaded = feedback_token_load(token=token)
    if loaded is None or choice not in Feedback.Choice.values:
        return invalid_link(request)
    subscriber, paper_id = loaded
    papers = papers_by_ids(ids=[paper_id])
    if not papers:
        return invalid_link(request)
    if request.method == "POST":
        # Each mark queues a model fit: one address may not flood the workers.
        if too_many(request, "feedback-ip", settings.NEWSLETTER_FEEDBACK_PER_IP_PER_HOUR):
            return rate_limited(request)
        if request.POST.get("undo"):
            feedback_remove(subscriber=subscriber, paper_id=paper_id)
            messages.success(request, "Undone: this paper no longer counts.")
        else:
            feedback_record(subscriber=subscriber, paper_id=paper_id, choice=choice)
            messages.success(request, "Saved.")  # the page then says what it changed (like_effect)
        fit_reader_model.delay_on_commit(subscriber.pk)
        return redirect("newsletter:feedback", token=token, choice=choice)
    current = feedback_choice(subscriber=subscriber, paper_id=paper_id)
    liked = current == choice == Feedback.Choice.MORE
    context = {
        "item": paper_card(paper=papers[0]),
        "choice": choice,
        "choice_label": Feedback.Choice(choice).label,
        "current": current,
        "effect": like_effect(subscriber=subscriber, paper=papers[0], now=timezone.now()) if liked else None,
        "manage_url": reverse(
            "newsletter:manage", args=[token_make(subscriber=subscriber, purpose=Purpose.MANAGE)]
        ),
    }
    return render(request, "newsletter/feedback.html", context)
