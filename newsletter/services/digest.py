"""Digest content: which papers go into a delivery (ranked once, then recorded), and how they read."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from urllib.parse import quote_plus
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection as db_connection
from django.utils.encoding import iri_to_uri
from psycopg.types.json import Jsonb

from newsletter.models import Delivery, DeliveryItem, Subscriber
from newsletter.selectors import CandidatePaper, papers_already_sent, papers_by_ids, papers_candidates
from newsletter.services.digest_render import DigestItem, digest_render
from newsletter.services.emails import RenderedEmail
from newsletter.services.profiles import profiles_build, profiles_complete
from newsletter.services.ranking import CandidatePool, Pick, Profile, rank
from newsletter.services.tokens import Purpose, link
from papers.models import Topic

ABSTRACT_CHARS = 420
AUTHORS_SHOWN = 6


def window_start(*, subscriber: Subscriber, now: datetime) -> datetime:
    """Papers ingested after this instant are candidates for the subscriber's next digest."""
    if subscriber.last_digest_at is None:
        return now - settings.NEWSLETTER_FIRST_DIGEST_WINDOW
    return subscriber.last_digest_at - settings.NEWSLETTER_WINDOW_OVERLAP


def topic_names() -> dict[int, str]:
    return dict(Topic.objects.values_list("id", "name"))


def digest_preview(*, subscriber: Subscriber, now: datetime, limit: int | None = None) -> list[Pick]:
    """The papers the subscriber would get if their digest were built now (manage page).

    `limit` overrides the subscriber's digest size (preview_digest --limit)."""
    since = window_start(subscriber=subscriber, now=now)
    papers = papers_candidates(since=since)
    pool = CandidatePool(papers, topic_names(), now)
    sent = papers_already_sent(subscriber_ids=[subscriber.pk], paper_ids=[p.id for p in papers])
    (profile,) = profiles_build(subscribers=[subscriber], since=[since])
    if limit is not None:
        profile = dataclasses.replace(profile, limit=limit)
    return rank(profiles=[profile], pool=pool, already_sent=sent)[0]


def interests_preview(
    *, interests: str, topic_ids: Sequence[int], limit: int, since: datetime, now: datetime
) -> list[Pick]:
    """Rank papers for an ad-hoc profile (preview_digest --interests): no subscriber, no history."""
    papers = papers_candidates(since=since)
    pool = CandidatePool(papers, topic_names(), now)
    bare = Profile(
        subscriber_id=0,
        topic_ids=tuple(topic_ids),
        interests=interests,
        excluded_keywords="",
        limit=limit,
        since=since,
    )
    (profile,) = profiles_complete([bare], models=False)
    return rank(profiles=[profile], pool=pool, already_sent=set())[0]


@dataclass
class DigestContent:
    delivery: Delivery
    picks: list[Pick]


def digests_build(*, deliveries: Sequence[Delivery], now: datetime) -> list[DigestContent]:
    """The papers of each delivery. Deliveries built before (a retry, a re-driven delivery) keep
    what was recorded; the others are ranked together and their picks recorded before any email is
    sent, so a resend is the same digest and a paper is never given to a subscriber twice."""
    recorded = _recorded_picks([d.pk for d in deliveries])
    fresh = [d for d in deliveries if d.pk not in recorded and d.kind == Delivery.Kind.DIGEST]
    if fresh:
        _rank_and_record(fresh, now)
        recorded.update(_recorded_picks([d.pk for d in fresh]))
    return [DigestContent(delivery=d, picks=recorded.get(d.pk, [])) for d in deliveries]


def _rank_and_record(deliveries: Sequence[Delivery], now: datetime) -> None:
    since = min(d.window_start for d in deliveries)
    until = max(d.window_end for d in deliveries)
    papers = papers_candidates(since=since, until=until)
    pool = CandidatePool(papers, topic_names(), now)
    subscriber_ids = [d.subscriber_id for d in deliveries]
    sent = papers_already_sent(subscriber_ids=subscriber_ids, paper_ids=[p.id for p in papers])
    profiles = profiles_build(
        subscribers=[d.subscriber for d in deliveries], since=[d.window_start for d in deliveries]
    )
    ranked = rank(profiles=profiles, pool=pool, already_sent=sent)
    picks_record(
        [
            (d.pk, d.subscriber_id, pick.paper.id, position, pick.score, list(pick.reasons))
            for d, picks in zip(deliveries, ranked, strict=True)
            for position, pick in enumerate(picks, start=1)
        ]
    )


PickRow = tuple[int, int, int, int, float, list[str]]  # delivery, subscriber, paper, position, score, reasons

_INSERT_PICKS = (
    f"INSERT INTO {DeliveryItem._meta.db_table} "
    "(delivery_id, subscriber_id, paper_id, position, score, reasons) "
    "SELECT * FROM unnest("
    "%s::bigint[], %s::bigint[], %s::bigint[], %s::smallint[], %s::float8[], %s::jsonb[]) "
    "ON CONFLICT DO NOTHING"
)


def picks_record(rows: Sequence[PickRow]) -> None:
    """Store the picks of a chunk in one statement. A paper another delivery of the same subscriber
    recorded meanwhile conflicts and is dropped, which is exactly "never twice"; the caller reads
    back what was stored."""
    if not rows:
        return
    if db_connection.vendor != "postgresql":
        picks_record_portable(rows)
        return
    # One row per paper per digest is the largest write of a chunk: as column arrays it is a few
    # parameters instead of 2,000 model instances and 12,000 placeholders (a third of the time).
    columns = [list(column) for column in zip(*rows, strict=True)]
    columns[5] = [Jsonb(reasons) for reasons in columns[5]]
    with db_connection.cursor() as cursor:  # one statement: atomic by itself
        cursor.execute(_INSERT_PICKS, columns)


