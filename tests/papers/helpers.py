"""Reading the shipped inputs independently of the parsers, so tests do not grade code by itself."""

from __future__ import annotations

import re
from pathlib import Path

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
