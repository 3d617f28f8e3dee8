"""What every parser produces: a `PaperRecord` (validated and normalized), a `Rejection` for a bad
record, a `ParseError` for input that cannot be read at all; and the normalizations dedupe relies on
(`title_key`, `normalize_arxiv_id`)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache

# Limits a stored field may reach; a record over a limit is rejected, never truncated.
MAX_TITLE_CHARS = 500
MAX_ABSTRACT_CHARS = 20_000
MAX_AUTHORS = 1_000
MAX_AUTHOR_CHARS = 200
MAX_URL_CHARS = 500

# Publication dates outside these bounds are typos or probes, never papers: arXiv opened in 1991, and
# nothing is announced more than a year ahead. PostgreSQL stores years Python cannot read (10000,
# 1 BC), so one such row broke every page and digest that read it. A copy of both lives in
# migrations/0005_published_dates_in_range.py, which repaired the rows stored before.
EARLIEST_PUBLISHED = datetime(1990, 1, 1, tzinfo=UTC)
MAX_PUBLISHED_AHEAD = timedelta(days=365)

SOURCE_LISTING = "listing"
SOURCE_HUGGINGFACE = "huggingface"
SOURCE_ARXIV = "arxiv"


class ParseError(Exception):
    """The input as a whole cannot be parsed; `position` says where (e.g. "line 3, column 9")."""

    def __init__(self, message: str, position: str = "") -> None:
        super().__init__(f"{position}: {message}" if position else message)
        self.reason = message
        self.position = position


@dataclass(frozen=True)
class PaperRecord:
    title: str
    abstract: str
    source: str
    position: str
    external_id: str | None = None
    authors: tuple[str, ...] = ()
    published_at: datetime | None = None
    url: str = ""
    upvotes: int | None = None
    github_url: str = ""
    github_stars: int | None = None


@dataclass(frozen=True)
class Rejection:
    position: str
    reason: str


@dataclass
class ParseResult:
    format: str
    records: list[PaperRecord] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


class RecordInvalid(ValueError):
    pass


# --- normalization -------------------------------------------------------------------------

_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_WHITESPACE = re.compile(r"\s+")
_TITLE_KEY_DROP = re.compile(r"[\W_]+")
_ARXIV_NEW = re.compile(r"^(\d{4}\.\d{4,5})(v\d+)?$")
_ARXIV_OLD = re.compile(r"^([a-z][a-z\-]*(?:\.[A-Z]{2})?/\d{7})(v\d+)?$")


def clean_text(value: str) -> str:
    """Collapse whitespace and drop control characters (PostgreSQL rejects NUL in text)."""
    return _WHITESPACE.sub(" ", _CONTROL_CHARS.sub("", value)).strip()


def title_key(title: str) -> str:
    """The dedupe key of a title: NFKC-folded, lowercase, punctuation and spacing removed."""
    folded = unicodedata.normalize("NFKC", title).casefold()
    return _TITLE_KEY_DROP.sub(" ", folded).strip()


# Letters NFKD does not split into a base letter and an accent.
_AUTHOR_LETTERS = str.maketrans({"ł": "l", "ø": "o", "đ": "d", "ð": "d", "þ": "th", "æ": "ae", "œ": "oe"})


@lru_cache(maxsize=65536)
def author_key(name: str) -> str:
    """The matching key of an author's name: accents, case, punctuation and spacing ignored, so a
    reader who follows "Lukasz Kaiser" gets papers by "Łukasz Kaiser" (and "Kaiser, L." is not him)."""
    decomposed = unicodedata.normalize("NFKD", name.casefold()).translate(_AUTHOR_LETTERS)
    letters = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _TITLE_KEY_DROP.sub(" ", letters).strip()


def normalize_arxiv_id(raw: str) -> str | None:
    """'2403.12345v2' -> '2403.12345'; None when it is not an arXiv id."""
    raw = raw.strip()
    for pattern in (_ARXIV_NEW, _ARXIV_OLD):
        match = pattern.match(raw)
        if match:
            return match.group(1)
    return None


def clean_url(value: object) -> str:
    if not isinstance(value, str):
        return ""
    value = value.strip()
    if len(value) > MAX_URL_CHARS or not re.match(r"^https?://[^\s<>\"]+$", value):
        return ""
    return value


def _non_negative_int(value: object, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > 2**31 - 1:
        raise RecordInvalid(f"'{name}' must be a non-negative whole number, got {value!r:.40}")
    return value


def _published_in_range(value: datetime | None) -> datetime | None:
    """The date in UTC (PostgreSQL refuses offsets past 15:59, e.g. +16:00), or RecordInvalid when it
    falls outside EARLIEST_PUBLISHED .. now + MAX_PUBLISHED_AHEAD."""
    if value is None:
        return None
    latest = datetime.now(UTC) + MAX_PUBLISHED_AHEAD
    bounds = f"{EARLIEST_PUBLISHED:%Y-%m-%d} to {latest:%Y-%m-%d}"
    try:
        value = value.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59:59-01:00 is in year 10000 in UTC
        raise RecordInvalid(f"publication date {value.isoformat()} is outside {bounds}") from None
    if not EARLIEST_PUBLISHED <= value <= latest:
        raise RecordInvalid(f"publication date {value.date().isoformat()} is outside {bounds}")
    return value


def make_record(
    *,
    title: object,
    abstract: object,
    source: str,
    position: str,
    external_id: str | None = None,
    authors: list[object] | tuple[object, ...] = (),
    published_at: datetime | None = None,
    url: object = "",
    upvotes: object = None,
    github_url: object = "",
    github_stars: object = None,
) -> PaperRecord:
    """Validate and normalize one record; raise RecordInvalid with a human reason."""
    if not isinstance(title, str):
        raise RecordInvalid("title is missing or not text")
    if not isinstance(abstract, str):
        raise RecordInvalid("abstract is missing or not text")
    title = clean_text(title)
    abstract = clean_text(abstract)
    if not title:
        raise RecordInvalid("title is empty")
    if not title_key(title):
        raise RecordInvalid("title has no letters or digits")
    if len(title) > MAX_TITLE_CHARS:
        raise RecordInvalid(f"title is {len(title)} characters long (limit {MAX_TITLE_CHARS})")
    if len(title_key(title)) > MAX_TITLE_CHARS:
        # NFKC and casefolding can lengthen a title ("ß" -> "ss"); Paper.title_key has the same limit.
        raise RecordInvalid(
            f"title is {len(title_key(title))} characters long once normalized (limit {MAX_TITLE_CHARS})"
        )
    if not abstract:
        raise RecordInvalid(f"paper {title[:60]!r} has no abstract")
    if len(abstract) > MAX_ABSTRACT_CHARS:
        raise RecordInvalid(f"abstract is {len(abstract)} characters long (limit {MAX_ABSTRACT_CHARS})")
    if len(authors) > MAX_AUTHORS:
        raise RecordInvalid(f"{len(authors)} authors (limit {MAX_AUTHORS})")
    names = []
    for author in authors:
        if not isinstance(author, str):
            raise RecordInvalid("an author name is not text")
        name = clean_text(author)
        if len(name) > MAX_AUTHOR_CHARS:
            raise RecordInvalid(f"an author name is {len(name)} characters (limit {MAX_AUTHOR_CHARS})")
        if name:
            names.append(name)
    return PaperRecord(
        title=title,
        abstract=abstract,
        source=source,
        position=position,
        external_id=external_id,
        authors=tuple(names),
        published_at=_published_in_range(published_at),
        url=clean_url(url),
        upvotes=_non_negative_int(upvotes, "upvotes"),
        github_url=clean_url(github_url),
        github_stars=_non_negative_int(github_stars, "githubStars"),
    )
