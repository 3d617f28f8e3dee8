"""The compiled (fast) digest HTML against the template path it replaces.

The slow path is the reference: `render_to_string("emails/digest.html", context)` then `inline_css`.
The fast path (`CompiledDigest`) must give the same email. Two serialization details differ and are
normalized by `html_tokens`, which compares the documents as parsed HTML rather than as bytes:

- the fast path escapes with Django's `escape`, which writes `'` and `"` as `&#x27;` and `&quot;`;
  lxml (premailer's serializer) writes them as the characters. Both parse to the same text.
- lxml pretty-prints: an element whose children are all inside a `{% for %}` over an empty list is
  written `<ul></ul>` by the slow path and `<ul>\n\n</ul>` by the fast one. Whitespace between tags
  is not content.

Everything else, including non-ASCII text and attribute (URL) values, must be identical, and for
input with neither quotes nor empty lists the two are byte-identical.
"""

from __future__ import annotations

import re
from dataclasses import replace
from html.parser import HTMLParser

import pytest
from django.template.loader import render_to_string

from newsletter.services.candidates import Pick
from newsletter.services.digest_templates import DIGEST_SCALARS, PaperRow, compiled_digest, digest_render
from newsletter.services.emails import inline_css
from newsletter.services.render import PaperRowCache
from papers.selectors import papers_by_ids, topic_names
from tests.factories import PaperFactory

XSS_TITLE = "<script>alert('xss')</script> & <img src=x onerror=alert(1)> \"quoted\""
XSS_ABSTRACT = '</p><iframe src="javascript:alert(1)"></iframe> <b>bold</b> 5 < 6 && 7 > 3'


def values(**overrides: str) -> dict[str, str]:
    base = {
        "intro": "3 new papers matched your topics and interests since your last digest.",
        "count_label": "3 new papers",
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
    }
    return PaperRow(**(base | fields))


def slow(items: list[PaperRow], digest_values: dict[str, str]) -> str:
    return inline_css(render_to_string("emails/digest.html", {**digest_values, "items": items}))


def fast(items: list[PaperRow], digest_values: dict[str, str]) -> str:
    return compiled_digest().html.render(items=items, values=digest_values)


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
        item(title=XSS_TITLE, abstract=XSS_ABSTRACT, reasons=["Mentions “<b>x</b>”"], topics=["<i>t</i>"])
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
        item(authors=[], code_urls=[]),
        item(title="Looks like a placeholder __pdph_title__ __pdslot_paper__", abstract="__pdph_url__"),
    ],
    "no papers": [],
}


@pytest.mark.parametrize("name", list(DIGESTS))
def test_fast_path_equals_template_path(name: str) -> None:
    items = DIGESTS[name]
    digest_values = values(intro=f"Digest “{name}” & <more>", email="o'brien+test@example.org")

    expected, actual = slow(items, digest_values), fast(items, digest_values)

    assert html_tokens(actual) == html_tokens(expected)


def test_fast_path_is_character_identical_without_quotes_or_empty_lists() -> None:
    """Identical but for the amount of whitespace lxml's pretty-printer puts between tags (the
    compiled template had fragment markers there)."""
    digest_values = values()
    items = DIGESTS["plain"]

    def squeezed(html: str) -> str:
        return re.sub(r"\s+", " ", html)

    assert squeezed(fast(items, digest_values)) == squeezed(slow(items, digest_values))


@pytest.mark.parametrize("name", list(DIGESTS))
@pytest.mark.parametrize("template", ["emails/digest.txt", "emails/digest.subject.txt"])
def test_compiled_text_and_subject_are_identical_to_the_template(name: str, template: str) -> None:
    items = [replace(item, number=str(n)) for n, item in enumerate(DIGESTS[name], start=1)]
    digest_values = values(intro=f"Digest “{name}” & <more>", email="o'brien+test@example.org")
    compiled = compiled_digest().text if template.endswith("digest.txt") else compiled_digest().subject

    expected = render_to_string(template, {**digest_values, "items": items})

    assert compiled.render(items=items, values=digest_values) == expected
    assert "<!--" not in expected  # no fragment markers outside compilation


@pytest.mark.django_db
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
        PaperRowCache(names).rows([Pick(paper=p, score=1.0, reasons=("Because",))])[0]
        for p in papers_by_ids(ids=[p.pk for p in papers])
    ]
    digest_values = values()

    assert html_tokens(fast(items, digest_values)) == html_tokens(slow(items, digest_values))


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

    assert html_part.subject == text_only.subject == "3 new papers for you, Monday 12 January"
    assert "\n" not in html_part.subject
    assert text_only.html is None
    assert html_part.text == text_only.text
    for n, each in enumerate(items, start=1):
        assert f"{n}. {each.title}" in html_part.text
        assert each.url in html_part.text
    assert "Unsubscribe: https://digest.example.org/unsubscribe/abc:ghi/" in html_part.text
    # CSS is inlined: the cards carry their style.
    assert re.search(r'<div class="paper" style="[^"]+"', html_part.html)
