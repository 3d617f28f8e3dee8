"""The shared send rate (deliverability.sendrate): parsing, the token bucket in the real Redis, the
AIMD cut and recovery, and the send path's hooks (deferral instead of long sleeps, 421 slows down)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator

import pytest
import redis
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

from newsletter.models import Delivery
from newsletter.services.deliverability import sendrate
from newsletter.services.deliverability.sendrate import (
    SendPacer,
    domain_rates_parse,
    pacer_for_chunk,
    rate_parse,
    send_rate_status,
)
from newsletter.services.delivery import classify_send_error, deliveries_send
from tests.newsletter.helpers import dispatch_one_chunk, due, quantization_papers


@pytest.fixture(autouse=True)
def limiter_keys() -> Iterator[redis.Redis]:
    """This test run's Redis db (TEST_REDIS_URL), with no limiter state left by another test."""
    client = redis.Redis.from_url(django_settings.NEWSLETTER_LIMITER_REDIS_URL)

    def clear() -> None:
        for key in client.scan_iter(match=sendrate.KEY_PREFIX + "*"):
            client.delete(key)

    clear()
    yield client
    clear()


def no_renew() -> None:
    pass


# --- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "per_second"), [("14/s", 14), ("50000/h", 50000 / 3600), ("30/min", 0.5), ("86400/d", 1)]
)
def test_rates_are_read_per_second(text: str, per_second: float) -> None:
    assert rate_parse(text).per_second == pytest.approx(per_second)


def test_an_empty_rate_is_unlimited_and_costs_nothing(settings) -> None:
    settings.NEWSLETTER_SEND_RATE = ""
    settings.NEWSLETTER_LIMITER_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens: never called
    assert rate_parse("") is None
    assert pacer_for_chunk() is None
    assert send_rate_status() is None


@pytest.mark.parametrize("text", ["14", "fast", "14/week", "0/s", "-3/s", "nan/s"])
def test_a_bad_rate_is_a_clear_configuration_error(text: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="rate"):
        rate_parse(text)


def test_domain_rates() -> None:
    rates = domain_rates_parse("gmail.com=5/s, Yahoo.com=2/s")
    assert {d: r.per_second for d, r in rates.items()} == {"gmail.com": 5, "yahoo.com": 2}
    with pytest.raises(ImproperlyConfigured, match=r"gmail\.com"):
        domain_rates_parse("gmail.com:5/s")


def test_batches_are_about_a_tenth_of_a_second() -> None:
    assert [rate_parse(r).batch for r in ("14/s", "40/s", "1000/s", "50000/h")] == [1, 4, 20, 1]


# --- the bucket in Redis -------------------------------------------------------------------------


