"""Schedule math (newsletter.services.schedule) and the schedule as the dispatcher applies it.

Expected instants are written out in UTC, worked out by hand from each zone's offset, so the tests do
not repeat the code's own conversion.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.models import Delivery, Subscriber
from newsletter.services.dispatch import digests_dispatch
from newsletter.services.schedule import next_send_time, period_key, window_start
from tests.factories import SubscriberFactory

ZONES = ["UTC", "America/New_York", "Asia/Kolkata", "Pacific/Auckland", "Europe/Berlin"]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def daily(tz: str, hour: int, after: datetime) -> datetime | None:
    return next_send_time(frequency="daily", weekday=0, hour=hour, tz=tz, after=after)


def weekly(tz: str, weekday: int, hour: int, after: datetime) -> datetime | None:
    return next_send_time(frequency="weekly", weekday=weekday, hour=hour, tz=tz, after=after)


@pytest.mark.parametrize(
    ("tz", "hour", "after", "expected"),
    [
        ("UTC", 8, utc(2026, 1, 10, 7, 59), utc(2026, 1, 10, 8)),
        # New York is UTC-5 in winter, UTC-4 in summer.
        ("America/New_York", 8, utc(2026, 1, 10, 0), utc(2026, 1, 10, 13)),
        ("America/New_York", 8, utc(2026, 7, 10, 0), utc(2026, 7, 10, 12)),
        # 23:00 UTC on 10 Jan is 18:00 in New York: 20:00 local is still to come that day.
        ("America/New_York", 20, utc(2026, 1, 10, 23), utc(2026, 1, 11, 1)),
        # Kolkata is UTC+5:30 all year: 08:00 local is 02:30 UTC, midnight local is 18:30 UTC the day before.
        ("Asia/Kolkata", 8, utc(2026, 1, 10, 0), utc(2026, 1, 10, 2, 30)),
        ("Asia/Kolkata", 0, utc(2026, 1, 10, 20), utc(2026, 1, 11, 18, 30)),
        # Auckland is UTC+13 in (southern) summer, UTC+12 in winter; its day starts before UTC's.
        ("Pacific/Auckland", 8, utc(2026, 1, 9, 12), utc(2026, 1, 9, 19)),
        ("Pacific/Auckland", 8, utc(2026, 7, 9, 12), utc(2026, 7, 9, 20)),
        # Berlin is UTC+1 in winter, UTC+2 in summer.
        ("Europe/Berlin", 8, utc(2026, 1, 10, 0), utc(2026, 1, 10, 7)),
        ("Europe/Berlin", 8, utc(2026, 7, 10, 0), utc(2026, 7, 10, 6)),
    ],
)
def test_daily_next_send_time_in_each_time_zone(
    tz: str, hour: int, after: datetime, expected: datetime
) -> None:
    result = daily(tz, hour, after)

    assert result == expected
    assert result.astimezone(ZoneInfo(tz)).hour == hour


@pytest.mark.parametrize("tz", ZONES)
def test_next_send_time_is_strictly_after(tz: str) -> None:
    first = daily(tz, 8, utc(2026, 2, 1))

    # Asked again at exactly the scheduled instant, the answer is the next day, not the same instant.
    second = daily(tz, 8, first)

    assert second > first
    local_first, local_second = first.astimezone(ZoneInfo(tz)), second.astimezone(ZoneInfo(tz))
    assert local_second.date() == local_first.date() + timedelta(days=1)
    assert local_second.hour == local_first.hour == 8
    assert daily(tz, 8, first - timedelta(microseconds=1)) == first


def test_spring_forward_gap_sends_at_three_local_the_same_day() -> None:
    # 2026-03-08 in New York: 02:00 EST jumps to 03:00 EDT, so 02:00 does not exist that day.
    result = daily("America/New_York", 2, utc(2026, 3, 8, 0))

    assert result == utc(2026, 3, 8, 7)  # 03:00 EDT
    local = result.astimezone(ZoneInfo("America/New_York"))
    assert (local.date(), local.hour) == (date(2026, 3, 8), 3)
    # The day after, 02:00 exists again.
    assert daily("America/New_York", 2, result) == utc(2026, 3, 9, 6)


def test_spring_forward_gap_in_berlin_and_auckland() -> None:
    # Berlin skips 02:00-03:00 on 2026-03-29 (CET -> CEST); Auckland on 2026-09-27 (NZST -> NZDT).
    assert daily("Europe/Berlin", 2, utc(2026, 3, 28, 12)) == utc(2026, 3, 29, 1)  # 03:00 CEST
    assert daily("Pacific/Auckland", 2, utc(2026, 9, 26, 0)) == utc(2026, 9, 26, 14)  # 03:00 NZDT


def test_fall_back_overlap_sends_once_at_the_first_occurrence() -> None:
    # 2026-11-01 in New York: 01:00-02:00 happens twice (EDT, then EST).
    first = daily("America/New_York", 1, utc(2026, 11, 1, 0))

    assert first == utc(2026, 11, 1, 5)  # 01:00 EDT, the first 01:00
    # The second 01:00 (06:00 UTC) is not a second send time: the next one is the next day.
    following = daily("America/New_York", 1, first)
    assert following == utc(2026, 11, 2, 6)  # 01:00 EST
    assert daily("America/New_York", 1, utc(2026, 11, 1, 5, 30)) == following


def test_fall_back_overlap_in_berlin() -> None:
    # Berlin repeats 02:00-03:00 on 2026-10-25.
    first = daily("Europe/Berlin", 2, utc(2026, 10, 24, 12))

    assert first == utc(2026, 10, 25, 0)  # 02:00 CEST
    assert daily("Europe/Berlin", 2, first) == utc(2026, 10, 26, 1)  # 02:00 CET the next day


def test_local_hour_is_kept_across_a_dst_change() -> None:
    sends = []
    after = utc(2026, 3, 6)
    for _ in range(4):
        after = daily("America/New_York", 8, after)
        sends.append(after)

    assert [s.astimezone(ZoneInfo("America/New_York")).hour for s in sends] == [8, 8, 8, 8]
    # 6 and 7 March are EST (13:00 UTC), 8 and 9 March EDT (12:00 UTC): one 23-hour day.
    assert sends == [utc(2026, 3, 6, 13), utc(2026, 3, 7, 13), utc(2026, 3, 8, 12), utc(2026, 3, 9, 12)]


@pytest.mark.parametrize("weekday", range(7))
def test_weekly_lands_on_the_chosen_weekday(weekday: int) -> None:
    # Monday 2026-01-05 10:00 in Berlin; the digest is at 09:00 local.
    after = utc(2026, 1, 5, 9)
    result = weekly("Europe/Berlin", weekday, 9, after)

    local = result.astimezone(ZoneInfo("Europe/Berlin"))
    assert local.weekday() == weekday
    assert local.hour == 9
    assert after < result <= after + timedelta(days=7)
    # Monday 09:00 has passed (it is 10:00): a Monday digest is next Monday's.
    if weekday == 0:
        assert local.date() == date(2026, 1, 12)
    else:
        assert local.date() == date(2026, 1, 5) + timedelta(days=weekday)


def test_weekly_in_auckland_uses_the_local_weekday() -> None:
    # Sunday 2026-01-11 20:00 UTC is Monday 09:00 in Auckland (UTC+13).
    result = weekly("Pacific/Auckland", 0, 9, utc(2026, 1, 11, 12))

    assert result == utc(2026, 1, 11, 20)
    assert result.weekday() == 6  # Sunday in UTC, Monday where the subscriber lives


@pytest.mark.parametrize("frequency", ["off", "monthly", ""])
def test_paused_or_unknown_frequency_has_no_send_time(frequency: str) -> None:
    assert next_send_time(frequency=frequency, weekday=0, hour=8, tz="UTC", after=utc(2026, 1, 1)) is None


@given(
    tz=st.sampled_from(ZONES),
    hour=st.integers(min_value=0, max_value=23),
    after=st.datetimes(
        min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
    ),
)
@settings(max_examples=300, deadline=None)
def test_daily_schedule_properties(tz: str, hour: int, after: datetime) -> None:
    zone = ZoneInfo(tz)
    first = daily(tz, hour, after)
    second = daily(tz, hour, first)

    assert after < first <= after + timedelta(hours=25)
    # The wanted hour, or the hour after it when a DST gap swallowed the wanted one.
    assert first.astimezone(zone).hour in (hour, (hour + 1) % 24)
    # One send per local day, none skipped.
    assert second.astimezone(zone).date() == first.astimezone(zone).date() + timedelta(days=1)


@given(
    tz=st.sampled_from(ZONES),
    weekday=st.integers(min_value=0, max_value=6),
    hour=st.integers(min_value=0, max_value=23),
    after=st.datetimes(
        min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
    ),
)
@settings(max_examples=300, deadline=None)
def test_weekly_schedule_properties(tz: str, weekday: int, hour: int, after: datetime) -> None:
    zone = ZoneInfo(tz)
    first = weekly(tz, weekday, hour, after)
    second = weekly(tz, weekday, hour, first)

    assert after < first <= after + timedelta(days=7, hours=1)
    assert first.astimezone(zone).weekday() == weekday
    assert second.astimezone(zone).date() == first.astimezone(zone).date() + timedelta(days=7)
    assert period_key(frequency="weekly", scheduled_for=first, tz=tz) != period_key(
        frequency="weekly", scheduled_for=second, tz=tz
    )


@pytest.mark.parametrize(
    ("frequency", "scheduled_for", "tz", "expected"),
    [
        ("daily", utc(2026, 3, 10, 12), "UTC", "2026-03-10"),
        # 02:00 UTC on 10 March is still 9 March in New York, already 10 March in Kolkata.
        ("daily", utc(2026, 3, 10, 2), "America/New_York", "2026-03-09"),
        ("daily", utc(2026, 3, 10, 2), "Asia/Kolkata", "2026-03-10"),
        # 20:00 UTC on 9 March is 10 March in Auckland.
        ("daily", utc(2026, 3, 9, 20), "Pacific/Auckland", "2026-03-10"),
        ("weekly", utc(2026, 1, 7, 12), "UTC", "2026-W02"),
        # ISO weeks cross the year: 1 January 2027 (a Friday) is in week 53 of 2026.
        ("weekly", utc(2027, 1, 1, 12), "Europe/Berlin", "2026-W53"),
        # Sunday 23:00 UTC is already Monday (a new ISO week) in Berlin.
        ("weekly", utc(2026, 1, 11, 23, 30), "UTC", "2026-W02"),
        ("weekly", utc(2026, 1, 11, 23, 30), "Europe/Berlin", "2026-W03"),
    ],
)
def test_period_key(frequency: str, scheduled_for: datetime, tz: str, expected: str) -> None:
    assert period_key(frequency=frequency, scheduled_for=scheduled_for, tz=tz) == expected


# --- the schedule on the row, applied by the dispatcher ----------------------------------------


@pytest.mark.django_db
def test_dispatcher_follows_the_local_schedule_across_spring_forward() -> None:
    subscriber = SubscriberFactory(timezone="America/New_York", send_hour=2, next_send_at=utc(2026, 3, 7, 7))

    # Run the dispatcher every 5 minutes for three days, as beat would.
    with time_machine.travel(utc(2026, 3, 7, 0), tick=False) as traveller:
        while datetime.now(UTC) < utc(2026, 3, 10):
            digests_dispatch()
            traveller.shift(timedelta(minutes=5))

    deliveries = list(Delivery.objects.filter(subscriber=subscriber).order_by("scheduled_for"))
    assert [d.period for d in deliveries] == ["2026-03-07", "2026-03-08", "2026-03-09"]
    # 02:00 EST; 03:00 EDT on the day 02:00 is skipped; 02:00 EDT.
    assert [d.scheduled_for for d in deliveries] == [
        utc(2026, 3, 7, 7),
        utc(2026, 3, 8, 7),
        utc(2026, 3, 9, 6),
    ]
    subscriber.refresh_from_db()
    assert subscriber.next_send_at == utc(2026, 3, 10, 6)


@pytest.mark.django_db
def test_dispatcher_sends_once_in_the_fall_back_overlap() -> None:
    subscriber = SubscriberFactory(timezone="America/New_York", send_hour=1, next_send_at=utc(2026, 11, 1, 5))

    with time_machine.travel(utc(2026, 11, 1, 4), tick=False) as traveller:
        while datetime.now(UTC) < utc(2026, 11, 1, 12):
            digests_dispatch()
            traveller.shift(timedelta(minutes=5))

    assert list(Delivery.objects.filter(subscriber=subscriber).values_list("period", "scheduled_for")) == [
        ("2026-11-01", utc(2026, 11, 1, 5))
    ]
    subscriber.refresh_from_db()
    assert subscriber.next_send_at == utc(2026, 11, 2, 6)


@pytest.mark.django_db
def test_weekly_subscriber_gets_one_delivery_per_iso_week() -> None:
    # Wednesday 09:00 in Kolkata is 03:30 UTC.
    subscriber = SubscriberFactory(
        timezone="Asia/Kolkata",
        frequency=Subscriber.Frequency.WEEKLY,
        weekday=Subscriber.Weekday.WEDNESDAY,
        send_hour=9,
        next_send_at=utc(2026, 1, 7, 3, 30),
    )

    with time_machine.travel(utc(2026, 1, 5), tick=False) as traveller:
        while datetime.now(UTC) < utc(2026, 1, 26):
            digests_dispatch()
            traveller.shift(timedelta(hours=1))

    assert list(
        Delivery.objects.filter(subscriber=subscriber).order_by("id").values_list("period", flat=True)
    ) == [
        "2026-W02",
        "2026-W03",
        "2026-W04",
    ]
    subscriber.refresh_from_db()
    assert subscriber.next_send_at == utc(2026, 1, 28, 3, 30)


# --- window_start: which papers a digest may hold ----------------------------------------------


@pytest.mark.django_db
def test_first_digest_window_is_the_recent_past(settings) -> None:
    now = datetime(2026, 1, 10, 8, tzinfo=UTC)
    subscriber = SubscriberFactory(last_digest_at=None)

    assert window_start(subscriber=subscriber, now=now) == now - settings.NEWSLETTER_FIRST_DIGEST_WINDOW


@pytest.mark.django_db
def test_later_windows_start_at_the_previous_digest_with_an_overlap(settings) -> None:
    last = datetime(2026, 1, 9, 8, tzinfo=UTC)
    subscriber = SubscriberFactory(last_digest_at=last)

    assert window_start(subscriber=subscriber, now=last + timedelta(days=1)) == (
        last - settings.NEWSLETTER_WINDOW_OVERLAP
    )
