# ruff: noqa: RUF001  (the expected texts are Unicode on purpose)
"""LaTeX leftovers in abstracts as plain text (papers.services.latex), and where the cleaned copy is used."""

from __future__ import annotations

import json

import pytest

from newsletter.selectors import papers_by_ids
from papers.models import Paper
from papers.services.ingest import papers_ingest_path
from papers.services.latex import latex_to_text


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        ("masked language modeling~(MLM) in pre-training", "masked language modeling (MLM) in pre-training"),
        ("wav2vec~2.0 by more than~30\\% relative", "wav2vec 2.0 by more than 30% relative"),
        ("Fig.~3 and Byte-~and Word-Level", "Fig. 3 and Byte- and Word-Level"),
        ("gains of ~10% and (1% ~ 3%)", "gains of ~10% and (1% ~ 3%)"),  # "about", not a tie
        ("code at https://example.org/~user/repo", "code at https://example.org/~user/repo"),
        ("with $\\alpha$-entmax and $\\beta=0.9$", "with α-entmax and β = 0.9"),
        ("a $2\\times$ speedup, $3 \\times 3$ kernels", "a 2× speedup, 3×3 kernels"),
        ("in $O(n\\log n)$ time, $\\mathcal{O}(N^{2})$ memory", "in O(n log n) time, O(N^2) memory"),
        ("$\\sim$10\\% fewer, $x \\leq y$", "~10% fewer, x ≤ y"),
        ("\\(\\epsilon\\)-greedy and $$\\lambda$$", "ε-greedy and λ"),
        (
            "trained for less than $0.1 million, or $20 each",
            "trained for less than $0.1 million, or $20 each",
        ),
        ("between $5-$10 per run", "between $5-$10 per run"),
        ("One For All (\\textsc{Ofa}) is \\textbf{fast}", "One For All (Ofa) is fast"),
        ("\\emph{not} \\textit{just} \\texttt{code} and \\textbf{\\emph{both}}", "not just code and both"),
        ("{\\bf bold} and {\\em emphasis}", "bold and emphasis"),
        ("as shown~\\cite{smith2020,doe21} and by others \\citep[p.~3]{x}.", "as shown and by others."),
        ("see Section~\\ref{sec:exp} and footnote\\footnote{A note.}.", "see Section and footnote."),
        ("see \\href{https://x.org}{our site} or \\url{https://y.org}", "see our site or https://y.org"),
        ("visual Q\\&A, 5\\_000 items, \\#1 on \\$ cost", "visual Q&A, 5_000 items, #1 on $ cost"),
        ("G\\\"{o}del, Erd\\H{o}s, na\\\"ive, \\'{e}t\\'e, \\c{c}a", "Gödel, Erdős, naïve, été, ça"),
        ("``quoted'' --- a dash, pages 1--3", "“quoted” — a dash, pages 1–3"),
        ("line\\\\break", "line break"),
        (
            "our model, \\mone, outperforms \\LaTeX{} baselines",
            "our model, mone, outperforms LaTeX baselines",
        ),
    ],
)
def test_latex_leftovers_become_plain_text(source: str, shown: str) -> None:
    assert latex_to_text(source) == shown


@pytest.mark.parametrize(
    "text", ["A plain abstract: 3 < 4, {braces} and 50% stay.", "", "Price is $5.", "a ~ b"]
)
def test_text_without_latex_is_unchanged(text: str) -> None:
    assert latex_to_text(text) == text


@pytest.mark.django_db
def test_ingest_keeps_the_original_and_readers_get_the_clean_copy(tmp_path) -> None:
    abstract = "Masked language modeling~(MLM) with $\\alpha$ weights and \\textbf{30\\%} fewer steps."
    listing = tmp_path / "daily.json"
    listing.write_text(json.dumps([{"paper": {"id": "2401.00001", "title": "Masking", "summary": abstract}}]))

    papers_ingest_path(path=listing)

    paper = Paper.objects.get()
    assert paper.abstract == abstract
    [candidate] = papers_by_ids(ids=[paper.id])
    assert candidate.abstract == "Masked language modeling (MLM) with α weights and 30% fewer steps."
