"""VERP (variable envelope return path): each email's envelope sender names its recipient, signed.

With NEWSLETTER_BOUNCE_ADDRESS = "bounces@digest.example.org", the email to subscriber 1234 goes out
with `MAIL FROM:<bounces+ya.<signature>@digest.example.org>` (the id in base 36, then an HMAC of it
made by django.core.signing with a salt of this purpose only). Bounces go to that address, so the
bounce mailbox (services/deliverability/bounces.py) knows whose address failed even when the report itself is
unreadable, and a forged bounce cannot name an address it never received. The local part stays under
the 64 characters RFC 5321 allows; the From header is unchanged. Empty setting: no VERP.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.core import signing
from django.utils.http import base36_to_int, int_to_base36

SALT = "newsletter.verp.bounce"
_SIGNER_SEP = "."  # not in the signature's URL-safe base64 alphabet, and allowed in a local part
_TOKEN = re.compile(r"\+([0-9a-z]{1,13}\.[A-Za-z0-9_-]{20,64})@")


def _signer() -> signing.Signer:
    return signing.Signer(salt=SALT, sep=_SIGNER_SEP)


def verp_address(*, subscriber_id: int) -> str | None:
    """The envelope sender for mail to this subscriber, or None when VERP is off."""
    base = settings.NEWSLETTER_BOUNCE_ADDRESS
    if not base:
        return None
    local, _, domain = base.rpartition("@")
    return f"{local}+{_signer().sign(int_to_base36(subscriber_id))}@{domain}"


def verp_subscriber_id(address: str) -> int | None:
    """The subscriber id a VERP address names, or None when it has no token or a forged one."""
    match = _TOKEN.search(address)
    if match is None:
        return None
    try:
        return base36_to_int(_signer().unsign(match.group(1)))
    except (signing.BadSignature, ValueError):
        return None
