"""Subscriber pages. Views parse input, call one service, and render; the rules live in services."""

from __future__ import annotations

import dataclasses
import json
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from newsletter.client_address import client_address
from newsletter.forms import PreferencesForm, RequestLinkForm, SubscribeForm
from newsletter.models import Subscriber
from newsletter.selectors import digest_preview, subscriber_export
from newsletter.services.ratelimit import rate_limit_exceeded
from newsletter.services.render import digest_web_context
from newsletter.services.subscription import (
    subscriber_confirm,
    subscriber_delete,
    subscriber_unsubscribe,
    subscriber_update_preferences,
)
from newsletter.services.tokens import Purpose, token_delivery, token_make, token_subscriber
from newsletter.tasks import handle_link_request, handle_signup


def _too_many(request: HttpRequest, scope: str) -> bool:
    return rate_limit_exceeded(
        scope=scope,
        key=client_address(request),
        limit=settings.NEWSLETTER_SIGNUPS_PER_IP_PER_HOUR,
        window_seconds=3600,
    )


def _rate_limited(request: HttpRequest) -> HttpResponse:
    return render(request, "newsletter/rate_limited.html", status=429)


def invalid_link(request: HttpRequest) -> HttpResponse:
    return render(request, "newsletter/invalid_link.html", status=404)


@require_http_methods(["GET", "POST"])
def subscribe(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = SubscribeForm(request.POST)
        if form.is_valid():
            if _too_many(request, "signup-ip"):
                return _rate_limited(request)
            if not form.is_bot():
                # Decided in the worker: the same answer, in the same time, for new, pending, active,
                # unsubscribed and suppressed addresses.
                handle_signup.delay_on_commit(
                    form.cleaned_data["email"], dataclasses.asdict(form.preferences())
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
        messages.success(request, "You are subscribed. Your first digest is on its way at the time below.")
        return redirect("newsletter:manage", token=manage_token)
    context = {"subscriber": subscriber, "manage_token": manage_token}
    return render(request, "newsletter/confirm.html", context)


@require_http_methods(["GET", "POST"])
def request_link(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = RequestLinkForm(request.POST)
        if form.is_valid():
            if _too_many(request, "link-ip"):
                return _rate_limited(request)
            if not form.is_bot():
                handle_link_request.delay_on_commit(form.cleaned_data["email"])
            return redirect("newsletter:check_inbox")
    else:
        form = RequestLinkForm()
    return render(request, "newsletter/request_link.html", {"form": form})


def _manage_subscriber(token: str) -> Subscriber | None:
    subscriber = token_subscriber(token=token, purpose=Purpose.MANAGE)
    if subscriber is None or subscriber.status == Subscriber.Status.PENDING:
        return None
    return subscriber


@never_cache
@require_http_methods(["GET", "POST"])
def manage(request: HttpRequest, token: str) -> HttpResponse:
    subscriber = _manage_subscriber(token)
    if subscriber is None:
        return invalid_link(request)
    if request.method == "POST":
        form = PreferencesForm(request.POST)
        if form.is_valid():
            subscriber_update_preferences(subscriber=subscriber, preferences=form.preferences())
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
        "preview": digest_preview(subscriber=subscriber, now=timezone.now()),
        "unsubscribe_token": token_make(subscriber=subscriber, purpose=Purpose.UNSUBSCRIBE),
    }
    return render(request, "newsletter/manage.html", context)


@never_cache
@require_http_methods(["GET"])
def export(request: HttpRequest, token: str) -> HttpResponse:
    subscriber = _manage_subscriber(token)
    if subscriber is None:
        return invalid_link(request)
    response = HttpResponse(
        json.dumps(subscriber_export(subscriber=subscriber), indent=2, ensure_ascii=False),
        content_type="application/json; charset=utf-8",
    )
    response["Content-Disposition"] = 'attachment; filename="paper-digest-data.json"'
    return response


@never_cache
@require_http_methods(["GET", "POST"])
def delete(request: HttpRequest, token: str) -> HttpResponse:
    subscriber = _manage_subscriber(token)
    if subscriber is None:
        return invalid_link(request)
    if request.method == "POST":
        subscriber_delete(subscriber=subscriber)
        return render(request, "newsletter/deleted.html")
    return render(request, "newsletter/delete.html", {"token": token})


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
    if request.method == "POST":
        failure = _csrf_failure(request)
        if failure is not None:
            return failure
        subscriber_unsubscribe(subscriber=subscriber)
        return render(request, "newsletter/unsubscribed.html", {"subscriber": subscriber})
    context = {
        "subscriber": subscriber,
        "token": token,
        "manage_url": reverse(
            "newsletter:manage", args=[token_make(subscriber=subscriber, purpose=Purpose.MANAGE)]
        ),
    }
    return render(request, "newsletter/unsubscribe.html", context)


@never_cache
def digest_view(request: HttpRequest, token: str) -> HttpResponse:
    """The "view in browser" copy of a sent digest."""
    delivery = token_delivery(token=token)
    if delivery is None:
        return invalid_link(request)
    return render(request, "newsletter/digest.html", digest_web_context(delivery=delivery))
