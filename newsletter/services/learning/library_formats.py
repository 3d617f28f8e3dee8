"""Reading a reader's library: pasted lines (arXiv ids and links, DOIs, titles), BibTeX, RIS.

BibTeX is read by `bibtexparser` (2.x, the maintained line; v1 is in maintenance mode) and RIS by
`rispy`; this module only maps their entries to `LibraryItem`s and says which line each came from.
Everything here is pure: no database. A whole input that cannot be used (too large, too many
entries, not text, nothing recognisable) raises `LibraryError`; one bad entry is a `Rejected` with
its line and reason (the form shows them all and nothing is imported, see learning.library).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import bibtexparser
import rispy
from bibtexparser.middlewares import LatexDecodingMiddleware
from bibtexparser.model import (
    DuplicateBlockKeyBlock,
    DuplicateFieldKeyBlock,
    MiddlewareErrorBlock,
    ParsingFailedBlock,
)

from papers.services.records import (
    MAX_ABSTRACT_CHARS,
    MAX_TITLE_CHARS,
    clean_text,
    normalize_arxiv_id,
    title_key,
)

MAX_ENTRIES = 500  # per upload (and per paste)
MAX_BYTES = 2 * 1024 * 1024  # per upload (and per paste)
MAX_DOI_CHARS = 255  # LibraryEntry.doi
TITLE_MIN_WORDS = 2  # a shorter line is more likely a typo than a title ("Segment Anything" passes)

FORMAT_LINES = "lines"
FORMAT_BIBTEX = "bibtex"
FORMAT_RIS = "ris"

# bibtexparser logs every block it cannot parse; the reader sees those as rejected lines instead.
logging.getLogger("bibtexparser").setLevel(logging.ERROR)


class LibraryError(ValueError):
    """The input as a whole cannot be imported; the message is for the reader."""


@dataclass(frozen=True)
class LibraryItem:
    """One entry as read, before it is matched against our papers. Plain values: a sign-up carries
    its items to the Celery task as dicts (dataclasses.asdict)."""

    line: int
    arxiv_id: str = ""
    doi: str = ""
    title: str = ""
    abstract: str = ""


@dataclass(frozen=True)
class Rejected:
    line: int
    reason: str


@dataclass
class ParsedLibrary:
    format: str
    items: list[LibraryItem] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def library_parse(*, data: bytes | str) -> ParsedLibrary:
    """Read pasted text or an uploaded file, whichever of the three formats it is."""
    if isinstance(data, bytes):
        if len(data) > MAX_BYTES:
            raise LibraryError(f"The file is {_megabytes(len(data))}; the limit is {_megabytes(MAX_BYTES)}.")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise LibraryError(
                "The file is not UTF-8 text. Export it as BibTeX or RIS with the UTF-8 encoding."
            ) from exc
    else:
        text = data
        if len(text.encode()) > MAX_BYTES:
            raise LibraryError(f"The text is larger than {_megabytes(MAX_BYTES)}.")
    text = "\n".join(text.splitlines())  # \r\n and \r as \n: RIS and line numbers count on it
    if _BIBTEX_START.search(text):
        parsed = _parse_bibtex(text)
    elif _RIS_START.search(text):
        parsed = _parse_ris(text)
    else:
        parsed = _parse_lines(text)
    count = len(parsed.items) + len(parsed.rejected)
    if count > MAX_ENTRIES:
        raise LibraryError(f"{count} entries: at most {MAX_ENTRIES} can be imported at once.")
    if not count:
        raise LibraryError(
            "No paper found: paste one arXiv id, link, DOI or title per line, or a .bib or .ris file."
        )
    return parsed


def _megabytes(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB"


# --- identifiers -------------------------------------------------------------------------------

_BIBTEX_START = re.compile(r"^\s*@[a-zA-Z]+\s*[{(]", re.MULTILINE)
_RIS_START = re.compile(r"^TY  - ", re.MULTILINE)
_ARXIV_LINK = re.compile(
    r"^https?://(?:www\.|export\.)?arxiv\.org/(?:abs|pdf|html)/(?P<id>.+?)(?:\.pdf)?/?(?:[?#].*)?$", re.I
)
_HF_LINK = re.compile(r"^https?://(?:www\.)?huggingface\.co/papers/(?P<id>[^/?#]+)", re.I)
_DOI_LINK = re.compile(r"^https?://(?:dx\.)?doi\.org/(?P<doi>10\..+)$", re.I)
_ARXIV_PREFIX = re.compile(r"^arxiv\s*:\s*(?P<id>\S+)$", re.I)
_DOI = re.compile(r"^(?:doi\s*:\s*)?(?P<doi>10\.\d{4,9}/\S+)$", re.I)
_ARXIV_DOI = re.compile(r"^10\.48550/arxiv\.(?P<id>.+)$", re.I)
_BARE_LINK = re.compile(r"^(?:www\.|export\.)?(?:arxiv\.org|huggingface\.co|(?:dx\.)?doi\.org)/", re.I)
_ARXIV_LIKE = re.compile(r"^\d{4}\.\d+")
_ARXIV_IN_TEXT = re.compile(r"arxiv\s*:\s*(\d{4}\.\d{4,5}(?:v\d+)?)", re.I)


class _Invalid(ValueError):
    """A reason to reject one entry."""


def _doi(raw: str) -> tuple[str, str]:
    """(arXiv id, DOI) of a DOI: arXiv's own DOIs (10.48550/arXiv.<id>) name an arXiv paper."""
    doi = raw.strip().rstrip(".,;").lower()
    arxiv = _ARXIV_DOI.match(doi)
    if arxiv:
        return _arxiv(arxiv.group("id")), ""
    if len(doi) > MAX_DOI_CHARS:
        raise _Invalid(f"the DOI is longer than {MAX_DOI_CHARS} characters")
    return "", doi


