"""Fast digest rendering (used by render.py): templates and premailer run once per worker process,
not once per email.

premailer costs milliseconds per email and Django's template engine about one more, which together
would cap a worker at a few hundred digests per second. So `CompiledTemplate` renders a digest
template once with placeholder values and the `{% fragment %}` markers switched on (for the HTML part
it also inlines the CSS once, on the whole document, so every selector applies as usual), then cuts
the result at the markers into fragments: the shell, a paper, and the repeated parts of a paper.
The parts of a paper that do not depend on the reader are filled in once per worker process, leaving
a `Plan` of the reader's four (position, feedback links, reasons): literals between numbered fields.
Each email is then the pieces of those plans and the shell's, with (HTML-escaped) values, joined. The
email gets its papers as `DigestItem`s, the paper's shared row beside the reader's parts, not a row
per reader.

Rules for the digest templates that follow from this: everything repeated or optional sits in a
`{% for %}` over a list and inside a `{% fragment %}` of its own, and no `{% if %}` or filter may
depend on a paper or a subscriber. Rendered normally (no markers), a template gives the same email;
tests/newsletter/test_render.py holds the two paths together.
"""

from __future__ import annotations

import hashlib
import html as html_module
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import NamedTuple

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

    @cached_property
    def content_key(self) -> tuple:
        """Everything of the row but its per-digest parts; "\0" separates the lists. Kept on the row
        (a chunk's digests share their papers' rows), so the tuple is made once per paper."""
        return (
            self.title, self.url, self.abstract, self.date, *self.authors, "\0", *self.topics, "\0",
            *self.code_urls, "\0", *self.stars, "\0", *self.upvotes, "\0", *self.arxiv_ids,
        )  # fmt: skip


class DigestItem(NamedTuple):
    """A paper in one reader's digest: its row (shared by every digest of a chunk that carries the
    paper; its own per-digest fields are not read) and the reader's parts, without copying the row."""

    row: PaperRow
    number: str
    reasons: Sequence[str]
    more_url: str
    less_url: str

    @classmethod
    def of(cls, row: PaperRow) -> DigestItem:
        return cls(row, row.number, row.reasons, row.more_url, row.less_url)


_MARKED = re.compile(r"<!--(\w+)-->((?:(?!<!--).)*?)<!--/\1-->", re.S)  # innermost first
_TOKEN = re.compile(r"(__pd(?:ph|slot)_[a-z_]+?__)")

# What a paper's fragments depend on besides the paper itself: its position, why it was picked, and
# the reader's feedback links, in the order of the fields of their per-paper Plans.
# Everything else of a paper is filled once per process.
_PER_DIGEST_TOKENS = (*map(_placeholder, ("number", "more_url", "less_url")), _slot("reason"))
_PER_DIGEST = frozenset(_PER_DIGEST_TOKENS)
# Papers whose per-paper parts are kept filled in; a worker's chunks share most papers.
_PAPER_CACHE_SIZE = 4096
_REASON_CACHE_SIZE = 16384  # reasons repeat across readers ("Matches your topic: NLP")


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

    def plan(self, fields: Sequence[str]) -> Plan:
        """The text as a Plan whose fields are its tokens, numbered by their place in `fields`."""
        position = {token: number for number, token in enumerate(fields)}
        tokens, literals = self.parts[1::2], self.parts[2::2]
        return Plan(self.parts[0], tuple(zip([position[t] for t in tokens], literals, strict=True)))


class Plan:
    """A text cut at its fields once: the first literal, then (field number, literal) pairs. Filling
    appends the pieces to a list joined once per email, a third of the CPU of str.format on a paper's
    HTML (which scans the whole fragment for braces on every call)."""

    __slots__ = ("head", "pairs")

    def __init__(self, head: str, pairs: tuple[tuple[int, str], ...]) -> None:
        self.head = head
        self.pairs = pairs

    def extend(self, out: list[str], values: Sequence[str]) -> None:
        out.append(self.head)
        for number, literal in self.pairs:
            out.append(values[number])
            out.append(literal)

    def fill(self, values: Sequence[str]) -> str:
        out: list[str] = []
        self.extend(out, values)
        return "".join(out)


def _marked(template_name: str) -> str:
    """The template rendered once with placeholder values and its fragments marked."""
    sample = PaperRow(
        **{name: _placeholder(name) for name in _ITEM_SCALARS},
        **{attribute: [_placeholder(name)] for name, attribute in _ITEM_LISTS.items()},
    )
    context = {name: _placeholder(name) for name in DIGEST_SCALARS} | {"items": [sample], COMPILING: True}
    return render_to_string(template_name, context)


# premailer's pass over the marked HTML template is ~30 ms of a worker process's ~37 ms of compiling,
# paid in its first chunk; the same in every process. So it is stored, keyed by what it was made
# from: a different template (or settings that render it differently) finds no match and inlines as
# before. After editing the digest's HTML or CSS run `manage.py store_inlined_digest`.
INLINED_FILE = Path(__file__).with_name("digest_inlined.json")
_HTML_TEMPLATE = "emails/digest.html"


