"""The automatic brake: pause all sending when complaints or hard bounces pass what mailbox providers
accept, before they block the domain.

Checked by beat every NEWSLETTER_BRAKE_CHECK_SECONDS. It trips when, counting only what happened since
the last resume (an operator's resume is not undone by the same old numbers):

- spam complaints over the last 7 days / digests sent in those 7 days > NEWSLETTER_MAX_COMPLAINT_RATE
  (0.3%, the line Gmail and Yahoo enforce), or
- hard bounces over the last 24 hours / digests sent in those 24 hours > NEWSLETTER_MAX_BOUNCE_RATE (5%),

each only when at least NEWSLETTER_BRAKE_MIN_SENT digests were sent in its window. Only verified events
count (EmailEvent.verified: a bounce-mailbox report without proof of our mail is not one), and each
address once per window: sixty copies of one genuine report are one address that bounced, so nobody
trips the brake with the tokens of the few emails they received (deliverability/trust.py). Tripping records a
SendingPause (reason and numbers), logs an ERROR, and from then on no chunk claims anything: due
deliveries stay PENDING (the dispatcher still creates them) until an operator resumes in the admin.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from anymail.signals import EventType
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from newsletter.models import Delivery, EmailEvent, SendingPause
from newsletter.selectors import sending_pause_active
from newsletter.services.deliverability.warmup import warmup_trouble

logger = logging.getLogger("newsletter.brake")

COMPLAINT_WINDOW = timedelta(days=7)
BOUNCE_WINDOW = timedelta(hours=24)


def brake_check(*, now: datetime | None = None) -> SendingPause | None:
    """Trip the brake if a rate is over its limit; returns the open pause (new or earlier), if any."""
    now = now or timezone.now()
    if (open_pause := sending_pause_active()) is not None:
        return open_pause
    last_resume = SendingPause.objects.filter(resumed_at__isnull=False).order_by("-resumed_at").first()
    resumed = last_resume.resumed_at if last_resume else None
    checks = (
        ("spam complaint rate", COMPLAINT_WINDOW, settings.NEWSLETTER_MAX_COMPLAINT_RATE,
         EmailEvent.objects.filter(event_type=EventType.COMPLAINED, verified=True)),
        ("hard-bounce rate", BOUNCE_WINDOW, settings.NEWSLETTER_MAX_BOUNCE_RATE,
         EmailEvent.objects.filter(event_type=EventType.BOUNCED, bounce_kind="hard", verified=True)),
    )  # fmt: skip
    for name, window, limit, events in checks:
        since = max(now - window, resumed) if resumed else now - window
        sent = Delivery.objects.filter(status=Delivery.Status.SENT, sent_at__gte=since).count()
        if sent < settings.NEWSLETTER_BRAKE_MIN_SENT:
            continue
        count = events.filter(received_at__gte=since).values("email").distinct().count()
        if count / sent > limit:
            return _trip(name, window, limit, count, sent, now)
    return None


def _trip(name: str, window: timedelta, limit: float, count: int, sent: int, now: datetime) -> SendingPause:
    hours = window.total_seconds() / 3600
    span = f"{hours / 24:g} days" if hours >= 48 else f"{hours:g} hours"
    reason = f"{name} {count / sent:.2%} over {span} ({count} of {sent} sent) is above {limit:.2%}"
    try:
        with transaction.atomic():
            pause = SendingPause.objects.create(
                reason=reason, rate=count / sent, limit=limit, events=count, sent=sent
            )
    except IntegrityError:  # another check tripped it at the same moment
        return sending_pause_active()
    warmup_trouble(now=now)
    logger.error("sending paused by the brake: %s; resume in the admin (Sending pauses)", reason)
    return pause


def brake_release(*, pause_ids: Sequence[int], by: str) -> int:
    """Resume sending (admin action); returns how many open pauses were closed."""
    closed = SendingPause.objects.filter(id__in=pause_ids, is_open=True).update(
        is_open=False, resumed_at=timezone.now(), resumed_by=by[:150]
    )
    if closed:
        logger.warning("sending resumed by %s", by)
    return closed
