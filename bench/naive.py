"""The baseline: a digest sender written the obvious way, to measure what the real one buys.

Per subscriber: ORM queries for the profile, the candidate papers and their topics and the papers
already sent; a Python loop scoring every candidate; the whole email rendered and run through
premailer; a new SMTP connection per email; rows saved one by one. Same templates, same text model.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import get_connection

from newsletter.models import Delivery, DeliveryItem, Subscriber
from newsletter.services.digest_templates import PaperRow
from newsletter.services.emails import build_email, render_email
from newsletter.services.render import digest_values
from newsletter.services.tokens import Purpose, link
from papers.models import Paper
from papers.services.text import paper_text, vectorize


def naive_digest_send(*, subscriber_id: int, now: datetime) -> None:
    subscriber = Subscriber.objects.get(pk=subscriber_id)
    topic_ids = set(subscriber.topics.values_list("id", flat=True))
    since = (subscriber.last_digest_at or now - timedelta(days=7)) - settings.NEWSLETTER_WINDOW_OVERLAP
    papers = list(Paper.objects.filter(ingested_at__gt=since).prefetch_related("topics"))
    sent = set(DeliveryItem.objects.filter(subscriber=subscriber).values_list("paper_id", flat=True))
    excluded = [k.strip().lower() for k in subscriber.excluded_keywords.split(",") if k.strip()]
    interests = vectorize([subscriber.interests]) if subscriber.interests else None
    paper_vectors = (
        vectorize([paper_text(p.title, p.abstract) for p in papers]) if interests is not None else None
    )
    phrases = [p.strip().lower() for p in subscriber.interests.split(",") if p.strip()]
    scored = []
    for index, paper in enumerate(papers):
        text = f"{paper.title} {paper.abstract}".lower()
        if paper.id in sent or any(k in text for k in excluded):
            continue
        topic_hits = len(topic_ids & {t.id for t in paper.topics.all()})
        similarity = (
            float((paper_vectors[index] @ interests.T).toarray()[0, 0]) if interests is not None else 0.0
        )
        keyword_hits = sum(1 for p in phrases if p in text)
        relevance = 3 * min(topic_hits, 2) / 2 + 4 * min(similarity / 0.25, 1) + 2 * min(keyword_hits, 3) / 3
        if (topic_ids or subscriber.interests) and relevance <= 0:
            continue
        scored.append((relevance + 0.5 * min((paper.upvotes or 0) / 100, 1), paper))
    scored.sort(key=lambda pair: (-pair[0], -pair[1].id))
    picks = scored[: subscriber.papers_per_digest]
    if not picks:
        return
    delivery = Delivery.objects.create(
        subscriber=subscriber,
        period="naive",
        scheduled_for=now,
        window_start=since,
        window_end=now,
        status=Delivery.Status.SENDING,
    )
    for position, (score, paper) in enumerate(picks, start=1):
        DeliveryItem.objects.create(
            delivery=delivery, subscriber=subscriber, paper=paper, position=position, score=score, reasons=[]
        )
    items = [
        PaperRow(
            title=p.title,
            url=p.url or "https://arxiv.org/",
            abstract=p.abstract[:420],
            reasons=[r for r in ["Matches your topics" if topic_ids else ""] if r],
            topics=[t.name for t in p.topics.all()],
            authors=[", ".join(p.authors[:6])] if p.authors else [],
            code_urls=[p.github_url] if p.github_url else [],
        )
        for _, p in picks
    ]
    context = {**digest_values(delivery=delivery, count=len(items)), "items": items}
    # The obvious code renders and inlines the full email, every time.
    rendered = render_email("digest", context)
    message = build_email(
        "digest",
        to=subscriber.email,
        context=context,
        rendered=rendered,
        unsubscribe_url=link(subscriber=subscriber, purpose=Purpose.UNSUBSCRIBE),
    )
    with get_connection() as connection:  # a new SMTP connection per email
        connection.send_messages([message])
    delivery.status = Delivery.Status.SENT
    delivery.sent_at = now
    delivery.save()


def naive_run(*, subscriber_ids: list[int], now: datetime) -> list[float]:
    """Send naively to these subscribers; returns each digest's seconds."""
    latencies = []
    for subscriber_id in subscriber_ids:
        started = time.perf_counter()
        naive_digest_send(subscriber_id=subscriber_id, now=now)
        latencies.append(time.perf_counter() - started)
    return latencies
