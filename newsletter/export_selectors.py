"""The "download my data" export: everything stored about a subscriber, in one document."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Prefetch

from newsletter.library_selectors import library_entries
from newsletter.models import (
    Delivery,
    DeliveryItem,
    EmailEvent,
    Subscriber,
    Suppression,
)
from newsletter.selectors import feedback_given, preferences_stored


def _isoformat(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def subscriber_export(*, subscriber: Subscriber) -> dict:
    """Everything stored about a subscriber, for the "download my data" button.

    Keep in step with the Subscriber, Delivery, DeliveryItem, Feedback, LibraryEntry, Suppression and
    EmailEvent fields
    (except token_key, the secret behind the links, and ReaderModel, fitted from the feedback listed).
    """
    deliveries = (
        Delivery.objects.filter(subscriber=subscriber)
        # Joined, so a pick whose paper was deleted meanwhile (the sweeper deletes it) is left out.
        .prefetch_related(Prefetch("items", DeliveryItem.objects.select_related("paper")))
        .order_by("created_at")
    )
    suppression = Suppression.objects.filter(email=subscriber.email).first()
    events = EmailEvent.objects.filter(email=subscriber.email).order_by("received_at")
    return {
        "email": subscriber.email,
        "status": subscriber.status,
        "created_at": subscriber.created_at.isoformat(),
        "updated_at": subscriber.updated_at.isoformat(),
        "pending_since": _isoformat(subscriber.pending_since),
        "confirmed_at": _isoformat(subscriber.confirmed_at),
        "unsubscribed_at": _isoformat(subscriber.unsubscribed_at),
        "preferences": {
            "topics": sorted(subscriber.topics.values_list("slug", flat=True)),
            **preferences_stored(subscriber),
        },
        # A sign-up for this address waiting for its owner's confirmation (see subscriber_subscribe).
        "pending_preferences": subscriber.pending_preferences,
        "next_send_at": _isoformat(subscriber.next_send_at),
        "last_digest_at": _isoformat(subscriber.last_digest_at),
        "deliveries": [
            {
                "period": d.period,
                "kind": d.kind,
                "status": d.status,
                "scheduled_for": _isoformat(d.scheduled_for),
                "sent_at": _isoformat(d.sent_at),
                "bounced": d.bounced,
                "papers": [
                    {"title": item.paper.title, "url": item.paper.url, "reasons": item.reasons}
                    for item in d.items.all()
                ],
            }
            for d in deliveries
        ],
        "feedback": [
            {
                "title": f.paper.title,
                "url": f.paper.url,
                "choice": f.choice,
                "updated_at": f.updated_at.isoformat(),
            }
            for f in feedback_given(subscriber=subscriber)
        ],
        "library": [
            {
                "arxiv_id": e.arxiv_id,
                "doi": e.doi,
                "title": e.title,
                "abstract": e.abstract,
                "paper_url": e.paper.url if e.paper else None,
                "created_at": e.created_at.isoformat(),
            }
            for e in library_entries(subscriber=subscriber)
        ],
        "suppression": (
            {
                "reason": suppression.reason,
                "detail": suppression.detail,
                "created_at": suppression.created_at.isoformat(),
            }
            if suppression
            else None
        ),
        "email_events": [
            {
                "event_type": e.event_type,
                "timestamp": _isoformat(e.timestamp),
                "description": e.description,
                "bounce_kind": e.bounce_kind,
                "verified": e.verified,
            }
            for e in events
        ],
    }
