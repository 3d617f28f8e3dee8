"""Step 3 of the pipeline: render. How a digest reads: the rows of its papers, its links and labels,
and the one entry point that turns a delivery's picks into an email (`digest_email`) or into the
"view in browser" page (`digest_web_context`), with the same values. The templates are filled by
the compiled fast path of digest_templates.py.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from urllib.parse import quote, quote_plus
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.utils.encoding import iri_to_uri

from newsletter.models import Delivery, Subscriber
from newsletter.selectors import picks_recorded
from newsletter.services.candidates import Pick
from newsletter.services.digest_templates import DigestItem, PaperRow, digest_render
from newsletter.services.emails import build_email
from newsletter.services.tokens import Purpose, feedback_links, link
from papers.selectors import CandidatePaper, topic_names

# About three lines of the email's 544 px text column (two on a wide client, five on a phone).
ABSTRACT_CHARS = 240
AUTHORS_SHOWN = 3
# "Subject: " and the subject within RFC 5322's 78-character line: never folded over two lines, and
# about what inboxes show before cutting.
SUBJECT_CHARS = 69
_SHORT_NAME_CHARS = 40  # "Ask2Mask: Guided Data Selection..." is named "Ask2Mask" in the subject


# --- the rows of a digest --------------------------------------------------------------------


def arxiv_id(paper: CandidatePaper) -> str | None:
    """The paper's arXiv id, if a source gave one (Hugging Face pages without one are "hf:...")."""
    external = paper.external_id
    return external if external and not external.startswith("hf:") else None


def paper_url(paper: CandidatePaper) -> str:
    if paper.url:
        # Feeds may give IRIs (non-ASCII, spaces). Percent-encoded, the link is the same in every
        # mail client, and the fast HTML path matches the template path (lxml would encode it there).
        return iri_to_uri(paper.url)
    if identifier := arxiv_id(paper):
        return f"https://arxiv.org/abs/{identifier}"
    # Listings carry no link; an arXiv title search finds the paper.
    return f"https://arxiv.org/search/?searchtype=title&query={quote_plus(paper.title)}"


def authors_line(authors: list[str]) -> list[str]:
    if not authors:
        return []
    if len(authors) > AUTHORS_SHOWN:
        return [", ".join(authors[:AUTHORS_SHOWN]) + " et al."]
    return [", ".join(authors)]


_SENTENCE_END = re.compile(r"[.!?](?=\s)")


def shorten(text: str, limit: int, *, ellipsis: str = "…") -> str:
    """Cut at the last sentence end, else the last word boundary, that keeps at least half of
    `limit`, and add an ellipsis (Truncator does the word cut too, a hundred times slower)."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1 - len(ellipsis)]
    sentence_end = max((m.end() for m in _SENTENCE_END.finditer(cut)), default=0)
    if sentence_end >= limit // 2:
        return f"{cut[:sentence_end]} {ellipsis}"
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:") + ellipsis


def _day(moment: datetime, *, year: bool) -> str:
    return f"{moment.day} {moment:%b %Y}" if year else f"{moment.day} {moment:%b}"


def paper_date(paper: CandidatePaper) -> str:
    """The two dates, named: "published 11 Mar 2025 · added 3 Dec". Digests pick papers by when they
    were added here, and a paper added this week may be months old."""
    added = _day(paper.ingested_at, year=False)
    if paper.published_at is None:
        return f"added {added}"
    published = _day(paper.published_at, year=paper.published_at.year != paper.ingested_at.year)
    return f"published {published} · added {added}"


def _count(value: int | None) -> list[str]:
    return [f"{value:,}"] if value else []


def _paper_row(paper: CandidatePaper, names: dict[int, str], abstract_chars: int | None) -> PaperRow:
    identifier = arxiv_id(paper)
    return PaperRow(
        title=paper.title,
        url=paper_url(paper),
        abstract=paper.abstract if abstract_chars is None else shorten(paper.abstract, abstract_chars),
        date=paper_date(paper),
        authors=authors_line(paper.authors),
        topics=[names[t] for t in paper.topic_ids if t in names],
        code_urls=[iri_to_uri(paper.github_url)] if paper.github_url else [],
        stars=_count(paper.github_stars) if paper.github_url else [],
        upvotes=_count(paper.upvotes),
        arxiv_ids=[quote(identifier)] if identifier else [],
    )


# Rows kept per process, by paper: a worker's chunks carry mostly the same papers (those of the
# window), and a chunk's PaperRowCache would build each one again.
_KEPT_ROWS_SIZE = 4096
_kept_rows: dict[tuple[int, int | None], tuple[CandidatePaper, list[str], PaperRow]] = {}


def _kept_row(paper: CandidatePaper, names: dict[int, str], abstract_chars: int | None) -> PaperRow:
    """_paper_row, kept while the paper is equal in every field (dates in the same zone) and its
    topics have the same names: a changed paper is built again, never shown stale."""
    topics = [names[t] for t in paper.topic_ids if t in names]
    kept = _kept_rows.get((paper.id, abstract_chars))
    if kept is not None and kept[1] == topics and _same_paper(kept[0], paper):
        return kept[2]
    if len(_kept_rows) >= _KEPT_ROWS_SIZE:
        _kept_rows.clear()
    row = _paper_row(paper, names, abstract_chars)
    _kept_rows[(paper.id, abstract_chars)] = (paper, topics, row)
    return row


def _same_paper(kept: CandidatePaper, paper: CandidatePaper) -> bool:
    # Equal aware datetimes may be in different zones, which would print another day.
    return (
        kept == paper
        and kept.ingested_at.utcoffset() == paper.ingested_at.utcoffset()
        and (kept.published_at is None or kept.published_at.utcoffset() == paper.published_at.utcoffset())
    )


def paper_card(*, paper: CandidatePaper) -> PaperRow:
    """One paper as the digests show it, without a reader's parts (the feedback page)."""
    return _paper_row(paper, topic_names(), ABSTRACT_CHARS)