def _arxiv(raw: str) -> str:
    arxiv_id = normalize_arxiv_id(raw.strip().rstrip("/"))
    if arxiv_id is None:
        raise _Invalid(f"“{raw[:60]}” is not an arXiv id (they look like 2401.12345 or hep-th/9901001)")
    return arxiv_id


def _link(url: str) -> tuple[str, str] | None:
    """(arXiv id, DOI) of an arXiv, Hugging Face paper or DOI link; None for any other link."""
    for pattern in (_ARXIV_LINK, _HF_LINK):
        match = pattern.match(url)
        if match:
            return _arxiv(match.group("id")), ""
    match = _DOI_LINK.match(url)
    return _doi(match.group("doi")) if match else None


def _identifiers(line: str) -> tuple[str, str] | None:
    """(arXiv id, DOI) when the line is an id or a link, None when it should be a title."""
    if _BARE_LINK.match(line):
        line = f"https://{line}"
    if re.match(r"^https?://", line, re.I):
        found = _link(line)
        if found is None:
            raise _Invalid(
                "only arXiv, Hugging Face paper and DOI links can be read; paste the title instead"
            )
        return found
    for pattern, read in ((_ARXIV_PREFIX, _arxiv), (_DOI, _doi)):
        match = pattern.match(line)
        if match:
            found = read(match.group(1))
            return found if isinstance(found, tuple) else (found, "")
    arxiv_id = normalize_arxiv_id(line)
    if arxiv_id:
        return arxiv_id, ""
    if _ARXIV_LIKE.match(line):
        raise _Invalid(f"“{line[:60]}” is not an arXiv id (they look like 2401.12345)")
    return None


def _title(raw: str, *, required: bool) -> str:
    title = clean_text(raw.replace("{", "").replace("}", ""))
    if not title:
        if required:
            raise _Invalid("no title, arXiv id or DOI")
        return ""
    if len(title) > MAX_TITLE_CHARS:
        raise _Invalid(f"the title is {len(title)} characters long (limit {MAX_TITLE_CHARS})")
    if not title_key(title):
        raise _Invalid("the title has no letters or digits")
    if required and len(title.split()) < TITLE_MIN_WORDS:
        raise _Invalid("too short for a title: paste the whole title, an arXiv id or a DOI")
    return title


def _abstract(raw: str) -> str:
    abstract = clean_text(raw)
    if len(abstract) > MAX_ABSTRACT_CHARS:
        raise _Invalid(f"the abstract is {len(abstract)} characters long (limit {MAX_ABSTRACT_CHARS})")
    return abstract


# --- the three formats -------------------------------------------------------------------------


def _parse_lines(text: str) -> ParsedLibrary:
    parsed = ParsedLibrary(format=FORMAT_LINES)
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            found = _identifiers(line)
            if found:
                parsed.items.append(LibraryItem(line=number, arxiv_id=found[0], doi=found[1]))
            else:
                parsed.items.append(LibraryItem(line=number, title=_title(line, required=True)))
        except _Invalid as exc:
            parsed.rejected.append(Rejected(number, str(exc)))
    return parsed


