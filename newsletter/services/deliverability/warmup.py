"""Warm-up of a new sending domain: a daily cap that starts at NEWSLETTER_WARMUP and doubles after each
sending day without trouble (the relay pushed back, or the brake tripped).

Part of step 4 (send, delivery.py). Right after its claim, a chunk reserves its share of today's
allowance (one locked row per UTC day, shared by every worker through the database), sends that many
of its deliveries, oldest first, and hands back what it did not send. The others go back to PENDING
until the next UTC day, when the sweeper queues them again in id order (oldest first), and a newer
chunk waits while older held-back digests are due; their subscriber keeps the same period, nothing
is dropped, and the stats page counts them. With NEWSLETTER_WARMUP empty nothing here runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from newsletter.models import Delivery, WarmupDay
from newsletter.services.outcomes import deliveries_postpone

logger = logging.getLogger("newsletter.warmup")

WAITING = "waiting for the next day's warm-up allowance"
OLDER_FIRST_WAIT = timedelta(seconds=60)


@dataclass(frozen=True)
class Admission:
    admitted: list[Delivery]
    held_back: list[int]
    retry_at: datetime | None  # held back for a moment (older digests first); None: the next day
    reserved: int = 0
    day: date | None = None


def warmup_admit(*, deliveries: list[Delivery], now: datetime) -> Admission:
    """The claimed deliveries (in id order) that fit today's cap; the rest is put back to PENDING."""
    if not settings.NEWSLETTER_WARMUP or not deliveries:
        return Admission(deliveries, [], None)
    ids = [d.pk for d in deliveries]
    if _older_waiting(first_id=ids[0], now=now):
        until = now + OLDER_FIRST_WAIT
        deliveries_postpone(delivery_ids=ids, until=until, reason="older digests go first (warm-up)")
        return Admission([], ids, until)
    day = now.astimezone(UTC).date()
    with transaction.atomic():
        row = _day_row(day)
        granted = max(0, min(len(ids), row.cap - row.used))
        WarmupDay.objects.filter(pk=row.pk).update(used=F("used") + granted)
    held = ids[granted:]
    if held:
        tomorrow = datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)
        deliveries_postpone(delivery_ids=held, until=tomorrow, reason=WAITING)
        logger.info(
            "warm-up cap %s reached on %s: %s deliveries wait for the next day", row.cap, day, len(held)
        )
    return Admission(deliveries[:granted], held, None, granted, day)


def warmup_return(*, admission: Admission, sent: int) -> None:
    """Hand back the part of the reservation that did not go out (skipped, deferred, failed)."""
    unused = admission.reserved - sent
    if unused > 0 and admission.day is not None:
        WarmupDay.objects.filter(day=admission.day).update(used=Greatest(F("used") - unused, 0))


def warmup_trouble(*, now: datetime | None = None) -> None:
    """Today had trouble (throttling, the brake): tomorrow's cap stays today's."""
    if not settings.NEWSLETTER_WARMUP:
        return
    with transaction.atomic():
        row = _day_row((now or timezone.now()).astimezone(UTC).date())
        WarmupDay.objects.filter(pk=row.pk).update(troubled=True)


@dataclass(frozen=True)
class WarmupStatus:
    cap: int
    used: int
    waiting: int


def warmup_status(*, now: datetime | None = None) -> WarmupStatus | None:
    """Today's cap and use and how many digests wait for it (stats page); None without warm-up."""
    if not settings.NEWSLETTER_WARMUP:
        return None
    day = (now or timezone.now()).astimezone(UTC).date()
    row = WarmupDay.objects.filter(day=day).first()
    waiting = Delivery.objects.filter(status=Delivery.Status.PENDING, last_error=WAITING).count()
    if row is None:
        return WarmupStatus(_cap_after(_previous(day)), 0, waiting)
    return WarmupStatus(row.cap, row.used, waiting)


def _day_row(day: date) -> WarmupDay:
    """Today's row, locked; created on the first send of the day with the cap the history gives."""
    row = WarmupDay.objects.select_for_update().filter(day=day).first()
    if row is None:
        WarmupDay.objects.bulk_create(
            [WarmupDay(day=day, cap=_cap_after(_previous(day)))], ignore_conflicts=True
        )
        row = WarmupDay.objects.select_for_update().get(day=day)
    return row


def _previous(day: date) -> WarmupDay | None:
    return WarmupDay.objects.filter(day__lt=day).order_by("-day").first()


def _cap_after(previous: WarmupDay | None) -> int:
    start = settings.NEWSLETTER_WARMUP
    if previous is None:
        return start
    return max(start, previous.cap if previous.troubled else previous.cap * 2)


def _older_waiting(*, first_id: int, now: datetime) -> bool:
    """Digests held back on an earlier day and due again now, older than this chunk: they go first."""
    return Delivery.objects.filter(
        status=Delivery.Status.PENDING, last_error=WAITING, queued_at__lte=now, id__lt=first_id
    ).exists()
