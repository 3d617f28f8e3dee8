"""The arXiv Atom parser: the fixture parses every field, API errors and XML that is not an Atom feed
are refused, bad entries are rejected one by one, ids are normalized."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from papers.services.parsers import parse
from papers.services.records import SOURCE_ARXIV, ParseError, ParseResult, normalize_arxiv_id
from tests.papers.helpers import ARXIV_ATOM, ARXIV_ERROR, atom, atom_entry


def test_arxiv_fixture_parses_every_field() -> None:
    result = parse(ARXIV_ATOM.read_bytes())

    assert result.format == SOURCE_ARXIV
    assert result.rejections == []
    assert [r.external_id for r in result.records] == [
        "2305.18290",
        "2305.14342",
        "1706.03762",
        "hep-ex/0307015",
    ]
    dpo = result.records[0]
    # The feed breaks the title over two lines; the record has single spaces.
    assert dpo.title == "Direct Preference Optimization: Your Language Model Is Secretly a Reward Model"
    assert "\n" not in dpo.abstract and "  " not in dpo.abstract
    assert dpo.abstract.startswith("While large-scale unsupervised language models (LMs)")
    assert len(dpo.authors) == 6 and dpo.authors[-1] == "Chelsea Finn"
    # The HTML link is the paper's URL, not the PDF link next to it.
    assert dpo.url == "http://arxiv.org/abs/2305.18290v3"
    old_style = result.records[3]
    assert old_style.url == "http://arxiv.org/abs/hep-ex/0307015v1"
    assert old_style.authors == ("H1 Collaboration",)
    assert old_style.published_at == datetime(2003, 7, 7, 17, 46, 39, tzinfo=UTC)  # -04:00 in the feed


def test_arxiv_error_feed_is_a_file_error_with_the_api_message() -> None:
    with pytest.raises(ParseError, match=re.escape("arXiv API error: incorrect id format for 1234.12345")):
        parse(ARXIV_ERROR.read_bytes())


def test_an_empty_arxiv_result_is_no_papers_not_an_error() -> None:
    assert parse(atom()) == ParseResult(format=SOURCE_ARXIV)


# --- XML that cannot be read -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("xml", "root"),
    [
        (b'<?xml version="1.0"?><rss version="2.0"><channel><item/></channel></rss>', "rss"),
        (b"<feed><entry><title>x</title></entry></feed>", "feed"),  # no Atom namespace
        (b'<opml version="2.0"/>', "opml"),
    ],
)
def test_xml_that_is_not_atom_is_refused_naming_the_root(xml: bytes, root: str) -> None:
    with pytest.raises(ParseError, match=f"root element is <{root}>, not an Atom <feed>"):
        parse(xml)


def test_malformed_xml_names_line_and_column() -> None:
    text = ARXIV_ATOM.read_text(encoding="utf-8")
    first_entry = text.index("<entry>")
    end_tag = text.index("</title>", first_entry)
    broken = text[:end_tag] + "</titel>" + text[end_tag + len("</title>") :]
    line_start = text.rindex("\n", 0, end_tag) + 1

    with pytest.raises(ParseError) as caught:
        parse(broken.encode())

    line = text[:end_tag].count("\n") + 1
    name_column = end_tag + len("</") - line_start + 1  # expat points at the tag's name
    assert caught.value.position == f"line {line}, column {name_column}"
    assert "mismatched tag" in caught.value.reason


def test_xml_entities_are_refused() -> None:
    bomb = b'<?xml version="1.0"?><!DOCTYPE f [<!ENTITY a "aaaaaaaaaa">]><feed>&a;</feed>'

    with pytest.raises(ParseError, match="unsafe XML"):
        parse(bomb)


# --- entries rejected one by one ---------------------------------------------------------------


def test_atom_entry_without_summary_is_rejected_and_others_parse() -> None:
    data = atom(
        atom_entry("2401.00001v1", "Kept"),
        "<entry><id>http://arxiv.org/abs/2401.00002v1</id><title>No summary</title></entry>",
    )

    result = parse(data)

    assert [r.title for r in result.records] == ["Kept"]
    assert [(r.position, r.reason) for r in result.rejections] == [
        ("entry 2", "abstract is missing or not text")
    ]


def test_atom_entry_with_a_bad_date_is_rejected() -> None:
    entry = atom_entry().replace("2024-01-02T03:04:05Z", "last Tuesday")

    result = parse(atom(entry))

    assert [(r.position, r.reason) for r in result.rejections] == [
        ("entry 1", "'published' is not a date: 'last Tuesday'")
    ]


# --- arXiv ids ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2305.18290", "2305.18290"),
        ("2305.18290v3", "2305.18290"),
        (" 2305.18290v12 ", "2305.18290"),
        ("0704.0001v1", "0704.0001"),  # the first new-style ids had four digits after the dot
        ("hep-ex/0307015", "hep-ex/0307015"),
        ("hep-th/9901001v2", "hep-th/9901001"),
        ("math.GT/0309136v1", "math.GT/0309136"),
        ("cs/0112017", "cs/0112017"),
        ("2305.183", None),
        ("23051.8290", None),
        ("arXiv:2305.18290", None),
        ("2305.18290v", None),
        ("my-blog-post", None),
        ("", None),
    ],
)
def test_normalize_arxiv_id(raw: str, expected: str | None) -> None:
    assert normalize_arxiv_id(raw) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://arxiv.org/abs/2305.18290v3", "2305.18290"),
        ("https://arxiv.org/abs/hep-th/9901001v2", "hep-th/9901001"),
        ("http://arxiv.org/abs/not-an-id", None),
        ("urn:uuid:60a76c80-d399-11d9-b93C-0003939e0af6", None),
    ],
)
def test_atom_entry_ids_are_normalized(url: str, expected: str | None) -> None:
    entry = atom_entry().replace("http://arxiv.org/abs/2401.00001v1", url)

    assert parse(atom(entry)).records[0].external_id == expected


@pytest.mark.parametrize(
    "href", ["javascript:alert(1)", "data:text/html,x", "ftp://arxiv.org/abs/2401.00001", " "]
)
def test_atom_entry_whose_link_is_not_a_web_url_gets_the_arxiv_url_from_its_id(href: str) -> None:
    entry = atom_entry(extra=f'<link href="{href}" rel="alternate" type="text/html"/>')

    assert parse(atom(entry)).records[0].url == "https://arxiv.org/abs/2401.00001"