def _item(
    line: int, *, title: str, abstract: str, doi: str, links: list[str], arxiv_id: str = ""
) -> LibraryItem:
    """An exported entry: its ids from the arXiv id, the DOI or the links, whichever it has."""
    found_doi = ""
    if doi:
        arxiv_from_doi, found_doi = _doi(doi)
        arxiv_id = arxiv_id or arxiv_from_doi
    for url in links:
        if arxiv_id:
            break
        found = _link(url.strip()) if url.strip().lower().startswith("http") else None
        arxiv_id = arxiv_id or (found[0] if found else "")
    title = _title(title, required=not (arxiv_id or found_doi))
    return LibraryItem(line=line, arxiv_id=arxiv_id, doi=found_doi, title=title, abstract=_abstract(abstract))


def _parse_bibtex(text: str) -> ParsedLibrary:
    parsed = ParsedLibrary(format=FORMAT_BIBTEX)
    library = bibtexparser.parse_string(text, append_middleware=[LatexDecodingMiddleware()])
    entries = list(library.entries)
    for block in library.failed_blocks:
        if isinstance(block, DuplicateBlockKeyBlock):
            entries.append(block.ignore_error_block)  # two entries with one citation key: both are fine
        else:
            parsed.rejected.append(Rejected(block.start_line + 1, _bibtex_failure(block)))
    for entry in sorted(entries, key=lambda e: e.start_line):
        fields = {f.key.lower(): str(f.value) for f in entry.fields}
        arxiv_id = ""
        eprint = fields.get("eprint", "")
        prefix = (fields.get("archiveprefix") or fields.get("eprinttype") or "").lower()
        if eprint and (prefix == "arxiv" or normalize_arxiv_id(eprint)):
            arxiv_id = normalize_arxiv_id(eprint) or ""
        if not arxiv_id:
            # Google Scholar writes journal = {arXiv preprint arXiv:1706.03762}.
            mention = _ARXIV_IN_TEXT.search(
                " ".join(fields.get(k, "") for k in ("journal", "note", "howpublished"))
            )
            arxiv_id = normalize_arxiv_id(mention.group(1)) or "" if mention else ""
        try:
            item = _item(
                entry.start_line + 1,
                title=fields.get("title", ""),
                abstract=fields.get("abstract", ""),
                doi=fields.get("doi", ""),
                links=[fields.get("url", "")],
                arxiv_id=arxiv_id,
            )
        except _Invalid as exc:
            parsed.rejected.append(Rejected(entry.start_line + 1, str(exc)))
        else:
            parsed.items.append(item)
    parsed.rejected.sort(key=lambda r: r.line)
    return parsed


def _bibtex_failure(block: ParsingFailedBlock) -> str:
    if isinstance(block, DuplicateFieldKeyBlock):
        return f"a field appears twice in the entry ({', '.join(sorted(block.duplicate_keys))})"
    if isinstance(block, MiddlewareErrorBlock):
        return "the entry's LaTeX could not be read"
    return "not valid BibTeX (an unclosed brace or quote?)"


class _NumberedRisParser(rispy.RisParser):
    """rispy's parser, noting the line each record starts on (rispy itself keeps no positions)."""

    LINE = "_line"

    def parse(self, text: str) -> list[dict]:
        self.line = 0
        self.started: list[int] = []

        def numbered():
            for self.line, line in enumerate(text.split("\n"), start=1):
                yield line

        return self.parse_lines(numbered())

    def _iter_till_start(self, lines) -> dict:
        record = super()._iter_till_start(lines)
        record[self.LINE] = self.line
        self.started.append(self.line)
        return record


def _parse_ris(text: str) -> ParsedLibrary:
    parsed = ParsedLibrary(format=FORMAT_RIS)
    parser = _NumberedRisParser(skip_unknown_tags=True)
    records = parser.parse(text)
    ended = {record[parser.LINE] for record in records}
    for line in parser.started:
        if line not in ended:
            parsed.rejected.append(Rejected(line, "the entry has no end line (ER  - )"))
    for record in records:
        line = record[parser.LINE]
        try:
            parsed.items.append(
                _item(
                    line,
                    title=record.get("title") or record.get("primary_title") or "",
                    abstract=record.get("abstract") or record.get("notes_abstract") or "",
                    doi=record.get("doi") or "",
                    links=list(record.get("urls") or []),
                )
            )
        except _Invalid as exc:
            parsed.rejected.append(Rejected(line, str(exc)))
    parsed.rejected.sort(key=lambda r: r.line)
    return parsed
