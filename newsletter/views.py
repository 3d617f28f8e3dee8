"""Subscriber pages: sign-up, confirmation, the manage page, unsubscribe and the web copy. Views parse
input, call one service, and render; the rules live in services. A reader's papers (feedback links,
library, liked papers, archive, export) are in reader_views.py."""

from __future__ import annotations

import dataclasses
from zoneinfo import ZoneInfo

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from newsletter.forms import LibraryForm, PreferencesForm, RequestLinkForm, SubscribeForm
from newsletter.library_selectors import library_entries, library_size
from newsletter.models import Subscriber
from newsletter.selectors import (
    Preferences,
    digest_preview,
    feedback_given,
    preferences_to_confirm,
)
from newsletter.services.render import PaperRowCache, digest_web_context, paper_url
from newsletter.services.subscription import (
    awaits_confirmation,
    subscriber_confirm,
    subscriber_delete,
    subscriber_resubscribe,
    subscriber_unsubscribe,
    subscriber_update_preferences,
)
from newsletter.services.tokens import (
    Purpose,
    token_delivery,
    token_make,
    token_subscriber,
)
from newsletter.tasks import fit_reader_model, handle_link_request, handle_signup
from newsletter.view_helpers import invalid_link, manage_subscriber, rate_limited, too_many
from papers.selectors import topic_names