def _inlined(html: str) -> str:
    try:
        stored = json.loads(INLINED_FILE.read_text(encoding="utf-8"))
    except FileNotFoundError:
        stored = {}
    if stored.get("source") == hashlib.sha256(html.encode()).hexdigest():
        return stored["html"]
    return inline_css(html)


def inlined_store() -> None:
    """Write INLINED_FILE for the current HTML digest template."""
    html = _marked(_HTML_TEMPLATE)
    stored = {"source": hashlib.sha256(html.encode()).hexdigest(), "html": inline_css(html)}
    INLINED_FILE.write_text(json.dumps(stored, indent=0) + "\n", encoding="utf-8")


class CompiledTemplate:
    def __init__(self, template_name: str, *, html: bool) -> None:
        rendered = _marked(template_name)
        if html:
            rendered = _inlined(rendered)
        # What django.utils.html.escape does, without its lazy-string wrapper (a call per value).
        self.escape = html_module.escape if html else str
        self._html = html
        fragments: dict[str, str] = {}
        while match := _MARKED.search(rendered):
            name = match.group(1)
            if name in fragments:
                raise ValueError(f"{template_name}: {{% fragment {name!r} %}} is used twice")
            fragments[name] = match.group(2)
            rendered = rendered[: match.start()] + _slot(name) + rendered[match.end() :]
        self.fragments = {name: Segments.parse(text) for name, text in fragments.items()}
        self._repeated = [name for name in _ITEM_FRAGMENTS if name in self.fragments]
        # The shell's fields: the digest's values, then the repeated fragments' slots.
        self._shell_fields = (*map(_placeholder, DIGEST_SCALARS), *map(_slot, self._repeated))
        self.shell = Segments.parse(rendered).plan(self._shell_fields)
        reason = self.fragments.get("reason")
        self._reason = reason.plan([_placeholder("reason")]) if reason else None
        self._reasons: dict[str, str] = {}
        self._papers: dict[tuple, tuple[Plan, ...]] = {}

    def _per_paper(self, row: PaperRow) -> tuple[Plan, ...]:
        """The per-paper fragments (_ITEM_FRAGMENTS) with everything but position, reasons and
        feedback links filled in, as Plans of those (_PER_DIGEST_TOKENS); cached by content
        (so never stale: a changed paper is a new key)."""
        key = row.content_key
        cached = self._papers.get(key)
        if cached is None:
            if len(self._papers) >= _PAPER_CACHE_SIZE:
                self._papers.clear()
            values = {
                _placeholder(name): self.escape(getattr(row, name))
                for name in _ITEM_SCALARS
                if _placeholder(name) not in _PER_DIGEST
            }
            for name, attribute in _ITEM_LISTS.items():
                if name in self.fragments and _slot(name) not in _PER_DIGEST:
                    values[_slot(name)] = self._repeat(name, getattr(row, attribute))
            cached = self._papers[key] = tuple(
                self.fragments[name].fill_some(values).plan(_PER_DIGEST_TOKENS) for name in self._repeated
            )
        return cached

    def _repeat(self, name: str, values: list[str]) -> str:
        """The list fragment `name` once per value, escaped."""
        fragment = self.fragments[name]
        return "".join(fragment.fill({_placeholder(name): self.escape(v)}) for v in values)

    def _reason_lines(self, reasons: Sequence[str]) -> str:
        """The reason fragment once per reason, escaped; each reason's is kept (they repeat)."""
        if self._reason is None:
            return ""
        out = []
        for reason in reasons:
            filled = self._reasons.get(reason)
            if filled is None:
                if len(self._reasons) >= _REASON_CACHE_SIZE:
                    self._reasons.clear()
                filled = self._reasons[reason] = self._reason.fill([self.escape(reason)])
            out.append(filled)
        return "".join(out)

    def render(self, *, items: Sequence[PaperRow | DigestItem], values: dict[str, str]) -> str:
        escape_ = self.escape
        filled: list[list[str]] = [[] for _ in self._repeated]
        for item in items if self._repeated else ():
            if type(item) is not DigestItem:
                item = DigestItem.of(item)
            number, more_url, less_url = item.number, item.more_url, item.less_url
            if self._html:
                number, more_url, less_url = escape_(number), escape_(more_url), escape_(less_url)
            per_digest = (number, more_url, less_url, self._reason_lines(item.reasons))
            for parts, plan in zip(filled, self._per_paper(item.row), strict=True):
                plan.extend(parts, per_digest)
        return self.shell.fill(
            [*[escape_(values[name]) for name in DIGEST_SCALARS], *["".join(parts) for parts in filled]]
        )


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
        html=CompiledTemplate(_HTML_TEMPLATE, html=True),
    )


def digest_render(
    *, items: Sequence[PaperRow | DigestItem], values: dict[str, str], html: bool
) -> RenderedEmail:
    """Subject, text and (if wanted) HTML of one digest, from the compiled templates. An item without
    a number is numbered by its position."""
    compiled = compiled_digest()
    items = [item if type(item) is DigestItem else DigestItem.of(item) for item in items]
    items = [item if item.number else item._replace(number=str(n)) for n, item in enumerate(items, start=1)]
    return RenderedEmail(
        subject=single_line(compiled.subject.render(items=items, values=values)),
        text=compiled.text.render(items=items, values=values),
        html=compiled.html.render(items=items, values=values) if html else None,
    )
