import itertools

import pytest

from papers.services import text


def plain_content_tokens(value: str) -> list[str]:
    """The definition content_tokens' memo must keep: fold each token, drop the stop words."""
    return [t for t in map(text._singular, text._TOKEN.findall(value.lower())) if text._is_content(t)]


SAMPLES = [
    "",
    "a I 3 x1",
    "The uses of LLMs: models, agents; c++ and 3.5 retrieval-augmented generation",
    "Bus class lies studies, analysis of 2 series",
    "USES used use user",
]


@pytest.mark.parametrize("value", SAMPLES)
def test_content_tokens_fold_plurals_and_drop_stop_words(value: str) -> None:
    assert text.content_tokens(value) == plain_content_tokens(value)
    # The second call reads the memo filled by the first.
    assert text.content_tokens(value) == plain_content_tokens(value)


def test_content_tokens_are_the_same_after_the_memo_is_emptied(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(text, "_MEMO_MAX", 3)
    value = " ".join(SAMPLES)

    assert text.content_tokens(value) == plain_content_tokens(value)
    assert len(text._CONTENT) <= len(set(text._TOKEN.findall(value.lower())))
    assert text.content_tokens(value) == plain_content_tokens(value)


def test_features_are_the_content_words_and_their_pairs() -> None:
    tokens = plain_content_tokens(SAMPLES[2])

    assert text.features(SAMPLES[2]) == tokens + [f"{a} {b}" for a, b in itertools.pairwise(tokens)]
    assert "llm model" in text.features(SAMPLES[2])


def test_gram_columns_survive_the_memo_being_emptied(monkeypatch: pytest.MonkeyPatch) -> None:
    grams = text.features(SAMPLES[2])
    expected = text.gram_columns(grams)
    monkeypatch.setattr(text, "_GRAM_COLUMNS_MAX", len(set(grams)))
    # Known grams plus a new one pass the cap: the memo is emptied, and every gram hashed again.
    assert text.gram_columns([*grams, "unseen gram"])[:-1] == expected
    assert text.gram_columns(grams) == expected == text.gram_counts([[g] for g in grams]).indices.tolist()
