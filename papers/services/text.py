"""The one text model of the project: tokens, TF-IDF vectors, keyword matching.

Topic tagging (papers.services.tagging) and digest ranking (newsletter.services.ranking) both use it,
so "similar" means the same thing everywhere.

Why hashing + a fixed IDF: `HashingVectorizer` needs no vocabulary, so it is stateless and handles
100k papers in bounded memory; the IDF weights are fitted once on the abstracts shipped in
`papers/sample_data/`, so a paper's vector never depends on what else is in the database.
Tagging is therefore deterministic: the same paper gets the same topics on every machine.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, HashingVectorizer, TfidfTransformer
from sklearn.preprocessing import normalize

SAMPLE_DATA_DIR = Path(__file__).resolve().parent.parent / "sample_data"
N_FEATURES = 2**18

# Hyphens split words ("retrieval-augmented" matches "retrieval augmented"); dots and pluses
# inside a token are kept ("3.5", "c++").
_TOKEN = re.compile(r"[a-z0-9]+(?:[.+][a-z0-9]+)*\+*")
# Words every abstract uses; they carry no topic.
_DOMAIN_STOP_WORDS = {
    "paper", "propose", "proposed", "approach", "method", "methods", "result", "work", "novel",
    "new", "based", "using", "use", "used", "show", "shows", "demonstrate", "task", "performance",
    "existing", "significant", "significantly", "achieve", "achieves", "state-of-the-art", "study",
    "introduce", "present", "various", "different", "furthermore", "additionally", "experiment",
}  # fmt: skip
STOP_WORDS = frozenset(ENGLISH_STOP_WORDS | _DOMAIN_STOP_WORDS)


def _singular(token: str) -> str:
    """A light plural folding so "models" and "LLMs" match "model" and "LLM"."""
    if len(token) > 4 and token.endswith("ies"):
        return token[:-3] + "y"
    if len(token) > 3 and token.endswith("s") and not token.endswith(("ss", "us", "is", "as")):
        return token[:-1]
    return token


# Memo of the folding and the stop-word test per raw token: the vocabulary is small, the calls are
# many (every token of every abstract). A token that is not content maps to "" (no token is empty).
_CONTENT: dict[str, str] = {}
_SINGULAR: dict[str, str] = {}
_MEMO_MAX = 500_000


def tokenize(text: str) -> list[str]:
    return [_SINGULAR.get(token) or _singular(token) for token in _TOKEN.findall(text.lower())]


def _is_content(token: str) -> bool:
    return token not in STOP_WORDS and (len(token) > 1 or token.isdigit())


def _content_of(token: str) -> str:
    """The folded token if it is content, else "": what `_CONTENT` holds for a raw token."""
    folded = _singular(token)
    if len(_CONTENT) > _MEMO_MAX:
        _CONTENT.clear()
        _SINGULAR.clear()
    _SINGULAR[token] = folded
    _CONTENT[token] = content = folded if _is_content(folded) else ""
    return content


def content_tokens(text: str) -> list[str]:
    # Looked up with map() in C; a token never seen before is folded once and remembered. This is
    # half of computing a paper's features, which a worker does for every candidate it meets.
    raw = _TOKEN.findall(text.lower())
    memo = _CONTENT
    folded = list(map(memo.get, raw))
    if None in folded:
        folded = [memo[t] if t in memo else _content_of(t) for t in raw]
    return [t for t in folded if t]


def content_spans(text: str) -> list[tuple[str, int, int, int]]:
    """`content_tokens`, each with its position among all of `tokenize`'s tokens (two content words
    with no stop word between have consecutive positions) and where it stands in `text.lower()`
    (start, end): for quoting a reader's own words back to them."""
    spans = []
    for position, match in enumerate(_TOKEN.finditer(text.lower())):
        token = _SINGULAR.get(match.group()) or _singular(match.group())
        if _is_content(token):
            spans.append((token, position, match.start(), match.end()))
    return spans


def _identity(grams: list[str]) -> list[str]:
    return grams


def features(text: str) -> list[str]:
    """Unigrams and bigrams of content words: the vocabulary of the vectors."""
    tokens = content_tokens(text)
    return tokens + list(map(" ".join, itertools.pairwise(tokens)))


# Fed lists of grams from `features`, so callers that need the grams too compute them once.
_hasher = HashingVectorizer(
    analyzer=_identity, n_features=N_FEATURES, alternate_sign=False, norm=None, dtype=np.float32
)


# The IDF fitted on the sample abstracts, stored: a fit costs a worker process ~50 ms of CPU (the
# features of 281 abstracts) before its first chunk, a load ~1 ms. tests/papers/test_text.py holds
# the file equal to `idf_fit()`; after changing the samples or the tokenizer run
# `manage.py store_idf`.
IDF_FILE = Path(__file__).with_name("idf.npz")  # beside this module: ingest_papers reads sample_data/ whole


