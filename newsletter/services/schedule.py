"""Schedules: when a subscriber's next digest is due (in their own time zone, DST-correct), and
which papers it covers. The one home of the dispatch clock: the dispatcher, confirmation and
preference changes all ask this module."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from django.conf import settings

from newsletter.models import Subscriber

DAILY = "daily"
WEEKLY = "weekly"


# ZoneInfo keeps only the 8 zones used last; a dispatch round walks subscribers in dozens of zones
# and read each zone's file again and again. There are some 600 zones: all can stay.
_zone = lru_cache(maxsize=1024)(ZoneInfo)


def local_to_utc(day: date, hour: int, zone: ZoneInfo) -> datetime:
    """The instant `hour:00` happens on `day` in `zone`.

    In a spring-forward gap (02:00 does not exist) the wall time is read with the offset before the
    change, which lands one hour later (03:00): the digest comes late rather than never. In an
    autumn overlap (01:00 happens twice) the first occurrence wins (fold=0): it is sent once.
    """
    return datetime.combine(day, time(hour), tzinfo=zone).astimezone(UTC)


def next_send_time(*, frequency: str, weekday: int, hour: int, tz: str, after: datetime) -> datetime | None:
    """The first scheduled instant strictly after `after`; None when the subscriber paused."""
    if frequency not in (DAILY, WEEKLY):
        return None
    zone = _zone(tz)
    start = after.astimezone(zone).date() - timedelta(days=1)
    # Eight days always contain one full week, plus a day on each side for offsets across midnight.
    for offset in range(10):
        day = start + timedelta(days=offset)
        if frequency == WEEKLY and day.weekday() != weekday:
            continue
        candidate = local_to_utc(day, hour, zone)
        if candidate > after:
            return candidate
    raise AssertionError("no send time within ten days")  # unreachable for valid input


def period_key(*, frequency: str, scheduled_for: datetime, tz: str) -> str:
    """The digest period a send belongs to: the local day, or the ISO week for weekly digests.

    Delivery rows are unique per (subscriber, period), so however the schedule is edited, a
    subscriber never gets two digests for the same day (or week).
    """
    local = scheduled_for.astimezone(_zone(tz)).date()
    if frequency == WEEKLY:
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    return local.isoformat()


# A late digest (the service was down at the due time) is not followed by the regular one within this.
MIN_GAP_AFTER_LATE_DIGEST = timedelta(hours=6)


def subscriber_next_send(subscriber: Subscriber, *, after: datetime) -> datetime | None:
    """The next send time after `after` under the subscriber's current preferences; None unless
    they are subscribed and not paused."""
    if subscriber.status != Subscriber.Status.ACTIVE:
        return None
    return next_send_time(
        frequency=subscriber.frequency,
        weekday=subscriber.weekday,
        hour=subscriber.send_hour,
        tz=subscriber.timezone,
        after=after,
    )


def subscriber_send_after_digest(
    subscriber: Subscriber, *, scheduled: datetime, now: datetime
) -> datetime | None:
    """The send time after the digest due at `scheduled` and dispatched at `now`. Forward from the
    later of the two: a subscriber missed for days gets one digest now, not one per missed day, and
    not a second one minutes later because the regular time happens to be near."""
    following = subscriber_next_send(subscriber, after=max(now, scheduled))
    if following is not None and following - now < MIN_GAP_AFTER_LATE_DIGEST:
        following = subscriber_next_send(subscriber, after=following)
    return following


def window_start(*, subscriber: Subscriber, now: datetime) -> datetime:
    """Papers ingested after this instant are candidates for the subscriber's next digest."""
    if subscriber.last_digest_at is None:
        return now - settings.NEWSLETTER_FIRST_DIGEST_WINDOW
    return subscriber.last_digest_at - settings.NEWSLETTER_WINDOW_OVERLAP
