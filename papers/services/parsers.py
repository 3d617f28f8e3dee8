"""Parsers for the three paper sources, auto-detected by content (records.py: what they produce).

Each parser turns raw bytes into `PaperRecord`s plus `Rejection`s (one bad record never spoils
the rest); input that cannot be read at all raises `ParseError` naming the position.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from xml.etree.ElementTree import ParseError as XMLParseError

from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from papers.services.records import (
    SOURCE_ARXIV,
    SOURCE_HUGGINGFACE,
    SOURCE_LISTING,
    PaperRecord,
    ParseError,
    ParseResult,
    RecordInvalid,
    Rejection,
    clean_text,
    clean_url,
    make_record,
    normalize_arxiv_id,
)

# --- decoding and detection ----------------------------------------------------------------


def decode(data: bytes) -> str:
    """Strict UTF-8 (a BOM is allowed); the error names the line and byte offset."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ParseError(
            f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})",
            f"line {line}",
        ) from None


def detect_format(text: str) -> str:
    head = text.lstrip()[:2048]
    if not head:
        raise ParseError("the input is empty")
    if head[0] in "[{":
        return SOURCE_HUGGINGFACE
    if head[0] == "<":
        lowered = head.lower()
        if "<html" in lowered or "<!doctype html" in lowered or "<body" in lowered:
            raise ParseError("this is an HTML page, not an Atom feed, JSON or a paper listing")
        return SOURCE_ARXIV
    return SOURCE_LISTING


def parse(data: bytes) -> ParseResult:
    """Parse any supported input; the format is detected from the content, not the name."""
    text = decode(data)
    fmt = detect_format(text)
    parser = {
        SOURCE_LISTING: parse_listing,
        SOURCE_HUGGINGFACE: parse_huggingface,
        SOURCE_ARXIV: parse_arxiv_atom,
    }[fmt]
    return parser(text)


def _collect(
    result: ParseResult, where: str, build: Callable[..., PaperRecord], /, *args: object, **kwargs: object
) -> None:
    """Add build(*args, **kwargs) to the records, or its RecordInvalid reason to the rejections."""
    try:
        result.records.append(build(*args, **kwargs))
    except RecordInvalid as exc:
        result.rejections.append(Rejection(where, str(exc)))


# --- (1) plain-text listing ----------------------------------------------------------------

# Page furniture of the Hugging Face papers page that the listing format carries in its header.
LISTING_BOILERPLATE = {
    "new",
    "get trending papers in your email inbox!",
    "subscribe",
    "byak and the research community",
}
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_LISTING_DATE = re.compile(
    r"^({})[a-z]*\.?\s+([0-9]{{1,2}})(?:,?\s+([0-9]{{4}}))?$".format("|".join(_MONTHS)), re.I
)
# A title is one short line; an abstract is prose. Anything between is judged by the next line.
_TITLE_MAX_CHARS = 300
_ABSTRACT_MIN_CHARS = 200


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _paragraphs(text: str) -> Iterator[tuple[int, str]]:
    """Yield (first line number, paragraph) for blank-line separated paragraphs."""
    start, lines = 0, []
    # Only CR/LF end a line: str.splitlines() would also break at form feeds and U+2028 inside a
    # title, and count lines differently from decode() and editors.
    for number, line in enumerate(_LINE_BREAK.split(text), start=1):
        if line.strip():
            if not lines:
                start = number
            lines.append(line.strip())
        elif lines:
            yield start, "\n".join(lines)
            lines = []
    if lines:
        yield start, "\n".join(lines)


def _listing_date(paragraph: str, today: date) -> date | None:
    match = _LISTING_DATE.match(paragraph.strip())
    if not match:
        return None
    month = _MONTHS.index(match.group(1)[:3].lower()) + 1
    day = int(match.group(2))
    # "Mar 14" with no year means the most recent Mar 14, not a future one; "Feb 29" the most
    # recent one, up to eight years back (1900 and 2100 are not leap years).
    years = [int(match.group(3))] if match.group(3) else range(today.year, today.year - 9, -1)
    for year in years:
        try:
            found = date(year, month, day)
        except ValueError:
            continue
        if match.group(3) or found <= today:
            return found
    return None


def _looks_like_title(paragraph: str) -> bool:
    return "\n" not in paragraph and len(paragraph) <= _TITLE_MAX_CHARS


def _looks_like_abstract(paragraph: str) -> bool:
    return len(paragraph) >= _ABSTRACT_MIN_CHARS or not _looks_like_title(paragraph)


def parse_listing(text: str) -> ParseResult:
    result = ParseResult(format=SOURCE_LISTING)
    today = timezone.now().date()
    listed_on: date | None = None
    pending: tuple[int, str] | None = None  # (line, title) waiting for its abstract

    def reject_pending() -> None:
        if pending:
            result.rejections.append(
                Rejection(f"line {pending[0]}", f"title {pending[1][:60]!r} has no abstract")
            )

    for line, paragraph in _paragraphs(text):
        if paragraph.strip().lower() in LISTING_BOILERPLATE:
            continue
        day = _listing_date(paragraph, today)
        if day:
            reject_pending()
            pending, listed_on = None, day
            continue
        if pending is None:
            if _looks_like_title(paragraph):
                pending = (line, paragraph)
            else:
                result.rejections.append(Rejection(f"line {line}", "abstract without a title"))
            continue
        if not _looks_like_abstract(paragraph):
            # Two title-like lines in a row: the first one lost its abstract.
            reject_pending()
            pending = (line, paragraph)
            continue
        title_line, title = pending
        pending = None
        published = datetime(*listed_on.timetuple()[:3], tzinfo=UTC) if listed_on else None
        position = f"line {title_line}"
        _collect(
            result,
            position,
            make_record,
            title=title,
            abstract=paragraph,
            source=SOURCE_LISTING,
            position=position,
            published_at=published,
        )
    reject_pending()
    if not result.records and not result.rejections:
        raise ParseError("no papers found (expected title and abstract paragraphs)")
    return result


