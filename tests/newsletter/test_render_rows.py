"""What a digest row, the overview, the subject and the colour schemes show (newsletter.services.render
and the digest templates), from the Hugging Face fixture through the real ingest."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from django.test import Client
from django.utils import timezone

from newsletter.services.digest_templates import PaperRow, digest_render
from newsletter.services.render import SUBJECT_CHARS, digest_email, shorten, subject
from newsletter.services.tokens import Purpose, link
from tests.newsletter.hf_digest import hf_digest
from tests.newsletter.test_render import item, values

pytestmark = pytest.mark.django_db

GMAIL_CLIPS_AT = 102 * 1024  # Gmail shows "[Message clipped]" past 102 KB of HTML
DPO_ABSTRACT_END = "substantially simpler to implement and train."


class _Links(HTMLParser):
    """Every <a href>, every element id, and the text of each link."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.ids: list[str] = []
        self.texts: dict[str, str] = {}
        self._open: str | None = None

    def handle_starttag(self, tag, attrs) -> None:
        attributes = dict(attrs)
        if "id" in attributes:
            self.ids.append(attributes["id"])
        if tag == "a":
            self.hrefs.append(attributes["href"])
            self._open = attributes["href"]

    def handle_data(self, data) -> None:
        if self._open is not None:
            self.texts[self._open] = self.texts.get(self._open, "") + data

    def handle_endtag(self, tag) -> None:
        if tag == "a":
            self._open = None


def links(html: str) -> _Links:
    parser = _Links()
    parser.feed(html)
    return parser


def parts(message) -> tuple[str, str]:
    return message.body, message.alternatives[0][0]


def row_of(text: str, title: str) -> str:
    """One paper's block of the text part (from its numbered title to the next blank line + number)."""
    start = text.index(title, text.index(title) + len(title))  # the second time: the row, not the overview
    end = re.search(r"\n\n\d+\. ", text[start:])
    return text[start : start + end.start()] if end else text[start:]


# --- rows ----------------------------------------------------------------------------------------


def test_rows_from_hugging_face_json_show_authors_links_code_stars_and_upvotes() -> None:
    delivery, picks = hf_digest()

    text, html = parts(digest_email(delivery=delivery, picks=picks))

    anchors = links(html)
    dpo = row_of(text, "Direct Preference Optimization")
    # Six authors: three, then "et al.".
    assert "Rafael Rafailov, Archit Sharma, Eric Mitchell et al." in html
    assert "   Rafael Rafailov, Archit Sharma, Eric Mitchell et al.\n" in dpo
    assert "Stefano Ermon" not in html + text
    # The arXiv abstract and PDF, the code with its stars, the upvotes.
    assert "https://arxiv.org/abs/2305.18290" in anchors.hrefs
    assert "https://arxiv.org/pdf/2305.18290" in anchors.hrefs
    assert anchors.texts["https://arxiv.org/pdf/2305.18290"] == "PDF"
    assert anchors.texts["https://github.com/eric-mitchell/direct-preference-optimization"] == "Code"
    assert "★ 2,714 stars" in html and "▲ 58 upvotes" in html
    assert "   arXiv: https://arxiv.org/abs/2305.18290\n   PDF: https://arxiv.org/pdf/2305.18290\n" in dpo
    assert "   Code: https://github.com/eric-mitchell/direct-preference-optimization\n" in dpo
    assert "   2,714 GitHub stars\n   58 upvotes\n" in dpo
    # No title search where the arXiv id is known.
    assert not any("arxiv.org/search" in href for href in anchors.hrefs)


def test_a_paper_without_code_has_no_code_link_and_dates_say_what_they_are() -> None:
    delivery, picks = hf_digest()
    added = timezone.now()

    text, html = parts(digest_email(delivery=delivery, picks=picks))

    electra = row_of(text, "ELECTRA: Pre-training Text Encoders")
    assert "Code:" not in electra and "stars" not in electra
    assert "   7 upvotes\n" in electra
    # Published four years before it was added: the row says both, named.
    dated = f"published 23 Mar 2020 · added {added.day} {added:%b}"
    assert f"   {dated}\n" in electra
    assert dated in html


def test_the_email_shows_two_or_three_lines_of_abstract_and_the_web_copy_all_of_it() -> None:
    delivery, picks = hf_digest()
    token_url = link(subscriber=delivery.subscriber, purpose=Purpose.DIGEST, object_id=delivery.pk)

    text, html = parts(digest_email(delivery=delivery, picks=picks))
    page = Client().get(token_url.removeprefix("https://digest.example.org")).content.decode()

    dpo = row_of(text, "Direct Preference Optimization")
    abstract = next(line.strip() for line in dpo.splitlines() if line.startswith("   While large-scale"))
    assert 120 <= len(abstract) <= 240 and abstract.endswith("…")
    assert DPO_ABSTRACT_END not in html + text
    assert DPO_ABSTRACT_END in page
    assert "Rafael Rafailov, Archit Sharma, Eric Mitchell et al." in page
    assert 'href="https://arxiv.org/pdf/2305.18290"' in page
    assert 'href="#paper-1"' in page and 'id="paper-1"' in page


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("One. Two three four five. Six seven eight nine ten eleven.", 40, "One. Two three four five. …"),
        ("alpha beta gamma delta epsilon zeta eta theta", 20, "alpha beta gamma…"),
        ("short enough", 20, "short enough"),
        ("A title that runs on and on", 16, "A title that..."),
    ],
)
def test_shorten_cuts_at_a_sentence_else_a_word(text: str, limit: int, expected: str) -> None:
    ellipsis = "..." if expected.endswith("...") else "…"

    assert shorten(text, limit, ellipsis=ellipsis) == expected
    assert len(expected) <= limit