def idf_fit() -> np.ndarray:
    """The IDF weight of every feature column, fitted on the abstracts of papers/sample_data/*.txt."""
    corpus = []
    for path in sorted(SAMPLE_DATA_DIR.glob("*.txt")):
        paragraphs = [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n")]
        corpus.extend(p for p in paragraphs if p)
    return TfidfTransformer(sublinear_tf=True, norm=None).fit(feature_counts(corpus)).idf_


def idf_store() -> None:
    """Write `idf_fit()` to IDF_FILE: the weight of a feature no sample has, and the others by column."""
    idf = idf_fit()
    unseen = idf.max()  # a feature in no document has the highest weight, and most features are such
    (columns,) = np.nonzero(idf != unseen)
    np.savez_compressed(IDF_FILE, unseen=unseen, columns=columns.astype(np.int32), weights=idf[columns])


def idf_load(path: Path | None = None) -> np.ndarray:
    with np.load(path or IDF_FILE) as stored:
        idf = np.full(N_FEATURES, stored["unseen"], dtype=np.float32)
        idf[stored["columns"]] = stored["weights"]
    return idf


@lru_cache(maxsize=1)
def _idf() -> TfidfTransformer:
    transformer = TfidfTransformer(sublinear_tf=True, norm=None)
    transformer.idf_ = idf_load()
    transformer.n_features_in_ = N_FEATURES
    return transformer


def feature_counts(texts: Sequence[str]) -> sparse.csr_matrix:
    """Raw feature counts (texts x N_FEATURES); a phrase of one or two words is one column."""
    return gram_counts([features(t) for t in texts])


def gram_counts(gram_lists: Sequence[list[str]]) -> sparse.csr_matrix:
    """Counts from ready-made `features` lists."""
    if not gram_lists:
        return sparse.csr_matrix((0, N_FEATURES), dtype=np.float32)
    return _hasher.transform(gram_lists).tocsr()


def tfidf(counts: sparse.csr_matrix) -> sparse.csr_matrix:
    """L2-normalized TF-IDF rows from `feature_counts`; the dot product of two rows is their cosine."""
    return normalize(_idf().transform(counts), copy=False).astype(np.float32).tocsr()


def vectorize(texts: Sequence[str]) -> sparse.csr_matrix:
    return tfidf(feature_counts(texts))


@lru_cache(maxsize=65536)
def phrase_grams(phrase: str) -> tuple[str, ...]:
    """The grams that must all be present for `phrase` to occur in a text.

    One word is a unigram, a longer phrase the chain of its bigrams. Stop words are dropped exactly
    as in `features`, so "the agents" matches "agent".
    """
    tokens = content_tokens(phrase)
    return tuple(tokens if len(tokens) == 1 else [f"{a} {b}" for a, b in itertools.pairwise(tokens)])


@lru_cache(maxsize=65536)
def phrase_columns(phrase: str) -> tuple[int, ...]:
    """The feature columns of `phrase_grams`; hashed, so a hit must be confirmed on real grams."""
    return tuple(sorted(set(gram_columns(phrase_grams(phrase)))))


_GRAM_COLUMNS: dict[str, int] = {}
_GRAM_COLUMNS_MAX = 200_000


def gram_columns(grams: Sequence[str]) -> list[int]:
    """The feature column of each of `features`' grams. Kept per process, and those not yet known
    are hashed in one call: the hasher's own overhead is 30x the hashing of one gram."""
    missing = [gram for gram in dict.fromkeys(grams) if gram not in _GRAM_COLUMNS]
    if missing:
        if len(_GRAM_COLUMNS) + len(missing) > _GRAM_COLUMNS_MAX:
            _GRAM_COLUMNS.clear()
            missing = list(dict.fromkeys(grams))  # the known ones went too
        hashed = _hasher.transform([[gram] for gram in missing])  # one gram per row: one column each
        _GRAM_COLUMNS.update(zip(missing, hashed.indices.tolist(), strict=True))
    return [_GRAM_COLUMNS[gram] for gram in grams]


def paper_text(title: str, abstract: str) -> str:
    # The title is repeated: it is the densest statement of what a paper is about.
    return f"{title}. {title}. {abstract}"


class PhraseSet:
    """Many phrases matched against many texts at once, on the hashed feature columns.

    Matching on features (not substrings) keeps "code" from matching "encoder", and the plural
    folding lets "agent" match "agents". A phrase occurs as often as its rarest bigram does.
    """

    def __init__(self, phrases: Iterable[str]) -> None:
        self.phrases = [p.strip() for p in phrases]
        self._columns = [phrase_columns(p) for p in self.phrases]
        self._unique = sorted({c for cols in self._columns for c in cols})
        position = {c: i for i, c in enumerate(self._unique)}
        self._positions = [[position[c] for c in cols] for cols in self._columns]

    def __len__(self) -> int:
        return len(self.phrases)

    def counts(self, counts: sparse.csr_matrix) -> np.ndarray:
        """A texts x phrases array of occurrence counts, from `feature_counts` of the texts."""
        result = np.zeros((counts.shape[0], len(self.phrases)), dtype=np.float32)
        if not self._unique:
            return result
        present = counts[:, self._unique].toarray()
        for index, positions in enumerate(self._positions):
            if len(positions) == 1:
                result[:, index] = present[:, positions[0]]
            elif positions:
                result[:, index] = present[:, positions].min(axis=1)
        return result
