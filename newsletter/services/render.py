"""Step 3 of the pipeline: render. How a digest reads: the rows of its papers, its links and labels,
and the one entry point that turns a delivery's picks into an email (`digest_email`) or into the
"view in browser" page (`digest_web_context`), with the same values. The templates are filled by
the compiled fast path of digest_templates.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from urllib.parse import quote_plus
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.utils.encoding import iri_to_uri

from newsletter.models import Delivery, Subscriber
from newsletter.selectors import picks_recorded
from newsletter.services.candidates import Pick
from newsletter.services.digest_templates import PaperRow, digest_render
from newsletter.services.emails import build_email
from newsletter.services.tokens import Purpose, feedback_link, link
from papers.selectors import CandidatePaper, topic_names

ABSTRACT_CHARS = 420
AUTHORS_SHOWN = 6


# --- the rows of a digest --------------------------------------------------------------------


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


def paper_date(paper: CandidatePaper) -> str:
    """The paper's date as readers see it: when it was published, else when it reached us."""
    day = paper.published_at or paper.ingested_at
    return f"{day.day} {day:%B %Y}"


def _paper_row(paper: CandidatePaper, names: dict[int, str]) -> PaperRow:
    return PaperRow(
        title=paper.title,
        url=paper_url(paper),
        abstract=shorten(paper.abstract, ABSTRACT_CHARS),
        date=paper_date(paper),
        authors=authors_line(paper.authors),
        topics=[names[t] for t in paper.topic_ids if t in names],
        code_urls=[iri_to_uri(paper.github_url)] if paper.github_url else [],
    )


def paper_card(*, paper: CandidatePaper) -> PaperRow:
    """One paper as the digests show it, without a reader's parts (the feedback page)."""
    return _paper_row(paper, topic_names())


class PaperRowCache:
    """Rows for the digests of a chunk: what depends on the paper alone is built once per paper,
    however many digests carry it; reasons, position and the feedback links are each digest's own."""

    def __init__(self, names: dict[int, str] | None = None) -> None:
        self.names = topic_names() if names is None else names
        self._rows: dict[int, PaperRow] = {}

    def rows(self, picks: Sequence[Pick], *, subscriber: Subscriber) -> list[PaperRow]:
        """The rows of one reader's picks, each with that reader's feedback links."""
        result = []
        for number, pick in enumerate(picks, start=1):
            row = self._rows.get(pick.paper.id)
            if row is None:
                row = self._rows[pick.paper.id] = _paper_row(pick.paper, self.names)
            feedback = feedback_link(subscriber=subscriber, paper_id=pick.paper.id)
            result.append(
                replace(
                    row,
                    reasons=list(pick.reasons),
                    number=str(number),
                    more_url=feedback + "more/",
                    less_url=feedback + "less/",
                )
            )
        return result


# --- the values around them ------------------------------------------------------------------


def count_label(count: int) -> str:
    return f"{count} new paper" if count == 1 else f"{count} new papers"


def period_label(delivery: Delivery, subscriber: Subscriber) -> str:
    local = delivery.scheduled_for.astimezone(ZoneInfo(subscriber.timezone))
    day = f"{local:%A} {local.day} {local:%B}"
    return f"week of {day}" if subscriber.frequency == Subscriber.Frequency.WEEKLY else day


def intro(*, count: int, first: bool) -> str:
    if first:
        days = settings.NEWSLETTER_FIRST_DIGEST_WINDOW.days
        return f"Your first digest: {count_label(count)} of the last {days} days matched your interests."
    return f"{count_label(count)} matched your topics and interests since your last digest."


def digest_values(*, delivery: Delivery, count: int, test: bool = False) -> dict[str, str]:
    """The per-email values of the digest and empty-notice templates (links, labels).

    A test digest has no delivery row, so no web copy: "view in browser" opens the manage page,
    whose live preview shows the same papers."""
    subscriber = delivery.subscriber
    frequency = "weekly" if subscriber.frequency == Subscriber.Frequency.WEEKLY else "daily"
    manage_url = link(subscriber=subscriber, purpose=Purpose.MANAGE)
    return {
        "intro": intro(count=count, first=delivery.first),
        "count_label": count_label(count),
        "period_label": period_label(delivery, subscriber),
        "email": subscriber.email,
        "frequency_label": frequency,
        "manage_url": manage_url,
        "unsubscribe_url": link(subscriber=subscriber, purpose=Purpose.UNSUBSCRIBE),
        "web_url": manage_url
        if test
        else link(subscriber=subscriber, purpose=Purpose.DIGEST, object_id=delivery.pk),
        "site_url": settings.SITE_URL,
    }


# --- the entry points ------------------------------------------------------------------------


def digest_email(
    *,
    delivery: Delivery,
    picks: Sequence[Pick],
    rows: PaperRowCache | None = None,
    to: str | None = None,
    test: bool = False,
) -> EmailMultiAlternatives:
    """The email for a delivery's picks: the digest, or the "nothing new" notice when there are none.

    `rows` shares paper rows across a chunk. A test digest (`test=True`, from the admin) goes to
    `to`, says "[Test]" in its subject and carries no List-Unsubscribe: its reader is an operator.
    """
    subscriber = delivery.subscriber
    html = subscriber.email_format == Subscriber.Format.HTML
    values = digest_values(delivery=delivery, count=len(picks), test=test)
    unsubscribe_url = None if test else values["unsubscribe_url"]
    if not picks:
        return build_email(
            "empty",
            to=to or subscriber.email,
            context=values,
            unsubscribe_url=unsubscribe_url,
            html=html,
            bounce_id=None if to else subscriber.pk,
        )
    items = (rows or PaperRowCache()).rows(picks, subscriber=subscriber)
    rendered = digest_render(items=items, values=values, html=html)
    if test:
        rendered = replace(rendered, subject=f"[Test] {rendered.subject}")
    return build_email(
        "digest",
        to=to or subscriber.email,
        context={},
        unsubscribe_url=unsubscribe_url,
        rendered=rendered,
        bounce_id=None if to else subscriber.pk,
    )


def digest_web_context(*, delivery: Delivery) -> dict:
    """Template context of the "view in browser" page: the recorded picks, the email's values."""
    picks = picks_recorded(delivery_ids=[delivery.pk]).get(delivery.pk, [])
    return {
        **digest_values(delivery=delivery, count=len(picks)),
        "delivery": delivery,
        "items": PaperRowCache().rows(picks, subscriber=delivery.subscriber),
    }
