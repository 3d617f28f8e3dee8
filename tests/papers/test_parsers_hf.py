"""The Hugging Face daily-papers JSON parser: the fixture parses every field, JSON errors carry a
position, and bad items are rejected one by one."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from papers.services.parsers import parse
from papers.services.records import SOURCE_HUGGINGFACE, ParseError
from tests.papers.helpers import ABSTRACT, HF_JSON, hf, hf_item, parse_outcome


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


# --- JSON that cannot be read ------------------------------------------------------------------


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


# --- items rejected one by one -----------------------------------------------------------------


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


# --- no input makes the parser crash -----------------------------------------------------------


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

    outcome = parse_outcome(data)

    if outcome == "parsed":
        result = parse(data)
        assert len(result.records) + len(result.rejections) == len(items)
