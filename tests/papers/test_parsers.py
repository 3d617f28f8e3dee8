"""Parsers: the shipped inputs parse completely, and malformed input fails per record or per file
with a position, never with an unexpected exception."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import time_machine
from hypothesis import given, settings
from hypothesis import strategies as st

from papers.services.parsers import (
    MAX_ABSTRACT_CHARS,
    MAX_TITLE_CHARS,
    SOURCE_ARXIV,
    SOURCE_HUGGINGFACE,
    SOURCE_LISTING,
    ParseError,
    ParseResult,
    detect_format,
    normalize_arxiv_id,
    parse,
    title_key,
)
from tests.papers.helpers import (
    ABSTRACT,
    ARXIV_ATOM,
    ARXIV_ERROR,
    HF_JSON,
    SAMPLE_DATA,
    listing_titles,
    naive_key,
    sample_counts,
)

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


# --- the shipped inputs ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLE_DATA.glob("*.txt")))
def test_each_sample_listing_parses_every_paper_at_its_line(sample_files: list[Path], name: str) -> None:
    path = next(p for p in sample_files if p.name == name)
    expected = listing_titles(path)

    result = parse(path.read_bytes())

    assert result.format == SOURCE_LISTING
    assert result.rejections == []
    assert [(r.position, r.title) for r in result.records] == [(f"line {n}", t) for n, t in expected]
    assert all(len(r.abstract) >= 200 and r.source == SOURCE_LISTING for r in result.records)
    assert all(r.external_id is None and r.authors == () for r in result.records)


def test_sample_files_hold_fewer_distinct_titles_than_listings(sample_files: list[Path]) -> None:
    listings, distinct = sample_counts(sample_files)
    records = [r for path in sample_files for r in parse(path.read_bytes()).records]

    assert len(sample_files) == 4
    assert len(records) == listings
    assert len({title_key(r.title) for r in records}) == distinct
    assert distinct < listings  # the same paper is listed on several days


@time_machine.travel(datetime(2025, 6, 1, 12, tzinfo=UTC), tick=False)
@pytest.mark.parametrize(
    ("date_line", "expected"),
    [
        ("Mar 14", date(2025, 3, 14)),  # this year
        ("Jul 11", date(2024, 7, 11)),  # later in the year than today: last year's
        ("Jun 1", date(2025, 6, 1)),  # today
        ("Mar 14, 2023", date(2023, 3, 14)),  # an explicit year is kept
        ("September 3", date(2024, 9, 3)),
        ("Feb 29", date(2024, 2, 29)),  # the last Feb 29, not a title
    ],
)
def test_listing_date_line_dates_the_papers_below_it(date_line: str, expected: date) -> None:
    result = parse(listing("A good paper", ABSTRACT, date_line=date_line))

    assert result.rejections == []
    assert [r.published_at for r in result.records] == [datetime(*expected.timetuple()[:3], tzinfo=UTC)]


@time_machine.travel(datetime(2024, 2, 28, 12, tzinfo=UTC), tick=False)
def test_feb_29_seen_before_this_years_feb_29_means_the_previous_leap_year() -> None:
    result = parse(listing("A good paper", ABSTRACT, date_line="Feb 29"))

    assert [r.published_at for r in result.records] == [datetime(2020, 2, 29, tzinfo=UTC)]


def test_hugging_face_fixture_parses_every_field() -> None:
    items = json.loads(HF_JSON.read_text(encoding="utf-8"))

    result = parse(HF_JSON.read_bytes())

    assert result.format == SOURCE_HUGGINGFACE
    assert result.rejections == []
    assert [r.external_id for r in result.records] == [i["paper"]["id"] for i in items]
    assert [r.title for r in result.records] == [i["paper"]["title"] for i in items]
    assert [r.position for r in result.records] == [f"item {n}" for n in range(1, len(items) + 1)]
    dpo = result.records[0]
    assert dpo.authors == tuple(a["name"] for a in items[0]["paper"]["authors"])
    assert dpo.upvotes == items[0]["paper"]["upvotes"]
    assert dpo.github_url == items[0]["paper"]["githubRepo"]
    assert dpo.github_stars == items[0]["paper"]["githubStars"]
    assert dpo.url == "https://huggingface.co/papers/2305.18290"
    assert dpo.published_at == datetime(2023, 5, 29, 17, 57, 46, tzinfo=UTC)
    electra = result.records[1]
    assert "githubRepo" not in items[1]["paper"]
    assert (electra.github_url, electra.github_stars) == ("", None)


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


# --- inputs that cannot be read at all ------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"   \n\t\r\n  \n", b"\xef\xbb\xbf"], ids=["empty", "blank", "bom"])
def test_empty_input_is_a_parse_error(data: bytes) -> None:
    with pytest.raises(ParseError, match="empty"):
        parse(data)


def test_truncated_json_names_line_and_column() -> None:
    text = HF_JSON.read_text(encoding="utf-8")
    cut = text.index('"summary"', text.index("2003.10555"))  # inside the second item
    truncated = text[:cut]

    with pytest.raises(ParseError) as caught:
        parse(truncated.encode())

    # The parser only learns the input is cut short at its very end.
    last_line = truncated.count("\n") + 1
    assert caught.value.position == f"line {last_line}, column {len(truncated.split(chr(10))[-1]) + 1}"
    assert "invalid JSON" in caught.value.reason


def test_json_syntax_error_points_at_the_bad_character() -> None:
    bad_line = '  {"paper": {"title": "A", "summary": "B",}}'
    data = f"[\n{bad_line}\n]".encode()

    with pytest.raises(ParseError) as caught:
        parse(data)

    # The trailing comma is legal until the closing brace where a property name should be.
    assert caught.value.position == f"line 2, column {bad_line.index(',}') + 2}"


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


def test_non_utf8_bytes_name_line_and_offset() -> None:
    data = listing("Caf\u00e9 society", ABSTRACT).replace("Caf\u00e9".encode(), "Caf\u00e9".encode("latin-1"))
    offset = data.index(b"\xe9")
    line = data[:offset].count(b"\n") + 1

    with pytest.raises(ParseError) as caught:
        parse(data)

    assert caught.value.position == f"line {line}"
    assert f"byte 0xe9 at offset {offset}" in caught.value.reason


def test_listing_with_no_papers_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="no papers found"):
        parse(b"new\n\nSubscribe\n\nMar 14\n")


@pytest.mark.parametrize("data", [b"[]", b'{"papers": []}'])
def test_json_without_papers_is_a_parse_error(data: bytes) -> None:
    with pytest.raises(ParseError, match="empty"):
        parse(data)


def test_deeply_nested_json_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="nested too deeply"):
        parse(b"[" * 100_000 + b"]" * 100_000)


def test_json_number_too_long_to_convert_is_a_parse_error() -> None:
    # Python refuses integers of more than 4300 digits with ValueError, not JSONDecodeError.
    data = b'[{"title": "A", "summary": "B", "upvotes": ' + b"9" * 5000 + b"}]"

    with pytest.raises(ParseError, match="invalid JSON"):
        parse(data)


# --- records rejected one by one ------------------------------------------------------------


def test_listing_title_without_abstract_is_rejected_at_its_line_and_the_rest_parse() -> None:
    data = listing("First paper", ABSTRACT, "Orphan title", "Second paper", ABSTRACT, "Trailing title")
    lines = data.decode().split("\n")

    result = parse(data)

    assert [r.title for r in result.records] == ["First paper", "Second paper"]
    assert [(r.position, r.reason) for r in result.rejections] == [
        (f"line {lines.index('Orphan title') + 1}", "title 'Orphan title' has no abstract"),
        (f"line {lines.index('Trailing title') + 1}", "title 'Trailing title' has no abstract"),
    ]


def test_listing_date_line_ends_a_title_waiting_for_its_abstract() -> None:
    data = listing("Orphan title", "Mar 15", "A good paper", ABSTRACT)

    result = parse(data)

    assert [r.title for r in result.records] == ["A good paper"]
    assert [r.reason for r in result.rejections] == ["title 'Orphan title' has no abstract"]


def test_listing_abstract_without_title_is_rejected_at_its_line() -> None:
    orphan = f"{ABSTRACT} {ABSTRACT}"  # longer than any title
    data = listing(orphan, "A good paper", ABSTRACT)
    lines = data.decode().split("\n")

    result = parse(data)

    assert [r.title for r in result.records] == ["A good paper"]
    assert [(r.position, r.reason) for r in result.rejections] == [
        (f"line {lines.index(orphan) + 1}", "abstract without a title")
    ]


def test_listing_line_numbers_count_crlf_lines_once() -> None:
    data = listing("A good paper", ABSTRACT).replace(b"\n", b"\r\n")
    title_line = data.split(b"\r\n").index(b"A good paper") + 1

    result = parse(data)

    assert [r.position for r in result.records] == [f"line {title_line}"]


def test_hf_record_without_title_or_abstract_is_rejected_per_item() -> None:
    data = hf(
        hf_item(summary=None), hf_item(id="2401.00002", title="Kept"), {"paper": {"id": "x", "summary": "s"}}
    )

    result = parse(data)

    assert [r.title for r in result.records] == ["Kept"]
    assert [(r.position, r.reason) for r in result.rejections] == [
        ("item 1", "abstract is missing or not text"),
        ("item 3", "title is missing or not text"),
    ]


@pytest.mark.parametrize(
    ("paper", "reason"),
    [
        ({"title": 1234}, "title is missing or not text"),
        ({"title": ["A", "list"]}, "title is missing or not text"),
        ({"title": "   "}, "title is empty"),
        ({"title": "?!  --"}, "title has no letters or digits"),
        ({"summary": {"text": "x"}}, "abstract is missing or not text"),
        ({"summary": "\n\t "}, "has no abstract"),
        ({"upvotes": -1}, "'upvotes' must be a non-negative whole number, got -1"),
        ({"upvotes": 2.5}, "'upvotes' must be a non-negative whole number"),
        ({"upvotes": "12"}, "'upvotes' must be a non-negative whole number"),
        ({"upvotes": True}, "'upvotes' must be a non-negative whole number"),
        ({"upvotes": 2**31}, "'upvotes' must be a non-negative whole number"),
        ({"githubStars": -5}, "'githubStars' must be a non-negative whole number"),
        ({"authors": "Ada Lovelace, Alan Turing"}, "'paper.authors' must be a list"),
        ({"authors": {"name": "Ada"}}, "'paper.authors' must be a list"),
        ({"authors": [{"name": 42}]}, "an author name is not text"),
        ({"authors": [{"name": "x" * 201}]}, "an author name is 201 characters (limit 200)"),
        ({"authors": ["Ada"] * 1001}, "1001 authors (limit 1000)"),
        ({"publishedAt": "yesterday"}, "'publishedAt' is not a date"),
        ({"publishedAt": "2023-13-45T00:00:00Z"}, "'publishedAt' is not a date"),
        ({"publishedAt": 1685382000}, "'publishedAt' must be a date string"),
        ({"id": ["2401.00001"]}, "'paper.id' must be a string"),
        ({"id": True}, "'paper.id' must be a string"),
        ({"id": "x" * 61}, "'paper.id' is longer than 60 characters"),
    ],
)
def test_hf_item_with_wrong_types_is_rejected_with_reason_and_others_parse(paper: dict, reason: str) -> None:
    data = hf(hf_item(id="2401.00009", title="Good neighbour"), hf_item(**paper))

    result = parse(data)

    assert [r.title for r in result.records] == ["Good neighbour"]
    assert len(result.rejections) == 1
    assert result.rejections[0].position == "item 2"
    assert reason in result.rejections[0].reason


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ("just a string", "item is not an object"),
        (7, "item is not an object"),
        ({"paper": []}, "'paper' is not an object"),
    ],
)
def test_hf_items_that_are_not_objects_are_rejected(item: object, reason: str) -> None:
    result = parse(hf(item, hf_item()))

    assert [(r.position, r.reason) for r in result.rejections] == [("item 1", reason)]
    assert len(result.records) == 1


def test_hf_single_paper_object_and_papers_wrapper_are_accepted() -> None:
    single = parse(json.dumps(hf_item()).encode())
    wrapped = parse(json.dumps({"papers": [hf_item()]}).encode())
    flat = parse(json.dumps({"title": "A good paper", "summary": ABSTRACT}).encode())

    assert [r.title for r in single.records] == [r.title for r in wrapped.records] == ["A good paper"]
    assert flat.records[0].external_id is None


def test_hf_id_that_is_not_an_arxiv_id_is_kept_with_a_prefix() -> None:
    result = parse(hf(hf_item(id="my-blog-post")))

    assert result.records[0].external_id == "hf:my-blog-post"
    assert result.records[0].url == "https://huggingface.co/papers/my-blog-post"


def test_hf_links_that_are_not_web_urls_are_dropped_not_rejected() -> None:
    result = parse(hf(hf_item(githubRepo="javascript:alert(1)"), hf_item(id="2401.00002", githubRepo=123)))

    assert [r.github_url for r in result.records] == ["", ""]
    assert result.rejections == []


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


def test_enormous_line_in_a_listing_is_not_taken_for_a_title() -> None:
    result = parse(listing("A" * 2000, "A good paper", ABSTRACT))

    assert [r.title for r in result.records] == ["A good paper"]
    assert [r.reason for r in result.rejections] == ["abstract without a title"]


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f", "\x0c", "\x1c"])
def test_control_characters_are_stripped_from_listings(char: str) -> None:
    data = listing(f"Robust{char} speech recognition", f"{ABSTRACT[:40]}{char}{ABSTRACT[40:]}")
    lines = data.decode().split("\n")

    result = parse(data)

    assert result.rejections == []
    assert [r.title for r in result.records] == ["Robust speech recognition"]
    assert result.records[0].abstract == ABSTRACT
    assert result.records[0].position == f"line {lines.index(f'Robust{char} speech recognition') + 1}"


def test_control_characters_are_stripped_from_json() -> None:
    data = hf(
        hf_item(
            title="Nul\u0000 and\u001b[31m escape", summary=f"\u0007{ABSTRACT}\u0000", authors=["A\u0000da"]
        )
    )

    record = parse(data).records[0]

    assert record.title == "Nul and[31m escape"
    assert record.abstract == ABSTRACT
    assert record.authors == ("Ada",)


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


# --- arXiv ids and format detection ---------------------------------------------------------


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
    "href", ["javascript:alert(1)", "data:text/html,x", "ftp://arxiv.org/abs/2401.00001", " "]
)
def test_atom_entry_whose_link_is_not_a_web_url_gets_the_arxiv_url_from_its_id(href: str) -> None:
    entry = atom_entry(extra=f'<link href="{href}" rel="alternate" type="text/html"/>')

    assert parse(atom(entry)).records[0].url == "https://arxiv.org/abs/2401.00001"


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


# --- no input makes the parser crash --------------------------------------------------------


def _parse_outcome(data: bytes) -> str:
    try:
        result = parse(data)
    except ParseError as exc:
        assert str(exc)
        return "error"
    assert isinstance(result, ParseResult)
    assert all(r.title and r.abstract and title_key(r.title) for r in result.records)
    return "parsed"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_parse_arbitrary_bytes_returns_a_result_or_raises_parse_error(data: bytes) -> None:
    _parse_outcome(data)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=600))
def test_parse_arbitrary_text_returns_a_result_or_raises_parse_error(text: str) -> None:
    _parse_outcome(text.encode("utf-8"))


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
_paper_like = st.fixed_dictionaries(
    {},
    optional={
        "id": _json_values | st.sampled_from(["2305.18290v2", "hep-th/9901001"]),
        "title": _json_values,
        "summary": _json_values | st.just(ABSTRACT),
        "authors": _json_values,
        "upvotes": _json_values,
        "publishedAt": _json_values | st.sampled_from(["2023-05-29T17:57:46.000Z", "2023-02-30T00:00:00Z"]),
        "githubRepo": _json_values,
        "githubStars": _json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(_paper_like, st.fixed_dictionaries({"paper": _paper_like}), _json_values), max_size=5)
)
def test_parse_arbitrary_json_shaped_like_the_api(items: list) -> None:
    data = json.dumps(items).encode()

    outcome = _parse_outcome(data)

    if outcome == "parsed":
        result = parse(data)
        assert len(result.records) + len(result.rejections) == len(items)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(["Mar 14", "Feb 29", "A title", ABSTRACT, "", "new", "\x0c", "<b>x</b>"]), max_size=12
    )
)
def test_parse_arbitrary_listing_paragraphs(paragraphs: list[str]) -> None:
    _parse_outcome("\n\n".join(["new", *paragraphs]).encode())


def test_naive_key_agrees_with_title_key_on_the_samples(sample_files: list[Path]) -> None:
    titles = [t for path in sample_files for _, t in listing_titles(path)]
    by_naive: dict[str, set[str]] = {}
    for title in titles:
        by_naive.setdefault(naive_key(title), set()).add(title_key(title))

    # The test's own notion of "same title" and the dedupe key group the titles identically.
    assert all(len(keys) == 1 for keys in by_naive.values())
    assert len({title_key(t) for t in titles}) == len(by_naive)
    assert all(re.fullmatch(r"[\w ]+", title_key(t)) for t in titles)