class PaperRowCache:
    """Rows for the digests of a chunk: what depends on the paper alone is built once per paper,
    however many digests carry it; reasons, position and the feedback links are each digest's own."""

    def __init__(
        self, names: dict[int, str] | None = None, *, abstract_chars: int | None = ABSTRACT_CHARS
    ) -> None:
        self.names = topic_names() if names is None else names
        self.abstract_chars = abstract_chars  # None: the whole abstract (the web copy)
        self._rows: dict[int, PaperRow] = {}

    def items(self, picks: Sequence[Pick], *, subscriber: Subscriber) -> list[DigestItem]:
        """One reader's picks as the email renders them: each paper's shared row with the reader's
        position, reasons and feedback links beside it (no copy of the row per reader)."""
        result = []
        feedback_link = feedback_links(subscriber=subscriber)
        for number, pick in enumerate(picks, start=1):
            paper_id = pick.paper.id
            row = self._rows.get(paper_id)
            if row is None:
                row = self._rows[paper_id] = _kept_row(pick.paper, self.names, self.abstract_chars)
            feedback = feedback_link(paper_id)
            result.append(DigestItem(row, str(number), pick.reasons, feedback + "more/", feedback + "less/"))
        return result

    def rows(self, picks: Sequence[Pick], *, subscriber: Subscriber) -> list[PaperRow]:
        """The rows of one reader's picks, each with that reader's feedback links (for the pages'
        templates, which read them as one object)."""
        return [
            replace(
                item.row,
                reasons=list(item.reasons),
                number=item.number,
                more_url=item.more_url,
                less_url=item.less_url,
            )
            for item in self.items(picks, subscriber=subscriber)
        ]


# --- the values around them ------------------------------------------------------------------


def count_label(count: int) -> str:
    return f"{count} paper" if count == 1 else f"{count} papers"


def period_label(delivery: Delivery, subscriber: Subscriber) -> str:
    local = delivery.scheduled_for.astimezone(ZoneInfo(subscriber.timezone))
    day = f"{local:%A} {local.day} {local:%B}"
    return f"week of {day}" if subscriber.frequency == Subscriber.Frequency.WEEKLY else day


def intro(*, count: int, first: bool) -> str:
    """What is true of the papers: the window is by ingestion, not publication (a paper added this
    week may be a year old), and later digests leave out what the reader already got."""
    if first:
        days = settings.NEWSLETTER_FIRST_DIGEST_WINDOW.days
        return (
            f"Your first digest: {count_label(count)} for your topics and interests, "
            f"from those added in the last {days} days."
        )
    return f"{count_label(count)} new to you since your last digest, picked for your topics and interests."


def _short_name(title: str) -> str:
    """What a paper is called: "Ask2Mask" for "Ask2Mask: Guided Data Selection for ...", else its title."""
    name, colon, _ = title.partition(":")
    return name.strip() if colon and 2 <= len(name.strip()) <= _SHORT_NAME_CHARS else title.strip()


def _topic_phrase(name: str) -> str:
    """A topic mid-sentence: "speech & audio" for "Speech & audio"; "NLP" or "RAG & retrieval" stay."""
    return name[0].lower() + name[1:] if name[1:2].islower() else name


def common_topic(rows: Sequence[PaperRow]) -> str | None:
    """The topic at least half of the papers share: the most common, and on a tie the one seen
    first (most_common keeps insertion order), which is the lead paper's."""
    counts = Counter(topic for row in rows for topic in row.topics)  # a row lists a topic once
    if not counts:
        return None
    topic, hits = counts.most_common(1)[0]
    return topic if 2 * hits >= len(rows) else None


def subject(rows: Sequence[PaperRow]) -> str:
    """The lead paper, the count, and a topic when most papers share one: "Ask2Mask and 9 more papers
    on speech & audio". To stay within SUBJECT_CHARS the lead paper's name is cut, or the topic
    dropped when the cut would leave too little of the name."""
    rest = len(rows) - 1
    topic = common_topic(rows)
    if rest == 0:
        tail = f", a paper on {_topic_phrase(topic)}" if topic else ", a paper for you"
    else:
        more = "1 more paper" if rest == 1 else f"{rest} more papers"
        tail = f" and {more}" + (f" on {_topic_phrase(topic)}" if topic else " for you")
    lead = " ".join(_short_name(rows[0].title).split())
    if topic and rest and SUBJECT_CHARS - len(tail) < min(len(lead), _SHORT_NAME_CHARS):
        tail = f" and {more} for you"  # a recognisable lead paper says more than the topic
    room = SUBJECT_CHARS - len(tail)
    # "...", not "…": an ASCII subject is sent as it is, without RFC 2047 encoding (cheaper to build,
    # and read the same by every client and filter).
    return shorten(lead, room, ellipsis="...") + tail if lead else f"{count_label(len(rows))} for you"


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
    items = (rows or PaperRowCache()).items(picks, subscriber=subscriber)
    title = subject([item.row for item in items])
    rendered = digest_render(items=items, values=values | {"subject": title}, html=html)
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
        # The web copy has the room the email has not: whole abstracts.
        "items": PaperRowCache(abstract_chars=None).rows(picks, subscriber=delivery.subscriber),
    }
