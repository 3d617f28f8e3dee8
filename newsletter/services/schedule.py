"""Schedule math: when a subscriber's next digest is due, in their own time zone, DST-correct."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DAILY = "daily"
WEEKLY = "weekly"


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
    zone = ZoneInfo(tz)
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
    local = scheduled_for.astimezone(ZoneInfo(tz)).date()
    if frequency == WEEKLY:
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    return local.isoformat()
