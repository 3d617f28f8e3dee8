"""Presentation (newsletter.services.render): paper rows, labels and links, and the compiled (fast)
digest against the template path it replaces.

The slow path is the reference: `render_to_string("emails/digest.html", context)` then `inline_css`.
The fast path (`compiled_digest()`) must give the same email. Two serialization details differ and are
normalized by `html_tokens`, which compares the documents as parsed HTML rather than as bytes:

- the fast path escapes with `html.escape` (what Django's `escape` does), which writes `'` and `"`
  as `&#x27;` and `&quot;`; lxml (premailer's serializer) writes them as the characters. Both parse to
  the same text.
- lxml pretty-prints: an element whose children are all inside a `{% for %}` over an empty list is
  written `<ul></ul>` by the slow path and `<ul>\n\n</ul>` by the fast one. Whitespace between tags
  is not content.

Everything else, including non-ASCII text and attribute (URL) values, must be identical, and for
input with neither quotes nor empty lists the two are byte-identical.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.template.loader import render_to_string

from newsletter.models import Delivery, Subscriber
from newsletter.services import digest_templates
from newsletter.services.candidates import Pick
from newsletter.services.digest_templates import DIGEST_SCALARS, PaperRow, compiled_digest, digest_render
from newsletter.services.emails import inline_css
from newsletter.services.render import (
    ABSTRACT_CHARS,
    AUTHORS_SHOWN,
    PaperRowCache,
    digest_values,
    paper_url,
    period_label,
)
from newsletter.services.tokens import Purpose, feedback_token_load, token_delivery, token_subscriber
from papers.models import Paper, Topic
from papers.selectors import CandidatePaper, papers_by_ids, topic_names
from tests.factories import DeliveryFactory, PaperFactory, SubscriberFactory

pytestmark = pytest.mark.django_db

READER = Subscriber(pk=7, email="reader@example.org", token_key="k" * 32)  # rows need a reader to sign for


# --- rows, labels and links --------------------------------------------------------------------


def candidate(paper: Paper):
    (loaded,) = papers_by_ids(ids=[paper.pk])
    return loaded


def test_paper_url_falls_back_to_an_arxiv_title_search() -> None:
    paper = candidate(PaperFactory(title="Attention & you: a study", url=""))

    assert paper_url(paper) == "https://arxiv.org/search/?searchtype=title&query=Attention+%26+you%3A+a+study"


def test_paper_and_code_urls_are_ascii() -> None:
    paper = candidate(
        PaperFactory(url="https://example.org/papers/café résumé", github_url="https://github.com/zoë/repo")
    )

    item = PaperRowCache(topic_names()).rows(
        [Pick(paper=paper, score=1.0, reasons=("r",))], subscriber=READER
    )[0]

    assert item.url == "https://example.org/papers/caf%C3%A9%20r%C3%A9sum%C3%A9"
    assert item.code_urls == ["https://github.com/zo%C3%AB/repo"]


def test_paper_row_shortens_long_author_lists_and_abstracts() -> None:
    authors = [f"Author {n}" for n in range(AUTHORS_SHOWN + 3)]
    paper = candidate(PaperFactory(authors=authors, abstract="word " * 400, github_url=""))

    item = PaperRowCache(topic_names()).rows(
        [Pick(paper=paper, score=1.0, reasons=("Because",))], subscriber=READER
    )[0]

    assert item.authors == [", ".join(authors[:AUTHORS_SHOWN]) + " et al."]
    assert len(item.abstract) <= ABSTRACT_CHARS
    assert item.abstract.endswith("…")
    assert item.code_urls == []
    assert item.reasons == ["Because"]


def test_paper_row_without_authors() -> None:
    paper = candidate(PaperFactory(authors=[]))

    assert (
        PaperRowCache(topic_names())
        .rows([Pick(paper=paper, score=1.0, reasons=())], subscriber=READER)[0]
        .authors
        == []
    )


def test_period_label_is_local() -> None:
    # 03:00 UTC on Tuesday 13 January is still Monday 12 January in New York.
    scheduled = datetime(2026, 1, 13, 3, tzinfo=UTC)
    daily = SubscriberFactory(timezone="America/New_York")
    weekly = SubscriberFactory(timezone="Asia/Kolkata", frequency=Subscriber.Frequency.WEEKLY)

    assert period_label(Delivery(scheduled_for=scheduled), daily) == "Monday 12 January"
    assert period_label(Delivery(scheduled_for=scheduled), weekly) == "week of Tuesday 13 January"


def test_digest_links_are_absolute_https_and_personal(settings) -> None:
    subscriber = SubscriberFactory()
    delivery = DeliveryFactory(subscriber=subscriber)

    values = digest_values(delivery=delivery, count=1)

    for name in ("manage_url", "unsubscribe_url", "web_url"):
        assert values[name].startswith(settings.SITE_URL + "/")
        assert settings.SITE_URL.startswith("https://")
    token = values["unsubscribe_url"].rstrip("/").rsplit("/", 1)[1]
    assert token_subscriber(token=token, purpose=Purpose.UNSUBSCRIBE) == subscriber
    # An unsubscribe token is no manage token.
    assert token_subscriber(token=token, purpose=Purpose.MANAGE) is None
    assert token_delivery(token=values["web_url"].rstrip("/").rsplit("/", 1)[1]) == delivery
    assert values["count_label"] == "1 paper"
    assert digest_values(delivery=delivery, count=3)["count_label"] == "3 papers"


# --- the compiled digest against the templates -------------------------------------------------


XSS_TITLE = "<script>alert('xss')</script> & <img src=x onerror=alert(1)> \"quoted\""


XSS_ABSTRACT = '</p><iframe src="javascript:alert(1)"></iframe> <b>bold</b> 5 < 6 && 7 > 3'


def values(**overrides: str) -> dict[str, str]:
    base = {
        "subject": "Efficient quantization of large language models and 2 more papers for you",
        "intro": "3 papers new to you since your last digest, picked for your topics and interests.",
        "count_label": "3 papers",
        "period_label": "Monday 12 January",
        "email": "reader@example.org",
        "frequency_label": "daily",
        "manage_url": "https://digest.example.org/manage/abc:def/",
        "unsubscribe_url": "https://digest.example.org/unsubscribe/abc:ghi/",
        "web_url": "https://digest.example.org/digests/abc:jkl/",
        "site_url": "https://digest.example.org",
    }
    assert set(base) == set(DIGEST_SCALARS)
    return base | overrides


def item(**fields) -> PaperRow:
    base = {
        "title": "Efficient quantization of large language models",
        "url": "https://arxiv.org/abs/2401.00001",
        "abstract": "We quantize weights to four bits with little loss.",
        "authors": ["Ada Lovelace, Alan Turing"],
        "reasons": ["Mentions “quantization”", "Matches your topic: Efficiency & compression"],
        "topics": ["Efficiency & compression", "Language models"],
        "code_urls": ["https://github.com/example/quant"],
        "date": "21 November 2026",
        "more_url": "https://digest.example.org/feedback/7.11.sig/more/",
        "less_url": "https://digest.example.org/feedback/7.11.sig/less/",
    }
    return PaperRow(**(base | fields))


def slow(items: list[PaperRow], scalars: dict[str, str]) -> str:
    return inline_css(render_to_string("emails/digest.html", {**scalars, "items": items}))


def fast(items: list[PaperRow], scalars: dict[str, str]) -> str:
    return compiled_digest().html.render(items=items, values=scalars)


class _Tokens(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tokens: list[tuple] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tokens.append(("start", tag, tuple(attrs)))

    def handle_startendtag(self, tag, attrs) -> None:
        self.tokens.append(("start", tag, tuple(attrs)))

    def handle_endtag(self, tag) -> None:
        self.tokens.append(("end", tag))

    def handle_data(self, data) -> None:
        text = " ".join(data.split())
        if text:
            self.tokens.append(("text", text))

    def handle_comment(self, data) -> None:
        self.tokens.append(("comment", data))

    def handle_decl(self, decl) -> None:
        self.tokens.append(("decl", decl))


def html_tokens(document: str) -> list[tuple]:
    """The document as parsed HTML: tags with (unescaped) attributes, text with collapsed whitespace.

    Unlike comparing `html.unescape()` of both strings, an unescaped `<script>` in one of them would
    parse as a tag and make the two differ.
    """
    parser = _Tokens()
    parser.feed(document)
    parser.close()
    return parser.tokens


DIGESTS = {
    "plain": [item(), item(title="Second paper", url="https://arxiv.org/abs/2401.00002")],
    "xss": [
        item(
            title=XSS_TITLE,
            abstract=XSS_ABSTRACT,
            reasons=["Mentions “<b>x</b>”"],
            topics=["<i>t</i>"],
            more_url='https://x.org/"><script>alert(1)</script>&a=1',
        )
    ],
    "unicode": [
        item(
            title="Zoë\u2019s café: 東京 🚀 naïve Bayes — über alles",
            abstract="Ünïcödé abstract with emoji 😀 and math ∑ ≤ ∞.",
            authors=["Łukasz Kaiser, 李雷, Zoë O'Brien"],
            topics=["Speech & audio"],
        )
    ],
    "ampersands": [
        item(
            title="Q&A &amp; R&D &copy; &#169; &",
            url="https://example.org/search?a=1&b=2&c=&amp;",
            code_urls=["https://github.com/a/b?x=1&y=2"],
            abstract="A & B &lt; C",
        )
    ],
    "missing authors, no code, no reasons": [item(authors=[], code_urls=[], reasons=[], topics=[])],
    "mixed": [
        item(),
        item(more_url="https://digest.example.org/feedback/8.12.other/more/", number="9"),
        item(authors=[], code_urls=[]),
        item(title="Looks like a placeholder __pdph_title__ __pdslot_paper__", abstract="__pdph_url__"),
    ],
    "braces": [
        item(
            title="{0} {} {{title}} }{ {number!r:>3}",
            abstract="f(x) = {x : x > 0}",
            reasons=["Mentions “{1}”"],
            topics=["{}"],
            more_url="https://x.org/{2}/more/",
        )
    ],
    "no papers": [],
}


@pytest.mark.parametrize("name", list(DIGESTS))
def test_fast_path_equals_template_path(name: str) -> None:
    items = DIGESTS[name]
    scalars = values(intro=f"Digest “{name}” & <more>", email="o'brien+test@example.org")

    expected, actual = slow(items, scalars), fast(items, scalars)

    assert html_tokens(actual) == html_tokens(expected)


def test_fast_path_is_character_identical_without_quotes_or_empty_lists() -> None:
    """Identical but for the amount of whitespace lxml's pretty-printer puts between tags (the
    compiled template had fragment markers there)."""
    scalars = values()
    items = DIGESTS["plain"]

    def squeezed(html: str) -> str:
        return re.sub(r"\s+", " ", html)

    assert squeezed(fast(items, scalars)) == squeezed(slow(items, scalars))


@pytest.mark.parametrize("name", list(DIGESTS))
@pytest.mark.parametrize("template", ["emails/digest.txt", "emails/digest.subject.txt"])
def test_compiled_text_and_subject_are_identical_to_the_template(name: str, template: str) -> None:
    items = [replace(item, number=str(n)) for n, item in enumerate(DIGESTS[name], start=1)]
    scalars = values(intro=f"Digest “{name}” & <more>", email="o'brien+test@example.org")
    compiled = compiled_digest().text if template.endswith("digest.txt") else compiled_digest().subject

    expected = render_to_string(template, {**scalars, "items": items})

    assert compiled.render(items=items, values=scalars) == expected
    assert "<!--" not in expected  # no fragment markers outside compilation


def test_fast_path_equals_template_path_for_items_built_from_papers() -> None:
    """Real papers through PaperRowCache: non-ASCII and spaces in URLs are percent-encoded first."""
    papers = [
        PaperFactory(
            title="Ünïcode & <tags>",
            url="https://example.org/papers/café résumé?q=a b&r=1",
            github_url="https://github.com/zoë/répo",
            authors=[f"Author {n}" for n in range(9)],
        ),
        PaperFactory(url="", github_url="", authors=[], title="No link: search “quotes” & ampersands"),
    ]
    names = topic_names()
    items = [
        PaperRowCache(names).rows([Pick(paper=p, score=1.0, reasons=("Because",))], subscriber=READER)[0]
        for p in papers_by_ids(ids=[p.pk for p in papers])
    ]
    scalars = values()

    assert html_tokens(fast(items, scalars)) == html_tokens(slow(items, scalars))


def test_xss_payloads_are_escaped_in_html_and_verbatim_in_text() -> None:
    items = [item(title=XSS_TITLE, abstract=XSS_ABSTRACT, reasons=["<b>reason</b>"], authors=["<Evil> & Co"])]

    rendered = digest_render(items=items, values=values(), html=True)

    assert rendered.html is not None
    for payload in ("<script", "<img", "<iframe", "<b>", "<Evil>"):
        assert payload not in rendered.html
    assert "&lt;script&gt;alert(" in rendered.html
    assert "&lt;iframe src=" in rendered.html
    assert "&lt;Evil&gt; &amp; Co" in rendered.html
    # No element came out of the payloads.
    tags = {token[1] for token in html_tokens(rendered.html) if token[0] == "start"}
    assert not tags & {"script", "img", "iframe", "b"}
    # The text part is plain text: the payloads appear as written.
    assert XSS_TITLE in rendered.text
    assert XSS_ABSTRACT in rendered.text
    assert "<b>reason</b>" in rendered.text
    assert "&lt;" not in rendered.text and "&amp;" not in rendered.text


def test_placeholder_lookalikes_in_content_stay_text() -> None:
    title = "__pdph_title__ and __pdslot_reason__ and __pdph_unsubscribe_url__"
    html = fast([item(title=title)], values())

    assert title in html
    assert values()["unsubscribe_url"] in html


def test_digest_render_parts() -> None:
    items = DIGESTS["unicode"] + DIGESTS["plain"]

    html_part = digest_render(items=items, values=values(), html=True)
    text_only = digest_render(items=items, values=values(), html=False)

    assert html_part.subject == text_only.subject == values()["subject"]
    assert "\n" not in html_part.subject
    assert text_only.html is None
    assert html_part.text == text_only.text
    for n, each in enumerate(items, start=1):
        assert f"{n}. {each.title}" in html_part.text
        assert each.url in html_part.text
    assert "Unsubscribe: https://digest.example.org/unsubscribe/abc:ghi/" in html_part.text
    # CSS is inlined: the cards carry their style.
    assert re.search(r'<div class="paper" id="paper-1" style="[^"]+"', html_part.html)


# --- per-reader parts: feedback links, first digest --------------------------------------------


def test_a_digests_items_render_as_its_rows_do() -> None:
    """The email renders PaperRowCache.items (the shared row beside the reader's parts); the pages
    get rows with those parts copied in. Both give the same digest."""
    papers = papers_by_ids(ids=[PaperFactory().pk, PaperFactory(github_url="").pk, PaperFactory().pk])
    picks = [Pick(paper=p, score=1.0, reasons=(f"Reason {p.id}", "“Shared” & <reason>")) for p in papers]
    cache = PaperRowCache(topic_names())

    items, rows = cache.items(picks, subscriber=READER), cache.rows(picks, subscriber=READER)

    assert [item.row for item in items] == [
        replace(row, reasons=[], number="", more_url="", less_url="") for row in rows
    ]
    for html in (True, False):
        assert digest_render(items=items, values=values(), html=html) == digest_render(
            items=rows, values=values(), html=html
        )


def test_each_reader_gets_feedback_links_of_their_own_for_the_same_paper() -> None:
    (paper,) = papers_by_ids(ids=[PaperFactory().pk])
    ada, bob = SubscriberFactory(), SubscriberFactory()
    rows = PaperRowCache(topic_names())
    pick = Pick(paper=paper, score=1.0, reasons=("r",))

    (for_ada,), (for_bob,) = rows.rows([pick], subscriber=ada), rows.rows([pick], subscriber=bob)
    html_ada = digest_render(items=[for_ada], values=values(), html=True)
    html_bob = digest_render(items=[for_bob], values=values(), html=True)

    assert for_ada.more_url != for_bob.more_url
    for row, rendered, reader in ((for_ada, html_ada, ada), (for_bob, html_bob, bob)):
        assert row.more_url.endswith("/more/") and row.less_url.endswith("/less/")
        token = row.more_url.split("/feedback/")[1].split("/")[0]
        assert feedback_token_load(token=token) == (reader, paper.id)
        # The compiled paper is shared by the two digests; the links are each reader's.
        assert f'href="{row.more_url}"' in rendered.html and f'href="{row.less_url}"' in rendered.html
        assert f"More like this: {row.more_url}" in rendered.text
        assert f"Not for me: {row.less_url}" in rendered.text
    assert for_bob.more_url not in html_ada.html


def test_rows_say_when_a_paper_was_published_and_when_it_was_added() -> None:
    published = PaperFactory(published_at=datetime(2026, 3, 1, 23, tzinfo=UTC))
    last_year = PaperFactory(published_at=datetime(2025, 7, 14, 9, tzinfo=UTC))
    listed = PaperFactory(published_at=None)
    Paper.objects.update(ingested_at=datetime(2026, 11, 21, 8, tzinfo=UTC))
    rows = PaperRowCache(topic_names()).rows(
        [
            Pick(paper=p, score=1.0, reasons=())
            for p in papers_by_ids(ids=[published.pk, last_year.pk, listed.pk])
        ],
        subscriber=READER,
    )

    assert sorted(row.date for row in rows) == [
        "added 21 Nov",
        "published 1 Mar · added 21 Nov",
        "published 14 Jul 2025 · added 21 Nov",
    ]
    rendered = digest_render(items=rows, values=values(), html=True)
    assert "published 1 Mar · added 21 Nov" in rendered.text
    assert "published 1 Mar · added 21 Nov" in rendered.html


def test_a_first_digest_says_so_and_later_ones_speak_of_the_last_digest() -> None:
    subscriber = SubscriberFactory()

    first = digest_values(delivery=DeliveryFactory(subscriber=subscriber, first=True), count=3)
    later = digest_values(delivery=DeliveryFactory(subscriber=subscriber, period="p2"), count=3)

    # The window is by ingestion: "added", not "new papers of the last 7 days" (a paper added this
    # week may have been published months ago).
    assert "last digest" not in first["intro"]
    assert first["intro"] == (
        "Your first digest: 3 papers for your topics and interests, from those added in the last 7 days."
    )
    assert (
        later["intro"] == "3 papers new to you since your last digest, picked for your topics and interests."
    )
    assert "new papers" not in first["intro"] + later["intro"]


def test_rows_are_kept_across_chunks_but_never_stale() -> None:
    """A worker's chunks share their papers' rows; a paper changed since (title, stars, a topic's
    name, the zone of its dates) gets a row of its own."""
    topic = Topic.objects.create(name="Speech & audio", slug="speech-audio-kept")
    (paper,) = papers_by_ids(ids=[PaperFactory(github_url="https://github.com/a/b", github_stars=5).pk])
    paper = replace(paper, topic_ids=(topic.pk,), topic_scores=(1.0,))
    names = topic_names()

    def row(of: CandidatePaper, topics: dict[int, str] = names) -> PaperRow:
        return PaperRowCache(topics).items([Pick(paper=of, score=1.0, reasons=())], subscriber=READER)[0].row

    first = row(paper)
    assert row(paper) is first  # another chunk, the same paper: the same row
    assert row(replace(paper, title="A new title")).title == "A new title"
    assert row(replace(paper, github_stars=7000)).stars == ["7,000"]
    assert row(paper, names | {topic.pk: "Speech"}).topics == ["Speech"]
    late = paper.ingested_at.replace(hour=23, minute=30)
    in_utc = replace(paper, ingested_at=late, published_at=None)
    in_tokyo = replace(in_utc, ingested_at=late.astimezone(ZoneInfo("Asia/Tokyo")))
    assert row(in_utc).date != row(in_tokyo).date  # equal instants, another day in Tokyo
    assert row(paper) == first


# --- the stored CSS inlining of the HTML template (digest_templates.INLINED_FILE) ---


def test_the_stored_inlining_is_the_current_templates():
    # If this fails, the digest's HTML template or CSS changed: run `manage.py store_inlined_digest`
    # and commit newsletter/services/digest_inlined.json.
    marked = digest_templates._marked(digest_templates._HTML_TEMPLATE)
    stored = json.loads(digest_templates.INLINED_FILE.read_text(encoding="utf-8"))
    assert stored["source"] == hashlib.sha256(marked.encode()).hexdigest()
    assert stored["html"] == inline_css(marked)


def test_compiling_reads_the_stored_inlining_without_premailer(monkeypatch: pytest.MonkeyPatch):
    def no_premailer(html: str) -> str:
        raise AssertionError("premailer ran")

    monkeypatch.setattr(digest_templates, "inline_css", no_premailer)
    compiled = digest_templates.CompiledTemplate(digest_templates._HTML_TEMPLATE, html=True)
    assert compiled.shell.fill([str(n) for n in range(len(compiled._shell_fields))])


def test_another_template_source_is_inlined_as_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(digest_templates, "INLINED_FILE", tmp_path / "inlined.json")
    html = "<html><head><style>p { color: red }</style></head><body><p>x</p></body></html>"
    assert digest_templates._inlined(html) == inline_css(html)  # no file
    call_command("store_inlined_digest", stdout=io.StringIO())
    assert digest_templates._inlined(html) == inline_css(html)  # a file made from another source
    marked = digest_templates._marked(digest_templates._HTML_TEMPLATE)
    assert digest_templates._inlined(marked) == inline_css(marked)  # the file the command wrote
