"""The address of the visitor, for per-client rate limits (sign-up, "send me a link", admin login)."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str:
    """REMOTE_ADDR, or the entry of X-Forwarded-For written by the outermost trusted proxy.

    Each proxy appends the address it received the request from, so with N trusted proxies in front
    of the app the client is the N-th entry from the right; anything further left was sent by the
    client itself and would let anyone pick a fresh rate-limit bucket per request. WSGI servers do
    not rewrite REMOTE_ADDR (gunicorn's --forwarded-allow-ips only affects the scheme), so behind a
    proxy REMOTE_ADDR is the proxy, shared by every visitor.
    """
    remote = request.META.get("REMOTE_ADDR", "")
    trusted = settings.NEWSLETTER_TRUSTED_PROXIES
    if trusted == 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [part for part in forwarded if part]
    if not forwarded:
        return remote
    # Fewer entries than proxies: the request skipped an outer proxy; the leftmost is the best we have.
    candidate = forwarded[-trusted] if len(forwarded) >= trusted else forwarded[0]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:  # garbage written by a misconfigured proxy: not a bucket anyone can choose freely
        return remote
