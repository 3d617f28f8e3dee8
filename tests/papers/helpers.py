"""Parser test inputs: the shipped files read independently of the parsers (so tests do not grade code
by itself), builders for small listing / Hugging Face JSON / arXiv Atom inputs, and the fuzz check."""

from __future__ import annotations

import json
import re
from pathlib import Path

from papers.services.parsers import parse
from papers.services.records import ParseError, ParseResult, title_key

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SAMPLE_DATA = Path(__file__).resolve().parents[2] / "papers" / "sample_data"
HF_JSON = FIXTURES / "hf_daily_papers.json"
ARXIV_ATOM = FIXTURES / "arxiv_atom.xml"
ARXIV_ERROR = FIXTURES / "arxiv_error.xml"

# A listing abstract is told from a title by length (200+ characters).
ABSTRACT = (
    "We study how transformer language models trained on web text acquire arithmetic skills, and show "
    "that a curriculum of synthetic problems makes small models far more accurate on multi-digit sums "
    "and products."
)

_DATE_LINE = re.compile(r"[A-Z][a-z]{2} \d{1,2}")


def listing_titles(path: Path) -> list[tuple[int, str]]:
    """(line number, title) of every listing in a sample file, read the naive way.

    The shipped files are a header, one date line, then strictly alternating title and abstract
    paragraphs; this relies on that layout, not on the parser's heuristics.
    """
    lines = path.read_text(encoding="utf-8").split("\n")
    paragraphs: list[tuple[int, str]] = []
    for number, line in enumerate(lines, start=1):
        if line.strip() and (number == 1 or not lines[number - 2].strip()):
            paragraphs.append((number, line.strip()))
    date_index = next(i for i, (_, text) in enumerate(paragraphs) if _DATE_LINE.fullmatch(text))
    body = paragraphs[date_index + 1 :]
    assert len(body) % 2 == 0, f"{path.name}: a title without an abstract"
    return body[0::2]


def naive_key(title: str) -> str:
    """Case- and punctuation-blind identity of a title."""
    return "".join(ch for ch in title.casefold() if ch.isalnum())


def sample_counts(paths: list[Path]) -> tuple[int, int]:
    """(number of listings, number of distinct titles) across the given sample files."""
    titles = [title for path in paths for _, title in listing_titles(path)]
    return len(titles), len({naive_key(t) for t in titles})


# --- small inputs in each format ---------------------------------------------------------------

ATOM_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">\n'


def listing(*paragraphs: str, date_line: str = "Mar 14") -> bytes:
    header = ["new", "Get trending papers in your email inbox!", "Subscribe", date_line]
    return "\n\n".join([*header, *paragraphs]).encode() + b"\n"


def hf_item(**paper: object) -> dict:
    defaults = {"id": "2401.00001", "title": "A good paper", "summary": ABSTRACT, "upvotes": 3}
    return {"paper": {**defaults, **paper}}


def hf(*items: object) -> bytes:
    return json.dumps(list(items)).encode()


def atom_entry(
    arxiv_id: str = "2401.00001v1", title: str = "A good paper", summary: str = ABSTRACT, extra: str = ""
) -> str:
    return (
        f"<entry><id>http://arxiv.org/abs/{arxiv_id}</id><published>2024-01-02T03:04:05Z</published>"
        f"<title>{title}</title><summary>{summary}</summary>"
        f"<author><name>Ada Lovelace</name></author>{extra}</entry>\n"
    )


def atom(*entries: str) -> bytes:
    return (ATOM_HEAD + "".join(entries) + "</feed>\n").encode()


def parse_outcome(data: bytes) -> str:
    """ "parsed" or "error"; anything but a ParseResult or a ParseError fails the (fuzz) test."""
    try:
        result = parse(data)
    except ParseError as exc:
        assert str(exc)
        return "error"
    assert isinstance(result, ParseResult)
    assert all(r.title and r.abstract and title_key(r.title) for r in result.records)
    return "parsed"
