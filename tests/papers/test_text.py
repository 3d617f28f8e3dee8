import io
import itertools
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command

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
    monkeypatch.setattr(text, "_CONTENT", {})
    monkeypatch.setattr(text, "_SINGULAR", {})
    value = " ".join(SAMPLES)

    assert text.content_tokens(value) == plain_content_tokens(value)
    assert len(text._CONTENT) <= 4  # emptied whenever it passed 3
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


def test_the_stored_idf_is_the_one_fitted_on_the_sample_data() -> None:
    # If this fails, the samples or the tokenizer changed: run `manage.py store_idf` and commit idf.npz.
    fitted = text.idf_fit()

    assert text.idf_load().dtype == fitted.dtype
    assert np.array_equal(text.idf_load(), fitted)
    assert np.array_equal(text._idf().idf_, fitted)


def test_store_idf_writes_what_the_workers_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = text.IDF_FILE
    monkeypatch.setattr(text, "IDF_FILE", tmp_path / "idf.npz")

    call_command("store_idf", stdout=io.StringIO())

    assert np.array_equal(text.idf_load(), text.idf_load(shipped))
    assert shipped.stat().st_size < 100_000
