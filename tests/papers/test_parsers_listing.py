"""The plain-text listing parser: the shipped sample files parse completely, dates, and records
rejected at their line."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import time_machine
from hypothesis import given, settings
from hypothesis import strategies as st

from papers.services.parsers import parse
from papers.services.records import SOURCE_LISTING, ParseError, title_key
from tests.papers.helpers import (
    ABSTRACT,
    SAMPLE_DATA,
    listing,
    listing_titles,
    naive_key,
    parse_outcome,
    sample_counts,
)

# --- the shipped inputs ------------------------------------------------------------------------


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


def test_naive_key_agrees_with_title_key_on_the_samples(sample_files: list[Path]) -> None:
    titles = [t for path in sample_files for _, t in listing_titles(path)]
    by_naive: dict[str, set[str]] = {}
    for title in titles:
        by_naive.setdefault(naive_key(title), set()).add(title_key(title))

    # The test's own notion of "same title" and the dedupe key group the titles identically.
    assert all(len(keys) == 1 for keys in by_naive.values())
    assert len({title_key(t) for t in titles}) == len(by_naive)
    assert all(re.fullmatch(r"[\w ]+", title_key(t)) for t in titles)


# --- dates -------------------------------------------------------------------------------------


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


# --- records rejected one by one ---------------------------------------------------------------


def test_listing_with_no_papers_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="no papers found"):
        parse(b"new\n\nSubscribe\n\nMar 14\n")


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


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(["Mar 14", "Feb 29", "A title", ABSTRACT, "", "new", "\x0c", "<b>x</b>"]), max_size=12
    )
)
def test_parse_arbitrary_listing_paragraphs(paragraphs: list[str]) -> None:
    parse_outcome("\n\n".join(["new", *paragraphs]).encode())
