"""Deployment checks (`manage.py check --deploy`) for the settings only this project has."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.http.request import validate_host

from newsletter.services.deliverability.mailbox import is_loopback

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}


@register(Tags.security, deploy=True)
def check_site_url(app_configs=None, **kwargs) -> list[CheckMessage]:
    """SITE_URL builds every link in every email (confirm, manage, List-Unsubscribe), far from any request."""
    url = urlsplit(settings.SITE_URL)
    if url.scheme != "https" or not url.hostname:
        return [
            Error(
                f"SITE_URL is {settings.SITE_URL!r}; emails need the public https:// address of the site.",
                hint="Set SITE_URL, e.g. SITE_URL=https://digest.example.org",
                id="newsletter.E001",
            )
        ]
    if url.hostname in LOCAL_HOSTS:
        return [
            Error(
                f"SITE_URL points at this machine ({url.hostname}); links in emails would not reach it.",
                hint="Set SITE_URL to the public address of the site.",
                id="newsletter.E002",
            )
        ]
    if not validate_host(url.hostname, settings.ALLOWED_HOSTS):
        return [
            Warning(
                f"SITE_URL's host {url.hostname!r} is not in ALLOWED_HOSTS: links in emails would get 400.",
                hint="Add it to ALLOWED_HOSTS.",
                id="newsletter.W003",
            )
        ]
    return []


@register(Tags.security, deploy=True)
def check_bounce_mailbox(app_configs=None, **kwargs) -> list[CheckMessage]:
    """The bounce mailbox's password must not cross the network in clear (deliverability/mailbox.py)."""
    if not settings.NEWSLETTER_BOUNCE_MAILBOX:
        return []
    url = urlsplit(settings.NEWSLETTER_BOUNCE_MAILBOX)
    if url.scheme not in ("imaps", "imap", "maildir"):
        return [
            Error(
                f"NEWSLETTER_BOUNCE_MAILBOX has the scheme {url.scheme!r}: no bounce would be read.",
                hint="Use imaps://user:password@host/INBOX or maildir:///path.",
                id="newsletter.E009",
            )
        ]
    if url.scheme == "imap" and not is_loopback(url.hostname):
        return [
            Warning(
                f"NEWSLETTER_BOUNCE_MAILBOX is plain imap:// to {url.hostname}: the password is sent only "
                "after STARTTLS with a valid certificate, and the mailbox is not read if that fails.",
                hint="Use imaps:// (TLS from the start, port 993); plain imap:// is for this machine only.",
                id="newsletter.W009",
            )
        ]
    return []


# A network shorter than /32 lumps a whole ISP together; longer than /64 lets one line rotate through
# fresh allowances (every line has at least a /64).
IPV6_PREFIX_SANE = range(32, 65)


@register(Tags.security, deploy=True)
def check_ipv6_prefix(app_configs=None, **kwargs) -> list[CheckMessage]:
    """Per-client limits key IPv6 visitors by network (newsletter.client_address.client_key)."""
    length = settings.NEWSLETTER_IPV6_PREFIX_LENGTH
    if length in IPV6_PREFIX_SANE:
        return []
    return [
        Warning(
            f"NEWSLETTER_IPV6_PREFIX_LENGTH is {length}: "
            + (
                "a client rotating addresses inside its /64 gets a fresh rate limit per address."
                if length > 64
                else "visitors of a whole provider would share one rate limit."
            ),
            hint="Use 64 (the default), or 56 or 48 for providers that hand out such networks.",
            id="newsletter.W020",
        )
    ]
