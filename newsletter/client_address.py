"""The address of the visitor, and the key its per-client rate limits count under (sign-up, "send me a
link", feedback, admin log-in)."""

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


def client_key(request: HttpRequest) -> str:
    """The rate-limit key of the visitor: its IPv4 address, or its IPv6 network.

    An IPv6 subscriber line gets a whole /64 (often a /56 or /48) and its devices pick new addresses
    in it at will, so keying on the address hands out a fresh allowance per request. The key is the
    first address of the NEWSLETTER_IPV6_PREFIX_LENGTH network (a valid address, so django-axes can
    store it as the client's). IPv4-mapped addresses (::ffff:a.b.c.d) are their IPv4 address.
    """
    address = client_address(request)
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:  # no REMOTE_ADDR (a test client, a unix socket): one shared key
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped:
            return str(parsed.ipv4_mapped)
        prefix = settings.NEWSLETTER_IPV6_PREFIX_LENGTH
        return str(ipaddress.IPv6Network((parsed, prefix), strict=False).network_address)
    return str(parsed)
