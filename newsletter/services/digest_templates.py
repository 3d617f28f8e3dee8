"""Fast digest rendering (used by render.py): templates and premailer run once per worker process,
not once per email.

premailer costs milliseconds per email and Django's template engine about one more, which together
would cap a worker at a few hundred digests per second. So `CompiledTemplate` renders a digest
template once with placeholder values and the `{% fragment %}` markers switched on (for the HTML part
it also inlines the CSS once, on the whole document, so every selector applies as usual), then cuts
the result at the markers into fragments: the shell, a paper, and the repeated parts of a paper.
Each email is then one-pass string substitution of (HTML-escaped) values into those fragments, and
the parts of a paper that do not depend on the reader are filled in once per worker process.

Rules for the digest templates that follow from this: everything repeated or optional sits in a
`{% for %}` over a list and inside a `{% fragment %}` of its own, and no `{% if %}` or filter may
depend on a paper or a subscriber. Rendered normally (no markers), a template gives the same email;
tests/newsletter/test_digest_render.py holds the two paths together.
"""

from __future__ import annotations

import html as html_module
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache

from django.template.loader import render_to_string

from newsletter.services.emails import RenderedEmail, inline_css, single_line
from newsletter.templatetags.digest_fragments import COMPILING

# Fragments inside a paper, each filled from one list of the item.
_ITEM_LISTS = {
    "authors": "authors",
    "reason": "reasons",
    "chip": "topics",
    "topics": "topics_line",
    "code": "code_urls",
    "stars": "stars",
    "upvotes": "upvotes",
    "arxiv": "arxiv_ids",
}
_ITEM_SCALARS = ("title", "url", "abstract", "date", "number", "more_url", "less_url")
DIGEST_SCALARS = (
    "subject", "intro", "count_label", "period_label", "email", "frequency_label", "manage_url",
    "unsubscribe_url", "web_url", "site_url",
)  # fmt: skip
# Fragments at the top level, each repeated once per paper: the overview's line and the row.
_ITEM_FRAGMENTS = ("toc", "paper")


def _placeholder(name: str) -> str:
    # Letters and underscores only: survives lxml's attribute (URL) escaping untouched.
    return f"__pdph_{name}__"


def _slot(name: str) -> str:
    return f"__pdslot_{name}__"


@dataclass(frozen=True)
class PaperRow:
    """One paper as the digest templates see it (`items` in their context)."""

    title: str
    url: str
    abstract: str
    authors: list[str] = field(default_factory=list)  # zero or one line
    reasons: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    code_urls: list[str] = field(default_factory=list)  # zero or one link
    stars: list[str] = field(default_factory=list)  # zero or one: the code's GitHub stars, "2,714"
    upvotes: list[str] = field(default_factory=list)  # zero or one: "58"
    arxiv_ids: list[str] = field(default_factory=list)  # zero or one: abstract and PDF links
    date: str = ""  # "published 11 Mar · added 3 Dec"
    number: str = ""  # position in the digest, "1", "2", ...
    # The reader's own "More like this" / "Not for me" links (newsletter.services.tokens.feedback_link).
    more_url: str = ""
    less_url: str = ""
    topics_line: list[str] | None = None  # zero or one line: the topics joined, for the text part

    def __post_init__(self) -> None:
        if self.topics_line is None:
            object.__setattr__(self, "topics_line", [", ".join(self.topics)] if self.topics else [])


_MARKED = re.compile(r"<!--(\w+)-->((?:(?!<!--).)*?)<!--/\1-->", re.S)  # innermost first
_TOKEN = re.compile(r"(__pd(?:ph|slot)_[a-z_]+?__)")

# What a paper's HTML depends on besides the paper itself: its position, why it was picked, and the
# reader's feedback links. Everything else of a paper is filled once per process.
_PER_DIGEST_SCALARS = ("number", "more_url", "less_url")
_PER_DIGEST = frozenset({*map(_placeholder, _PER_DIGEST_SCALARS), _slot("reason")})
# Papers whose per-paper parts are kept filled in; a worker's chunks share most papers.
_PAPER_CACHE_SIZE = 4096


class Segments:
    """A template text cut at its tokens once: literals at even positions, tokens at odd ones.
    Filling is a join, and inserted text is never scanned again, so a paper title that happens to
    look like a placeholder stays text."""

    __slots__ = ("parts",)

    def __init__(self, parts: list[str]) -> None:
        self.parts = parts

    @classmethod
    def parse(cls, text: str) -> Segments:
        return cls(_TOKEN.split(text))

    def fill(self, values: dict[str, str]) -> str:
        out = self.parts[:]
        for index in range(1, len(out), 2):
            out[index] = values[out[index]]
        return "".join(out)

    def fill_some(self, values: dict[str, str]) -> Segments:
        """Fill the tokens `values` has; the others stay tokens."""
        parts = [self.parts[0]]
        for index in range(1, len(self.parts), 2):
            token, literal = self.parts[index], self.parts[index + 1]
            if token in values:
                parts[-1] += values[token] + literal
            else:
                parts += [token, literal]
        return Segments(parts)