# --- (2) Hugging Face daily papers JSON ----------------------------------------------------


def _parse_timestamp(value: object, name: str) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise RecordInvalid(f"'{name}' must be a date string")
    try:
        parsed = parse_datetime(value.strip().replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None:
        raise RecordInvalid(f"'{name}' is not a date: {value!r:.40}")
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _hf_record(item: object, position: str) -> PaperRecord:
    if not isinstance(item, dict):
        raise RecordInvalid("item is not an object")
    paper = item.get("paper", item)
    if not isinstance(paper, dict):
        raise RecordInvalid("'paper' is not an object")
    raw_id = paper.get("id")
    if raw_id is not None and (isinstance(raw_id, bool) or not isinstance(raw_id, str | int)):
        raise RecordInvalid("'paper.id' must be a string")
    external_id = None
    if raw_id not in (None, ""):
        raw_id = str(raw_id).strip()
        if len(raw_id) > 60:
            raise RecordInvalid("'paper.id' is longer than 60 characters")
        external_id = normalize_arxiv_id(raw_id) or f"hf:{raw_id}"
    authors = paper.get("authors") or []
    if not isinstance(authors, list):
        raise RecordInvalid("'paper.authors' must be a list")
    names = [a.get("name") if isinstance(a, dict) else a for a in authors]
    names = [n for n in names if n is not None]
    github = paper.get("githubRepo") or item.get("githubRepo") or ""
    stars = paper.get("githubStars", item.get("githubStars"))
    url = f"https://huggingface.co/papers/{external_id.removeprefix('hf:')}" if external_id else ""
    return make_record(
        title=paper.get("title", item.get("title")),
        abstract=paper.get("summary", item.get("summary")),
        source=SOURCE_HUGGINGFACE,
        position=position,
        external_id=external_id,
        authors=names,
        published_at=_parse_timestamp(paper.get("publishedAt", item.get("publishedAt")), "publishedAt"),
        url=url,
        upvotes=paper.get("upvotes", item.get("upvotes")),
        github_url=github,
        github_stars=stars,
    )


def parse_huggingface(text: str) -> ParseResult:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(f"invalid JSON: {exc.msg}", f"line {exc.lineno}, column {exc.colno}") from None
    except ValueError as exc:
        # e.g. an integer of more than 4300 digits (sys.get_int_max_str_digits()).
        raise ParseError(f"invalid JSON: {exc}") from None
    except RecursionError:
        raise ParseError("JSON is nested too deeply") from None
    if isinstance(data, dict):
        # Accept a single paper object as well as the API's list.
        items = data.get("papers") if isinstance(data.get("papers"), list) else [data]
    elif isinstance(data, list):
        items = data
    else:
        raise ParseError("JSON must be a list of papers or a paper object")
    result = ParseResult(format=SOURCE_HUGGINGFACE)
    for index, item in enumerate(items, start=1):
        position = f"item {index}"
        _collect(result, position, _hf_record, item, position)
    if not result.records and not result.rejections:
        raise ParseError("the JSON list is empty")
    return result


# --- (3) arXiv API Atom feed ---------------------------------------------------------------

ATOM = "{http://www.w3.org/2005/Atom}"
_ARXIV_ABS_URL = re.compile(r"arxiv\.org/abs/(.+)$")


def _text(element, tag: str) -> str | None:
    child = element.find(ATOM + tag)
    if child is None:
        return None
    return "".join(child.itertext())


def _arxiv_record(entry, position: str) -> PaperRecord:
    raw_id = (_text(entry, "id") or "").strip()
    match = _ARXIV_ABS_URL.search(raw_id)
    external_id = normalize_arxiv_id(match.group(1)) if match else None
    url = ""
    for link in entry.findall(ATOM + "link"):
        if link.get("rel", "alternate") == "alternate" and link.get("type", "text/html") == "text/html":
            # A link that is not http(s) (javascript:, data:, garbage) must not cost the paper its URL.
            url = clean_url(link.get("href", "")) or url
    authors = [_text(a, "name") or "" for a in entry.findall(ATOM + "author")]
    return make_record(
        title=_text(entry, "title"),
        abstract=_text(entry, "summary"),
        source=SOURCE_ARXIV,
        position=position,
        external_id=external_id,
        authors=authors,
        published_at=_parse_timestamp(_text(entry, "published"), "published"),
        url=url or (f"https://arxiv.org/abs/{external_id}" if external_id else ""),
    )


def parse_arxiv_atom(text: str) -> ParseResult:
    try:
        root = SafeET.fromstring(text)
    except XMLParseError as exc:
        line, column = exc.position
        message = str(exc).split(": line ")[0]  # expat appends the position we report separately
        raise ParseError(f"malformed XML ({message})", f"line {line}, column {column + 1}") from None
    except DefusedXmlException as exc:
        raise ParseError(f"unsafe XML refused ({type(exc).__name__})") from None
    if root.tag != ATOM + "feed":
        raise ParseError(f"XML root element is <{root.tag.split('}')[-1]}>, not an Atom <feed>")
    result = ParseResult(format=SOURCE_ARXIV)
    for index, entry in enumerate(root.findall(ATOM + "entry"), start=1):
        entry_id = _text(entry, "id") or ""
        if "/api/errors" in entry_id:
            # The arXiv API reports a bad query as a feed with a single error entry.
            raise ParseError(f"arXiv API error: {clean_text(_text(entry, 'summary') or '')}")
        position = f"entry {index}"
        _collect(result, position, _arxiv_record, entry, position)
    return result