# --- overview, subject, intro --------------------------------------------------------------------


def test_the_overview_links_to_every_row_and_the_text_part_numbers_the_titles() -> None:
    delivery, picks = hf_digest()

    text, html = parts(digest_email(delivery=delivery, picks=picks))

    anchors = links(html)
    fragments = [href for href in anchors.hrefs if href.startswith("#")]
    assert fragments == [f"#paper-{n}" for n in range(1, len(picks) + 1)]
    for number, pick in enumerate(picks, start=1):
        assert f"paper-{number}" in anchors.ids
        assert anchors.texts[f"#paper-{number}"] == pick.paper.title
    overview = text.split("In this digest:\n", 1)[1].split("\n\n", 1)[0]
    assert overview.splitlines() == [f"{n}. {pick.paper.title}" for n, pick in enumerate(picks, start=1)]


def speech(title: str, *topics: str) -> PaperRow:
    return item(title=title, topics=list(topics))


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (
            [speech("Ask2Mask: Guided Data Selection for Masked Speech Modeling", "Speech & audio")]
            + [speech(f"Speech paper {n}", "Speech & audio", "Language models") for n in range(9)],
            "Ask2Mask and 9 more papers on speech & audio",
        ),
        # No topic most papers share: none is named.
        (
            [speech("Ask2Mask: Guided Data Selection", "Speech & audio")]
            + [speech(f"Other {n}", f"Topic {n}") for n in range(3)],
            "Ask2Mask and 3 more papers for you",
        ),
        (
            [speech("LoRA: Low-Rank Adaptation", "Efficiency & compression")],
            "LoRA, a paper on efficiency & compression",
        ),
        ([speech("A title", "RAG"), speech("Another", "RAG")], "A title and 1 more paper on RAG"),
    ],
)
def test_the_subject_names_the_lead_paper_and_the_topic(rows: list[PaperRow], expected: str) -> None:
    assert subject(rows) == expected


TITLE = "Scaling Laws for Sparsely Activated Mixture of Experts Language Models Trained on Web Text"


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        # A short topic fits beside most of the title.
        ("RAG", "Scaling Laws for Sparsely Activated... and 11 more papers on RAG"),
        # A long one would leave too little of the title: the title wins.
        ("Language models", "Scaling Laws for Sparsely Activated... and 11 more papers for you"),
    ],
)
def test_a_long_lead_title_is_cut_and_the_subject_stays_short_and_plain(topic: str, expected: str) -> None:
    line = subject([speech(TITLE, topic)] * 12)

    assert line == expected
    assert len(line) <= SUBJECT_CHARS
    assert line.isascii()  # sent as it is: no RFC 2047 encoding


def test_the_digest_subject_and_intro_of_the_fixture() -> None:
    delivery, picks = hf_digest(first=True)

    message = digest_email(delivery=delivery, picks=picks)

    assert message.subject.startswith("Direct Preference Optimization and 5 more papers")
    assert (
        "Your first digest: 6 papers for your topics and interests, from those added in the last 7 days."
        in (message.body)
    )
    assert "new papers" not in message.body


# --- size and colour schemes ---------------------------------------------------------------------


def test_a_twenty_paper_digest_stays_under_gmails_clipping_limit() -> None:
    """Long titles, many authors, full rows: the HTML part (what Gmail measures) stays under 102 KB."""
    rows = [
        item(
            title=f"Paper {n}: " + "a rather long title about scaling sparse mixture-of-experts models " * 2,
            abstract="x" * 240,
            authors=["Ada Lovelace, Alan Turing, Grace Hopper et al."],
            reasons=[
                "Matches your topic: Efficiency & compression",
                "Mentions “quantization”",
                "Like “A liked paper”",
            ],
            topics=["Efficiency & compression", "Language models", "Retrieval & RAG", "Safety & alignment"],
            code_urls=[f"https://github.com/an-organisation/a-repository-name-{n}"],
            stars=["12,345"],
            upvotes=["123"],
            arxiv_ids=[f"2403.{n:05d}"],
            more_url=f"https://digest.example.org/feedback/{n}.1234567.{'s' * 43}/more/",
            less_url=f"https://digest.example.org/feedback/{n}.1234567.{'s' * 43}/less/",
        )
        for n in range(20)
    ]

    rendered = digest_render(items=rows, values=values(), html=True)

    assert rendered.html.count('class="paper"') == 20
    assert len(rendered.html.encode()) < GMAIL_CLIPS_AT


def test_the_email_keeps_its_dark_mode_rules_in_a_style_block() -> None:
    delivery, picks = hf_digest()

    _, html = parts(digest_email(delivery=delivery, picks=picks))

    head = html.split("</head>", 1)[0]
    assert '<meta name="color-scheme" content="light dark">' in head
    style = head.split("<style>", 1)[1].split("</style>", 1)[0]
    dark = style.split("@media (prefers-color-scheme: dark)", 1)[1]
    # premailer kept the block, and its rules win over the inlined light colours.
    assert re.search(r"\.container \{\s*background: #161b22 !important", dark)
    assert re.search(r"\.abstract \{\s*color: #e6edf3 !important", dark)
    assert 'class="container"' in html and "background:#fff" in html.split('class="container"', 1)[1][:200]