@require_http_methods(["GET", "POST"])
def subscribe(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = SubscribeForm(request.POST, request.FILES)
        if form.is_valid():
            if too_many(request, "signup-ip"):
                return rate_limited(request)
            if not form.is_bot():
                # Decided in the worker: the same answer, in the same time, for new, pending, active,
                # unsubscribed and suppressed addresses.
                handle_signup.delay_on_commit(
                    form.cleaned_data["email"],
                    dataclasses.asdict(form.preferences()),
                    [dataclasses.asdict(item) for item in form.library_items()],
                )
            return redirect("newsletter:check_inbox")
    else:
        form = SubscribeForm()
    return render(request, "newsletter/subscribe.html", {"form": form})


def check_inbox(request: HttpRequest) -> HttpResponse:
    return render(request, "newsletter/check_inbox.html")


# Pages reached through a token are never cached (never_cache): they show personal data, and their
# URL is the key to the subscription.
@never_cache
@require_http_methods(["GET", "POST"])
def confirm(request: HttpRequest, token: str) -> HttpResponse:
    subscriber = token_subscriber(token=token, purpose=Purpose.CONFIRM)
    if subscriber is None:
        return invalid_link(request)
    manage_token = token_make(subscriber=subscriber, purpose=Purpose.MANAGE)
    # A GET only shows the button: link scanners in mail systems open every link.
    if request.method == "POST" and subscriber_confirm(subscriber=subscriber):
        if library_size(subscriber=subscriber):
            # The sign-up's library (and its likes) takes effect now: fitted in the worker.
            fit_reader_model.delay_on_commit(subscriber.pk)
        messages.success(request, "You are subscribed. Your first digest is on its way at the time below.")
        return redirect("newsletter:manage", token=manage_token)
    awaiting = awaits_confirmation(subscriber)
    context = {
        "subscriber": subscriber,
        "manage_token": manage_token,
        "awaiting": awaiting,
        # Shown before the button: what this click turns on (tokens bind the link to it).
        "activates": _preferences_shown(preferences_to_confirm(subscriber)) if awaiting else None,
    }
    return render(request, "newsletter/confirm.html", context)


def _preferences_shown(preferences: Preferences) -> dict[str, object]:
    """The preferences a confirmation activates, as the page names them."""
    names = topic_names()
    return {
        "topics": [names[t] for t in preferences.topic_ids if t in names],
        "interests": preferences.interests,
        "excluded_keywords": preferences.excluded_keywords,
        "followed_authors": preferences.followed_authors,
        "frequency": Subscriber.Frequency(preferences.frequency).label,
        "weekday": Subscriber.Weekday(preferences.weekday).label
        if preferences.frequency == Subscriber.Frequency.WEEKLY
        else "",
        "send_hour": preferences.send_hour,
        "timezone": preferences.timezone,
        "papers_per_digest": preferences.papers_per_digest,
        "email_format": Subscriber.Format(preferences.email_format).label,
    }


@require_http_methods(["GET", "POST"])
def request_link(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = RequestLinkForm(request.POST)
        if form.is_valid():
            if too_many(request, "link-ip"):
                return rate_limited(request)
            if not form.is_bot():
                handle_link_request.delay_on_commit(form.cleaned_data["email"])
            return redirect("newsletter:check_inbox")
    else:
        form = RequestLinkForm()
    return render(request, "newsletter/request_link.html", {"form": form})


@never_cache
@require_http_methods(["GET", "POST"])
def manage(request: HttpRequest, token: str) -> HttpResponse:
    subscriber = manage_subscriber(token)
    if subscriber is None:
        return invalid_link(request)
    if subscriber.status == Subscriber.Status.UNSUBSCRIBED:
        # Nothing to edit while nothing is sent: one "Subscribe again" button, and the data links.
        if request.method == "POST":
            return redirect("newsletter:manage", token=token)
        context = {"subscriber": subscriber, "token": token}
        return render(request, "newsletter/manage_unsubscribed.html", context)
    if request.method == "POST":
        form = PreferencesForm(request.POST)
        if form.is_valid():
            if subscriber_update_preferences(subscriber=subscriber, preferences=form.preferences()):
                # A reader model learned from the old interests too (a reader without feedback has
                # none, and the task then only checks that).
                fit_reader_model.delay_on_commit(subscriber.pk)
            messages.success(request, "Your preferences are saved.")
            return redirect("newsletter:manage", token=token)
    else:
        form = PreferencesForm(initial=PreferencesForm.initial_for(subscriber))
    next_local = None
    if subscriber.next_send_at:
        # Formatted here: the template date filter would convert back to the server's time zone.
        local = subscriber.next_send_at.astimezone(ZoneInfo(subscriber.timezone))
        next_local = f"{local:%A} {local.day} {local:%B %Y}, {local:%H:%M}"
    context = {
        "form": form,
        "subscriber": subscriber,
        "token": token,
        "next_local": next_local,
        "preview": PaperRowCache().rows(
            digest_preview(subscriber=subscriber, now=timezone.now()), subscriber=subscriber
        ),
        "feedback": [(mark, paper_url(mark.paper)) for mark in feedback_given(subscriber=subscriber)],
        "library": library_entries(subscriber=subscriber),
        "library_form": LibraryForm(),
        "unsubscribe_token": token_make(subscriber=subscriber, purpose=Purpose.UNSUBSCRIBE),
    }
    return render(request, "newsletter/manage.html", context)


@never_cache
@require_http_methods(["POST"])
def resubscribe(request: HttpRequest, token: str) -> HttpResponse:
    subscriber = manage_subscriber(token)
    if subscriber is None:
        return invalid_link(request)
    if subscriber_resubscribe(subscriber=subscriber):
        messages.success(request, "Welcome back: you are subscribed again, with your stored preferences.")
    return redirect("newsletter:manage", token=token)


@never_cache
@require_http_methods(["GET", "POST"])
def delete(request: HttpRequest, token: str) -> HttpResponse:
    subscriber = manage_subscriber(token)
    if subscriber is None:
        return invalid_link(request)
    if request.method == "POST":
        subscriber_delete(subscriber=subscriber)
        return render(request, "newsletter/deleted.html")
    context = {"token": token, "manage_url": reverse("newsletter:manage", args=[token])}
    return render(request, "newsletter/delete.html", context)


def _csrf_failure(request: HttpRequest) -> HttpResponse | None:
    """Run the CSRF check by hand: the view is exempt only for RFC 8058 one-click posts."""
    return CsrfViewMiddleware(lambda r: HttpResponse()).process_view(request, None, (), {})


@csrf_exempt
@never_cache
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    if request.method not in ("GET", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    subscriber = token_subscriber(token=token, purpose=Purpose.UNSUBSCRIBE)
    if request.method == "POST" and request.POST.get("List-Unsubscribe") == "One-Click":
        # RFC 8058: the mailbox provider posts this without cookies or CSRF token; answer plainly.
        if subscriber is None:
            return HttpResponse("Unknown or revoked link.\n", status=404, content_type="text/plain")
        subscriber_unsubscribe(subscriber=subscriber)
        return HttpResponse("You are unsubscribed.\n", content_type="text/plain")
    if subscriber is None:
        return invalid_link(request)
    # "Subscribe again" here is the manage page's one-click resubscribe, which keeps the preferences.
    manage_token = token_make(subscriber=subscriber, purpose=Purpose.MANAGE)
    context = {
        "subscriber": subscriber,
        "token": token,
        "manage_token": manage_token,
        "manage_url": reverse("newsletter:manage", args=[manage_token]),
    }
    if request.method == "POST":
        failure = _csrf_failure(request)
        if failure is not None:
            return failure
        subscriber_unsubscribe(subscriber=subscriber)
        return render(request, "newsletter/unsubscribed.html", context)
    return render(request, "newsletter/unsubscribe.html", context)


@never_cache
def digest_view(request: HttpRequest, token: str) -> HttpResponse:
    """The "view in browser" copy of a sent digest."""
    delivery = token_delivery(token=token)
    if delivery is None:
        return invalid_link(request)
    return render(request, "newsletter/digest.html", digest_web_context(delivery=delivery))
