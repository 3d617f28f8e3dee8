"""The suppression list: addresses we never mail again, whatever their subscription says."""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction

from newsletter.models import Subscriber, Suppression

logger = logging.getLogger(__name__)


def address_suppress(*, email: str, reason: str, detail: str = "") -> bool:
    """Suppress an address; False if it already was (the first reason is kept). Idempotent."""
    email = email.strip().lower()
    try:
        with transaction.atomic():
            Suppression.objects.create(email=email, reason=reason, detail=detail[:500])
    except IntegrityError:
        return False
    logger.info("address suppressed reason=%s subscriber=%s", reason, _subscriber_id(email))
    return True


def address_unsuppress(*, email: str) -> bool:
    deleted, _ = Suppression.objects.filter(email=email.strip().lower()).delete()
    return bool(deleted)


def _subscriber_id(email: str) -> int | None:
    # Logs carry ids, not addresses.
    return Subscriber.objects.filter(email=email).values_list("id", flat=True).first()
