"""Parsers, whatever the format: detection, input that cannot be read at all, size limits, markup, and
no input that makes the parser crash. Each format has its own file (test_parsers_listing/_hf/_arxiv)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from papers.services.parsers import detect_format, parse
from papers.services.records import (
    MAX_ABSTRACT_CHARS,
    MAX_TITLE_CHARS,
    SOURCE_ARXIV,
    SOURCE_HUGGINGFACE,
    SOURCE_LISTING,
    ParseError,
    title_key,
)
from tests.papers.helpers import (
    ABSTRACT,
    ARXIV_ATOM,
    HF_JSON,
    atom,
    atom_entry,
    hf,
    hf_item,
    listing,
    parse_outcome,
)

# --- format detection --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[{"paper": {}}]', SOURCE_HUGGINGFACE),
        ('\n\n  {"title": "x"}', SOURCE_HUGGINGFACE),
        ('<?xml version="1.0"?><feed/>', SOURCE_ARXIV),
        ("  <feed xmlns='http://www.w3.org/2005/Atom'/>", SOURCE_ARXIV),
        ("new\n\nSubscribe\n\nMar 14\n\nTitle\n\nAbstract", SOURCE_LISTING),
        ("Title first\n\n[1] an abstract that starts with a bracket on a later line", SOURCE_LISTING),
    ],
)
def test_detect_format_from_content(text: str, expected: str) -> None:
    assert detect_format(text) == expected


def test_format_is_detected_from_content_whatever_the_file_is_called(tmp_path: Path) -> None:
    misnamed = tmp_path / "papers.txt"
    misnamed.write_bytes(ARXIV_ATOM.read_bytes())

    assert parse(misnamed.read_bytes()).format == SOURCE_ARXIV
    assert parse(b"\xef\xbb\xbf" + HF_JSON.read_bytes()).format == SOURCE_HUGGINGFACE


# --- inputs that cannot be read at all ---------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"   \n\t\r\n  \n", b"\xef\xbb\xbf"], ids=["empty", "blank", "bom"])
def test_empty_input_is_a_parse_error(data: bytes) -> None:
    with pytest.raises(ParseError, match="empty"):
        parse(data)


@pytest.mark.parametrize(
    "page",
    [
        b"<!DOCTYPE html>\n<html><head><title>arXiv</title></head><body>Service unavailable</body></html>",
        b'\n  <html lang="en"><body><h1>502 Bad Gateway</h1></body></html>',
        b'<?xml version="1.0"?>\n<html xmlns="http://www.w3.org/1999/xhtml"><body/></html>',
    ],
    ids=["doctype", "bare", "xhtml"],
)
def test_html_instead_of_a_feed_is_refused(page: bytes) -> None:
    with pytest.raises(ParseError, match="HTML page"):
        parse(page)


def test_non_utf8_bytes_name_line_and_offset() -> None:
    data = listing("Caf\u00e9 society", ABSTRACT).replace("Caf\u00e9".encode(), "Caf\u00e9".encode("latin-1"))
    offset = data.index(b"\xe9")
    line = data[:offset].count(b"\n") + 1

    with pytest.raises(ParseError) as caught:
        parse(data)

    assert caught.value.position == f"line {line}"
    assert f"byte 0xe9 at offset {offset}" in caught.value.reason


# --- records rejected one by one, in any format ------------------------------------------------


@pytest.mark.parametrize("limit", [MAX_TITLE_CHARS, MAX_TITLE_CHARS + 1])
def test_enormous_title_is_rejected_not_truncated(limit: int) -> None:
    title = "Scaling laws for " + "x" * (limit - len("Scaling laws for "))

    result = parse(hf(hf_item(title=title)))

    if limit <= MAX_TITLE_CHARS:
        assert [r.title for r in result.records] == [title]
    else:
        assert result.records == []
        assert result.rejections[0].reason == f"title is {limit} characters long (limit {MAX_TITLE_CHARS})"


def test_title_whose_dedupe_key_outgrows_the_column_is_rejected() -> None:
    # NFKC and casefolding expand characters: "ß" becomes "ss", "ﬃ" becomes "ffi".
    title = "Stra\u00dfe " * 60 + "\ufb03" * 20
    assert len(title) <= MAX_TITLE_CHARS < len(title_key(title))

    result = parse(hf(hf_item(title=title), hf_item(id="2401.00002", title="Kept")))

    assert [r.title for r in result.records] == ["Kept"]
    assert "title" in result.rejections[0].reason and result.rejections[0].position == "item 1"


@pytest.mark.parametrize("extra", [0, 1])
def test_enormous_abstract_is_rejected_not_truncated(extra: int) -> None:
    abstract = "word " * (MAX_ABSTRACT_CHARS // 5 - 1) + "x" * (5 + extra)
    assert len(abstract) == MAX_ABSTRACT_CHARS + extra

    result = parse(listing("Kept neighbour", ABSTRACT, "Huge paper", abstract))

    titles = [r.title for r in result.records]
    if extra:
        assert titles == ["Kept neighbour"]
        assert result.rejections[0].reason == (
            f"abstract is {MAX_ABSTRACT_CHARS + 1} characters long (limit {MAX_ABSTRACT_CHARS})"
        )
    else:
        assert titles == ["Kept neighbour", "Huge paper"]
        assert len(result.records[1].abstract) == MAX_ABSTRACT_CHARS


@pytest.mark.parametrize(
    "title",
    [
        "<i>In situ</i> training of <b>LLMs</b>",
        "Breaking <script>alert('x')</script> filters & other \"tricks\"",
        "H<sub>2</sub>O: Heavy-Hitter Oracle",
    ],
)
def test_markup_in_titles_is_kept_verbatim_as_text(title: str) -> None:
    escaped = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    from_json = parse(hf(hf_item(title=title))).records[0].title
    from_listing = parse(listing(title, ABSTRACT)).records[0].title
    from_atom = parse(atom(atom_entry(title=escaped))).records[0].title

    assert from_json == from_listing == from_atom == title


# --- no input makes the parser crash -----------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_parse_arbitrary_bytes_returns_a_result_or_raises_parse_error(data: bytes) -> None:
    parse_outcome(data)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=600))
def test_parse_arbitrary_text_returns_a_result_or_raises_parse_error(text: str) -> None:
    parse_outcome(text.encode("utf-8"))
