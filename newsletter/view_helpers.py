"""What the subscriber pages share: the error pages, the per-client rate limit, the manage link's reader."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from newsletter.client_address import client_key
from newsletter.models import Subscriber
from newsletter.services.ratelimit import rate_limit_exceeded
from newsletter.services.tokens import Purpose, token_subscriber


def too_many(request: HttpRequest, scope: str, limit: int | None = None) -> bool:
    return rate_limit_exceeded(
        scope=scope,
        key=client_key(request),
        limit=limit or settings.NEWSLETTER_SIGNUPS_PER_IP_PER_HOUR,
        window_seconds=3600,
    )


def rate_limited(request: HttpRequest) -> HttpResponse:
    return render(request, "newsletter/rate_limited.html", status=429)


def invalid_link(request: HttpRequest) -> HttpResponse:
    return render(request, "newsletter/invalid_link.html", status=404)


def manage_subscriber(token: str) -> Subscriber | None:
    subscriber = token_subscriber(token=token, purpose=Purpose.MANAGE)
    if subscriber is None or subscriber.status == Subscriber.Status.PENDING:
        return None
    return subscriber
