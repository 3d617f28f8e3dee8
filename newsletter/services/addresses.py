"""Email addresses: one spelling per mailbox, and the suppression list (addresses never mailed again).

Every address that enters the system (forms, commands, ESP webhooks, admin actions) goes through
`email_normalize` or `email_key`, so a row, an event and a suppression of one mailbox always match.
"""

from __future__ import annotations

import logging

import idna
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction

from newsletter.models import Subscriber, Suppression

logger = logging.getLogger(__name__)

MAX_ADDRESS_LENGTH = 254


def email_normalize(raw: str) -> str:
    """Trim, lowercase, and store the domain in its ASCII (IDNA) form: one spelling per mailbox.

    Raises ValidationError with a message fit for the form.
    """
    value = raw.strip()
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        raise ValidationError("Enter a valid email address.")
    if not local.isascii():
        raise ValidationError("Addresses with non-ASCII characters before the @ are not supported.")
    # validate_email accepts quoted local parts ("a b"@x, even with control characters): no mailbox
    # worth mailing needs one, and they are a way to smuggle markup and spaces into templates.
    if local.startswith('"'):
        raise ValidationError("Enter a valid email address.")
    if len(local) > 64:  # RFC 5321 limit; longer local parts are refused by mail servers
        raise ValidationError("That address is too long.")
    try:
        domain = idna.encode(domain.rstrip("."), uts46=True).decode("ascii")
    except idna.IDNAError:
        raise ValidationError("Enter a valid email address.") from None
    value = f"{local}@{domain}".lower()
    if len(value) > MAX_ADDRESS_LENGTH:
        raise ValidationError("That address is too long.")
    validate_email(value)
    return value


def email_key(raw: str) -> str:
    """The stored spelling of an address we did not choose (an ESP event, an admin entry): the
    normalized form when it is a valid address, else trimmed and lowercased, so it still matches
    what was stored for it before."""
    try:
        return email_normalize(raw)
    except ValidationError:
        return raw.strip().lower()[:MAX_ADDRESS_LENGTH]


def email_is_suppressed(email: str) -> bool:
    return Suppression.objects.filter(email=email_key(email)).exists()


def emails_suppressed(emails: list[str]) -> set[str]:
    """Which of these (stored, normalized) addresses are suppressed: one query."""
    return set(Suppression.objects.filter(email__in_array=emails).values_list("email", flat=True))


def address_suppress(*, email: str, reason: str, detail: str = "") -> bool:
    """Suppress an address; False if it already was (the first reason is kept). Idempotent."""
    email = email_key(email)
    try:
        with transaction.atomic():
            Suppression.objects.create(email=email, reason=reason, detail=detail[:500])
    except IntegrityError:
        return False
    logger.info("address suppressed reason=%s subscriber=%s", reason, _subscriber_id(email))
    return True


def address_unsuppress(*, email: str) -> bool:
    deleted, _ = Suppression.objects.filter(email=email_key(email)).delete()
    return bool(deleted)


def _subscriber_id(email: str) -> int | None:
    # Logs carry ids, not addresses.
    return Subscriber.objects.filter(email=email).values_list("id", flat=True).first()
