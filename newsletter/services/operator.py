"""What operators do from the admin: resend failed deliveries, (un)suppress, send test digests."""

from __future__ import annotations

from collections.abc import Sequence

from django.core.mail import get_connection
from django.db import transaction
from django.utils import timezone

from newsletter.models import Delivery, Subscriber, Suppression, new_token_key
from newsletter.selectors import digest_preview
from newsletter.services.addresses import address_suppress, address_unsuppress, emails_suppressed
from newsletter.services.render import digest_email


def deliveries_resend(*, delivery_ids: Sequence[int]) -> list[int]:
    """Failed deliveries back to PENDING with fresh attempts; same papers (they are recorded).
    Returns the ids to queue."""
    with transaction.atomic():
        ids = list(
            Delivery.objects.select_for_update()
            .filter(id__in=delivery_ids, status=Delivery.Status.FAILED)
            .values_list("id", flat=True)
        )
        Delivery.objects.filter(id__in=ids).update(
            status=Delivery.Status.PENDING, attempts=0, queued_at=timezone.now(), last_error=""
        )
    return ids


def subscribers_suppress(*, subscriber_ids: Sequence[int]) -> int:
    emails = Subscriber.objects.filter(id__in=subscriber_ids).values_list("email", flat=True)
    return sum(address_suppress(email=e, reason=Suppression.Reason.MANUAL, detail="admin") for e in emails)


def subscribers_unsuppress(*, subscriber_ids: Sequence[int]) -> int:
    emails = Subscriber.objects.filter(id__in=subscriber_ids).values_list("email", flat=True)
    return sum(address_unsuppress(email=e) for e in emails)


def subscribers_links_revoke(*, subscriber_ids: Sequence[int]) -> int:
    """Invalidate every link ever emailed to these subscribers (a forwarded digest, a leaked
    mailbox). Each token carries a fingerprint of token_key, so a new key revokes them all; the
    subscriber gets working links again with the next email or from "send me a new link"."""
    updated = 0
    for subscriber_id in subscriber_ids:  # one new random key each, never a shared one
        updated += Subscriber.objects.filter(pk=subscriber_id).update(token_key=new_token_key())
    return updated


def digest_test_send(*, subscriber: Subscriber, to: str) -> int:
    """Send what the subscriber would get now to `to`, marked as a test. Nothing is recorded as
    sent, so the subscriber's real next digest is unaffected. Returns the number of papers."""
    now = timezone.now()
    picks = digest_preview(subscriber=subscriber, now=now)
    preview = Delivery(
        pk=0, subscriber=subscriber, scheduled_for=now, first=subscriber.last_digest_at is None
    )
    message = digest_email(delivery=preview, picks=picks, to=to, test=True)
    with get_connection() as connection:
        connection.send_messages([message])
    return len(picks)


# An admin action's batch: enough to check a template change on real readers, not a mailing.
TEST_DIGESTS_MAX = 100


def digests_test_send_to_subscribers(*, subscriber_ids: Sequence[int]) -> int:
    """A test digest to each of these subscribers who is active and not suppressed (at most
    TEST_DIGESTS_MAX). Returns how many were sent."""
    subscribers = list(
        Subscriber.objects.filter(id__in=subscriber_ids, status=Subscriber.Status.ACTIVE).order_by("id")[
            :TEST_DIGESTS_MAX
        ]
    )
    suppressed = emails_suppressed([s.email for s in subscribers])
    reachable = [s for s in subscribers if s.email not in suppressed]
    for subscriber in reachable:
        digest_test_send(subscriber=subscriber, to=subscriber.email)
    return len(reachable)