def test_permits_come_in_batches_one_round_trip_each(settings, limiter_keys) -> None:
    settings.NEWSLETTER_SEND_RATE = "40/s"  # batches of 4, bucket of 4
    pacer = pacer_for_chunk()
    calls = []
    original = sendrate._run

    def counting(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    sendrate._run = counting
    try:
        for _ in range(4):
            assert pacer.wait(recipient="a@example.org", renew=no_renew) is None
    finally:
        sendrate._run = original
    assert len(calls) == 1


def test_an_empty_bucket_sleeps_in_bounded_steps_renewing_the_lease(settings) -> None:
    settings.NEWSLETTER_SEND_RATE = "2/s"
    slept, renewed = [], []
    pacer = SendPacer(rate=rate_parse("2/s"), domains={}, sleep=lambda s: (slept.append(s), time.sleep(s)))
    for _ in range(3):
        assert pacer.wait(recipient="a@example.org", renew=lambda: renewed.append(1)) is None
    assert slept, "the third permit of a 2/s bucket of one cannot be there at once"
    assert all(0 < s <= 0.5 + 1e-6 for s in slept)
    assert len(renewed) == len(slept)


def test_a_wait_longer_than_allowed_is_handed_back(settings) -> None:
    settings.NEWSLETTER_SEND_RATE = "1/min"
    settings.NEWSLETTER_PERMIT_MAX_WAIT_SECONDS = 5
    pacer = pacer_for_chunk()
    assert pacer.wait(recipient="a@example.org", renew=no_renew) is None
    retry_in = pacer.wait(recipient="b@example.org", renew=no_renew)
    assert 5 < retry_in <= 60


def test_two_pacers_share_one_bucket(settings) -> None:
    settings.NEWSLETTER_SEND_RATE = "1/min"
    settings.NEWSLETTER_PERMIT_MAX_WAIT_SECONDS = 1
    assert pacer_for_chunk().wait(recipient="a@example.org", renew=no_renew) is None
    assert pacer_for_chunk().wait(recipient="b@example.org", renew=no_renew) is not None


def test_a_domain_rate_holds_its_domain_only(settings) -> None:
    settings.NEWSLETTER_SEND_RATE = "1000/s"
    settings.NEWSLETTER_DOMAIN_RATES = "gmail.com=1/min"
    settings.NEWSLETTER_PERMIT_MAX_WAIT_SECONDS = 1
    pacer = pacer_for_chunk()
    assert pacer.wait(recipient="a@gmail.com", renew=no_renew) is None
    assert pacer.wait(recipient="b@gmail.com", renew=no_renew) is not None
    assert all(pacer.wait(recipient=f"r{i}@example.org", renew=no_renew) is None for i in range(30))


def test_redis_unavailable_puts_the_chunk_off_rather_than_sending_unmetered(settings) -> None:
    settings.NEWSLETTER_SEND_RATE = "10/s"
    settings.NEWSLETTER_LIMITER_REDIS_URL = "redis://127.0.0.1:1/0"
    assert pacer_for_chunk().wait(recipient="a@example.org", renew=no_renew) is not None


# --- AIMD ----------------------------------------------------------------------------------------


def test_a_cut_halves_the_shared_rate_once_per_burst_then_it_climbs_back(settings) -> None:
    settings.NEWSLETTER_SEND_RATE = "40/s"
    # Back from 20/s to 40/s in 4 s, 5/s per second: a loaded machine may take a second between the
    # cut and the reading below (with 1 s, 25 ms late failed the test under the parallel suite).
    settings.NEWSLETTER_RATE_RECOVERY_SECONDS = 4
    first, second = pacer_for_chunk(), pacer_for_chunk()
    assert send_rate_status().lowered is False

    assert first.slow_down(reason="421 slow down") is True
    assert second.slow_down(reason="421 slow down") is False  # the same pushback, seen by another worker
    status = send_rate_status()
    assert status.lowered is True
    assert status.current_per_second <= 25  # half, plus what it regained since

    time.sleep(4.1)  # the whole recovery period: back to the configured rate, whatever the machine
    assert send_rate_status().lowered is False


def _in_another_process(action: Callable[[], bool]) -> bool:
    """Run `action` in a forked child (another worker process of the fleet); its truth value."""
    pid = os.fork()
    if pid == 0:  # the child: no pytest teardown, no database
        try:
            os._exit(0 if action() else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) in (0, 1), "the child process failed"
    return os.WEXITSTATUS(status) == 0


def _logs_recovery() -> bool:
    """Take one permit in a fresh pacer; whether this process logged the way back up."""
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logging.getLogger("newsletter.sendrate").addHandler(handler)
    logging.getLogger("newsletter.sendrate").setLevel(logging.INFO)
    assert pacer_for_chunk().wait(recipient="a@example.org", renew=lambda: None) is None
    return any("recovered to the configured 40/s" in line for line in seen)


def test_the_way_back_up_is_logged_once_by_whichever_worker_takes_the_next_permit(settings, caplog) -> None:
    # One worker process is cut back by a 421; after the recovery another process, which never saw the
    # rate lowered, takes the next permit: it says the rate is back, and nobody says it again.
    settings.NEWSLETTER_SEND_RATE = "40/s"
    settings.NEWSLETTER_RATE_RECOVERY_SECONDS = 1
    assert _in_another_process(lambda: pacer_for_chunk().slow_down(reason="421 slow down"))
    assert send_rate_status().lowered is True
    time.sleep(1.1)

    assert _in_another_process(_logs_recovery) is True
    assert _in_another_process(_logs_recovery) is False
    with caplog.at_level("INFO", logger="newsletter.sendrate"):
        assert pacer_for_chunk().wait(recipient="b@example.org", renew=lambda: None) is None
    assert not [r for r in caplog.records if "recovered" in r.getMessage()]
    assert send_rate_status().lowered is False


def test_throttling_answers_are_told_apart_from_other_temporary_errors() -> None:
    import smtplib

    assert classify_send_error(smtplib.SMTPDataError(421, b"4.7.0 Try again later")).throttled
    assert classify_send_error(smtplib.SMTPDataError(450, b"4.2.1 receiving mail at a rate that")).throttled
    assert classify_send_error(smtplib.SMTPDataError(451, b"4.7.1 Too many messages, slow down")).throttled
    assert not classify_send_error(smtplib.SMTPDataError(451, b"4.3.0 Temporary failure")).throttled
    assert not classify_send_error(smtplib.SMTPDataError(550, b"5.7.1 rate of spam")).throttled


# --- the send path -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_chunk_that_would_wait_too_long_is_put_off_without_using_attempts(settings, smtp_sink) -> None:
    settings.NEWSLETTER_SEND_RATE = "1/min"
    settings.NEWSLETTER_PERMIT_MAX_WAIT_SECONDS = 1
    quantization_papers()
    subscribers = [due(email=f"r{i}@example.org") for i in range(3)]
    ids = dispatch_one_chunk()

    result = deliveries_send(delivery_ids=ids)

    assert len(result.sent) == 1 and len(smtp_sink.messages) == 1
    assert sorted(result.deferred) == sorted(set(ids) - set(result.sent))
    assert result.retry_at is not None
    for delivery in Delivery.objects.filter(id__in=result.deferred):
        assert delivery.status == Delivery.Status.PENDING
        assert delivery.attempts == 0
        assert delivery.last_error == "waiting for the send rate"
        assert delivery.queued_at <= result.retry_at
    assert sorted(r for m in smtp_sink.messages for r in m.rcpt_tos)[0] in {s.email for s in subscribers}


@pytest.mark.django_db
def test_a_421_lowers_the_shared_rate(settings, smtp_sink) -> None:
    settings.NEWSLETTER_SEND_RATE = "100/s"
    quantization_papers()
    due(email="a@example.org")
    smtp_sink.data_replies = ["421 4.7.0 Too many messages, slow down"]

    result = deliveries_send(delivery_ids=dispatch_one_chunk())

    assert result.deferred
    assert send_rate_status().lowered is True


@pytest.mark.django_db
def test_the_stats_page_shows_the_configured_and_the_lowered_rate(settings) -> None:
    from django.contrib.auth import get_user_model
    from django.test import Client

    settings.NEWSLETTER_SEND_RATE = "14/s"
    client = Client()
    client.force_login(get_user_model().objects.create_user("ops", "o@example.org", "pw", is_staff=True))
    assert b"Send rate: 14/s (now 14.00/s)" in client.get("/staff/stats/").content

    pacer_for_chunk().slow_down(reason="421")
    page = client.get("/staff/stats/").content.decode()
    assert "lowered to 7." in page and "recovering to 14/s" in page