def picks_record_portable(rows: Sequence[PickRow]) -> None:
    """picks_record through the ORM, for databases other than PostgreSQL (SQLite for a try-out)."""
    DeliveryItem.objects.bulk_create(
        [
            DeliveryItem(
                delivery_id=delivery_id,
                subscriber_id=subscriber_id,
                paper_id=paper_id,
                position=position,
                score=score,
                reasons=reasons,
            )
            for delivery_id, subscriber_id, paper_id, position, score, reasons in rows
        ],
        ignore_conflicts=True,
    )


def _recorded_picks(delivery_ids: Sequence[int]) -> dict[int, list[Pick]]:
    rows = list(
        DeliveryItem.objects.filter(delivery_id__in=delivery_ids)
        .order_by("delivery_id", "position")
        .values_list("delivery_id", "paper_id", "score", "reasons")
    )
    papers = {p.id: p for p in papers_by_ids(ids=list({r[1] for r in rows}))}
    picks: dict[int, list[Pick]] = defaultdict(list)
    for delivery_id, paper_id, score, reasons in rows:
        picks[delivery_id].append(Pick(paper=papers[paper_id], score=score, reasons=tuple(reasons)))
    return dict(picks)


# --- presentation ----------------------------------------------------------------------------


def paper_url(paper: CandidatePaper) -> str:
    if paper.url:
        # Feeds may give IRIs (non-ASCII, spaces). Percent-encoded, the link is the same in every
        # mail client, and the fast HTML path matches the template path (lxml would encode it there).
        return iri_to_uri(paper.url)
    # Listings carry no link; an arXiv title search finds the paper.
    return f"https://arxiv.org/search/?searchtype=title&query={quote_plus(paper.title)}"


def authors_line(authors: list[str]) -> list[str]:
    if not authors:
        return []
    shown = ", ".join(authors[:AUTHORS_SHOWN])
    return [shown + (" et al." if len(authors) > AUTHORS_SHOWN else "")]


def shorten(text: str, limit: int) -> str:
    """Cut at a word boundary and add an ellipsis (Truncator does the same, a hundred times slower)."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:") + "…"


def _paper_part(paper: CandidatePaper, names: dict[int, str]) -> DigestItem:
    return DigestItem(
        title=paper.title,
        url=paper_url(paper),
        abstract=shorten(paper.abstract, ABSTRACT_CHARS),
        authors=authors_line(paper.authors),
        topics=[names[t] for t in paper.topic_ids if t in names],
        code_urls=[iri_to_uri(paper.github_url)] if paper.github_url else [],
    )


class DigestItems:
    """Template items for the digests of a chunk: what depends on the paper alone is built once per
    paper, however many digests carry it; reasons and position are each digest's own."""

    def __init__(self, names: dict[int, str]) -> None:
        self.names = names
        self._parts: dict[int, DigestItem] = {}

    def items(self, picks: Sequence[Pick]) -> list[DigestItem]:
        result = []
        for number, pick in enumerate(picks, start=1):
            part = self._parts.get(pick.paper.id)
            if part is None:
                part = self._parts[pick.paper.id] = _paper_part(pick.paper, self.names)
            result.append(replace(part, reasons=list(pick.reasons), number=str(number)))
        return result


def digest_item(pick: Pick, names: dict[int, str]) -> DigestItem:
    """One paper as the templates see it (outside a chunk: previews, tests)."""
    return DigestItems(names).items([pick])[0]


def count_label(count: int) -> str:
    return f"{count} new paper" if count == 1 else f"{count} new papers"


def period_label(delivery: Delivery, subscriber: Subscriber) -> str:
    local = delivery.scheduled_for.astimezone(ZoneInfo(subscriber.timezone))
    day = f"{local:%A} {local.day} {local:%B}"
    return f"week of {day}" if subscriber.frequency == Subscriber.Frequency.WEEKLY else day


def digest_values(*, delivery: Delivery, subscriber: Subscriber, count: int) -> dict[str, str]:
    """The per-email values of the digest and empty-notice templates (links, labels)."""
    frequency = "weekly" if subscriber.frequency == Subscriber.Frequency.WEEKLY else "daily"
    return {
        "intro": f"{count_label(count)} matched your topics and interests since your last digest.",
        "count_label": count_label(count),
        "period_label": period_label(delivery, subscriber),
        "email": subscriber.email,
        "frequency_label": frequency,
        "manage_url": link(subscriber=subscriber, purpose=Purpose.MANAGE),
        "unsubscribe_url": link(subscriber=subscriber, purpose=Purpose.UNSUBSCRIBE),
        "web_url": link(subscriber=subscriber, purpose=Purpose.DIGEST, object_id=delivery.pk),
        "site_url": settings.SITE_URL,
    }


def digest_email_parts(content: DigestContent, items: DigestItems) -> tuple[RenderedEmail, dict[str, str]]:
    subscriber = content.delivery.subscriber
    values = digest_values(delivery=content.delivery, subscriber=subscriber, count=len(content.picks))
    rendered = digest_render(
        items=items.items(content.picks),
        values=values,
        html=subscriber.email_format == Subscriber.Format.HTML,
    )
    return rendered, values


def digest_web_copy(*, delivery: Delivery) -> dict:
    """Template context of the "view in browser" page."""
    picks = _recorded_picks([delivery.pk]).get(delivery.pk, [])
    names = topic_names()
    return {
        "delivery": delivery,
        "items": DigestItems(names).items(picks),
        "period_label": period_label(delivery, delivery.subscriber),
        "count_label": count_label(len(picks)),
    }
