"""The reader's archive: their sent digests as a page to browse (/manage/<token>/digests/) and as a
private Atom feed (newsletter.feeds). Both list the papers each digest carried, as recorded when it
was sent, and open each digest's web copy ("view in browser"), so a digest reads the same wherever
it is opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from newsletter.models import Subscriber
from newsletter.selectors import digests_sent, papers_liked, picks_recorded
from newsletter.services.candidates import Pick
from newsletter.services.digest_templates import PaperRow
from newsletter.services.render import PaperRowCache, count_label, paper_url, period_label
from newsletter.services.tokens import Purpose, link
from papers.selectors import papers_by_ids

# The feed carries the latest digests only: a feed reader polls it, and a year of daily digests in
# every answer would be heavy for nothing (the archive page lists them all).
FEED_DIGESTS = 30


@dataclass(frozen=True)
class ArchivedPaper:
    title: str
    url: str


@dataclass(frozen=True)
class ArchivedDigest:
    delivery_id: int
    title: str  # "Saturday 5 December 2026: 10 papers"
    sent_at: datetime
    web_url: str
    papers: tuple[ArchivedPaper, ...]


def digests_archived(*, subscriber: Subscriber, limit: int | None = None) -> list[ArchivedDigest]:
    """The reader's sent digests, latest first, each with its papers: three queries in all."""
    deliveries = digests_sent(subscriber=subscriber, limit=limit)
    picks = picks_recorded(delivery_ids=[d.pk for d in deliveries])
    result = []
    for delivery in deliveries:
        papers = tuple(ArchivedPaper(p.paper.title, paper_url(p.paper)) for p in picks.get(delivery.pk, []))
        # period_label names no year, and an archive spans years.
        day = f"{period_label(delivery, subscriber)} {delivery.scheduled_for.year}"
        result.append(
            ArchivedDigest(
                delivery_id=delivery.pk,
                title=f"{day[:1].upper()}{day[1:]}: {count_label(len(papers))}",
                sent_at=delivery.sent_at or delivery.scheduled_for,
                web_url=link(subscriber=subscriber, purpose=Purpose.DIGEST, object_id=delivery.pk),
                papers=papers,
            )
        )
    return result


def papers_liked_rows(*, subscriber: Subscriber) -> list[PaperRow]:
    """The papers the reader marked "More like this", latest first, as the digests show them (with
    their feedback links, so a mark can be changed from there)."""
    marks = papers_liked(subscriber=subscriber)
    papers = {p.id: p for p in papers_by_ids(ids=[m.paper_id for m in marks])}
    picks = [Pick(paper=papers[m.paper_id], score=0.0, reasons=()) for m in marks if m.paper_id in papers]
    return PaperRowCache().rows(picks, subscriber=subscriber)


def feed_url(*, subscriber: Subscriber) -> str:
    """The reader's private feed address: like every link, it stops working when token_key rotates."""
    return link(subscriber=subscriber, purpose=Purpose.FEED)


def archive_export(*, subscriber: Subscriber) -> dict:
    """The archive's part of "download my data": the feed's address and each digest's web copy (the
    deliveries and their papers are in subscriber_export already)."""
    return {
        "feed_url": feed_url(subscriber=subscriber),
        "digests": [
            {
                "title": digest.title,
                "sent_at": digest.sent_at.isoformat(),
                "web_url": digest.web_url,
                "papers": [{"title": p.title, "url": p.url} for p in digest.papers],
            }
            for digest in digests_archived(subscriber=subscriber)
        ],
    }