def _content_key(item: PaperRow) -> tuple:
    """Everything of a row but its per-digest parts; "\0" separates the lists."""
    return (
        item.title, item.url, item.abstract, item.date, *item.authors, "\0", *item.topics, "\0",
        *item.code_urls, "\0", *item.stars, "\0", *item.upvotes, "\0", *item.arxiv_ids,
    )  # fmt: skip


class CompiledTemplate:
    def __init__(self, template_name: str, *, html: bool) -> None:
        sample = PaperRow(
            **{name: _placeholder(name) for name in _ITEM_SCALARS},
            **{attribute: [_placeholder(name)] for name, attribute in _ITEM_LISTS.items()},
        )
        context = {name: _placeholder(name) for name in DIGEST_SCALARS} | {"items": [sample], COMPILING: True}
        rendered = render_to_string(template_name, context)
        if html:
            rendered = inline_css(rendered)
        # What django.utils.html.escape does, without its lazy-string wrapper (a call per value).
        self.escape = html_module.escape if html else str
        fragments: dict[str, str] = {}
        while match := _MARKED.search(rendered):
            name = match.group(1)
            if name in fragments:
                raise ValueError(f"{template_name}: {{% fragment {name!r} %}} is used twice")
            fragments[name] = match.group(2)
            rendered = rendered[: match.start()] + _slot(name) + rendered[match.end() :]
        self.fragments = {name: Segments.parse(text) for name, text in fragments.items()}
        self.shell = Segments.parse(rendered)
        self._repeated = [name for name in _ITEM_FRAGMENTS if name in self.fragments]
        self._papers: dict[tuple, tuple[Segments, ...]] = {}

    def _per_paper(self, item: PaperRow) -> tuple[Segments, ...]:
        """The per-paper fragments (_ITEM_FRAGMENTS) with everything but position and reasons filled
        in, cached by content (so never stale: a changed paper is a new key)."""
        key = _content_key(item)
        cached = self._papers.get(key)
        if cached is None:
            if len(self._papers) >= _PAPER_CACHE_SIZE:
                self._papers.clear()
            values = {
                _placeholder(name): self.escape(getattr(item, name))
                for name in _ITEM_SCALARS
                if _placeholder(name) not in _PER_DIGEST
            }
            for name, attribute in _ITEM_LISTS.items():
                if name in self.fragments and _slot(name) not in _PER_DIGEST:
                    values[_slot(name)] = self._repeat(name, getattr(item, attribute))
            cached = self._papers[key] = tuple(
                self.fragments[name].fill_some(values) for name in self._repeated
            )
        return cached

    def _repeat(self, name: str, values: list[str]) -> str:
        """The list fragment `name` once per value, escaped."""
        fragment = self.fragments[name]
        return "".join(fragment.fill({_placeholder(name): self.escape(v)}) for v in values)

    def render(self, *, items: list[PaperRow], values: dict[str, str]) -> str:
        escape_ = self.escape
        filled: list[list[str]] = [[] for _ in self._repeated]
        for item in items if self._repeated else ():
            per_digest = {_placeholder(name): escape_(getattr(item, name)) for name in _PER_DIGEST_SCALARS}
            if "reason" in self.fragments:
                per_digest[_slot("reason")] = self._repeat("reason", item.reasons)
            for parts, fragment in zip(filled, self._per_paper(item), strict=True):
                parts.append(fragment.fill(per_digest))
        shell = {_placeholder(name): escape_(values[name]) for name in DIGEST_SCALARS}
        for name, parts in zip(self._repeated, filled, strict=True):
            shell[_slot(name)] = "".join(parts)
        return self.shell.fill(shell)


@dataclass(frozen=True)
class DigestTemplates:
    subject: CompiledTemplate
    text: CompiledTemplate
    html: CompiledTemplate


@lru_cache(maxsize=1)
def compiled_digest() -> DigestTemplates:
    """One compilation per process. Restart workers after editing the digest templates."""
    return DigestTemplates(
        subject=CompiledTemplate("emails/digest.subject.txt", html=False),
        text=CompiledTemplate("emails/digest.txt", html=False),
        html=CompiledTemplate("emails/digest.html", html=True),
    )


def digest_render(*, items: list[PaperRow], values: dict[str, str], html: bool) -> RenderedEmail:
    """Subject, text and (if wanted) HTML of one digest, from the compiled templates."""
    compiled = compiled_digest()
    items = [item if item.number else replace(item, number=str(n)) for n, item in enumerate(items, start=1)]
    return RenderedEmail(
        subject=single_line(compiled.subject.render(items=items, values=values)),
        text=compiled.text.render(items=items, values=values),
        html=compiled.html.render(items=items, values=values) if html else None,
    )
