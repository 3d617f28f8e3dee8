"""Reasons (newsletter.services.reasons): each names what put the paper in the digest, in the reader's
own words, and credits a like when the model learned from it carries the pick."""

from __future__ import annotations

import re
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from scipy import sparse

from newsletter.models import Feedback
from newsletter.selectors import digest_preview
from newsletter.services.candidates import CandidatePool, PhraseHits, Pick, Profile, Taste
from newsletter.services.learning.reader_model import reader_model_fit
from newsletter.services.reasons import (
    Evidence,
    QueryTerms,
    _term_shares,
    because_you_liked,
    reasons_for,
    written_terms,
)
from papers.models import Paper
from papers.selectors import papers_candidates, topic_names
from papers.services.text import content_tokens
from tests.factories import PaperFactory, SubscriberFactory

pytestmark = pytest.mark.django_db

SPEECH = "speech recognition, text to speech"
QUOTED = re.compile(r"“([^”]+)”")


def quoted_words(reason: str) -> list[str]:
    return QUOTED.findall(reason)


def liked(subscriber, title_prefix: str) -> Paper:
    paper = Paper.objects.get(title__startswith=title_prefix)
    Feedback.objects.create(subscriber=subscriber, paper=paper, choice=Feedback.Choice.MORE)
    reader_model_fit(subscriber_id=subscriber.pk)
    return paper


def preview(subscriber) -> list[Pick]:
    return digest_preview(subscriber=subscriber, now=timezone.now())


# --- the reader's own words ----------------------------------------------------------------------


def test_written_terms_are_words_and_side_by_side_pairs_as_written() -> None:
    terms = written_terms("Speech recognition, text to speech")

    assert terms == {
        "speech": "Speech",
        "recognition": "recognition",
        "speech recognition": "Speech recognition",
        "text": "text",
    }  # never "text speech" (a stop word between) nor "recognition text" (a comma between)


def test_written_terms_keep_hyphens_and_plurals_as_written() -> None:
    terms = written_terms("video-language models for narration and event understanding")

    assert terms["video language"] == "video-language"
    assert terms["language model"] == "language models"
    assert terms["model"] == "models"
    assert terms["event understanding"] == "event understanding"
    assert "model narration" not in terms and "narration event" not in terms


def test_phrase_reasons_quote_only_what_the_reader_wrote(sample_papers) -> None:
    subscriber = SubscriberFactory(interests=SPEECH, papers_per_digest=10)

    picks = preview(subscriber)

    assert picks
    quotes = {q for p in picks for r in p.reasons if not r.startswith("Because") for q in quoted_words(r)}
    assert quotes, "the speech papers are there for the reader's words"
    assert "text speech" not in quotes
    assert all(q.lower() in SPEECH for q in quotes)


def test_no_two_reasons_of_a_paper_quote_the_same_words(sample_papers) -> None:
    subscriber = SubscriberFactory(interests=SPEECH, papers_per_digest=10)

    picks = preview(subscriber)

    mentions = [p for p in picks if "Mentions “text to speech”" in p.reasons]
    assert mentions, "a sample paper says text to speech"
    for pick in picks:
        quotes = [set(content_tokens(q)) for r in pick.reasons for q in quoted_words(r)]
        for i, words in enumerate(quotes):
            assert not any(words <= other for other in quotes[:i] + quotes[i + 1 :]), pick.reasons


# --- a like, credited ----------------------------------------------------------------------------


def test_the_closest_unseen_paper_to_a_like_leads_and_names_it(sample_papers) -> None:
    subscriber = SubscriberFactory(interests=SPEECH, papers_per_digest=10)
    ask2mask = liked(subscriber, "Ask2Mask:")

    picks = [p for p in preview(subscriber) if p.paper.id != ask2mask.pk]

    assert picks[0].paper.title.startswith("W2v-BERT:")
    assert picks[0].reasons[0] == because_you_liked(ask2mask.title)
    assert picks[0].reasons[0].startswith("Because you liked “Ask2Mask: Guided Data Selection")


def test_a_pick_the_model_likes_for_the_interests_is_not_credited_to_the_like(sample_papers) -> None:
    subscriber = SubscriberFactory(interests=SPEECH, papers_per_digest=10)
    liked(subscriber, "Ask2Mask:")

    picks = {p.paper.title.split(":")[0]: p for p in preview(subscriber)}

    # Stream-Omni is about speech (the interests) far more than it is like Ask2Mask.
    assert not any(r.startswith("Because you liked") for r in picks["Stream-Omni"].reasons)
    assert picks["Stream-Omni"].reasons[0].startswith("Matches your interest in “")


def test_without_a_model_no_pick_is_credited_to_a_like(sample_papers) -> None:
    subscriber = SubscriberFactory(interests=SPEECH, papers_per_digest=10)

    picks = preview(subscriber)

    assert not any(r.startswith("Because you liked") for p in picks for r in p.reasons)


def test_a_like_is_credited_where_the_learned_term_carries_the_most_and_the_likes_pull_hardest() -> None:
    for n in range(4):
        PaperFactory(title=f"Paper {n}")
    now = timezone.now()
    pool = CandidatePool(papers_candidates(since=now - timedelta(days=1), limit=100), topic_names(), now)
    liked_paper = pool.papers[0]
    reader = Profile(
        subscriber_id=1,
        topic_ids=(),
        interests="",
        excluded_keywords="",
        limit=3,
        since=timezone.now() - timedelta(days=1),
        taste=Taste(features=np.zeros(0, np.int32), weights=np.zeros(0, np.float32), liked=(liked_paper,)),
    )
    zero = np.zeros(len(pool))
    evidence = Evidence(
        # Paper 1: the topics carry it. 2: the model, pulled by the like. 3: the model, pulled by
        # the interests (its positive too) more than by the like.
        terms={"topics": np.array([0.0, 3.0, 0.5, 0.5]), "learned": np.array([24.0, 2.0, 2.0, 2.0])},
        similarity=zero,
        cosine=np.array([0.0, 0.0, 0.0, 0.3]),
        query={},
        anchors=None,
        liked=np.array([[1.0, 0.2, 0.2, 0.2]]),
    )

    reasons = reasons_for(reader, pool, [0, 1, 2, 3], evidence, PhraseHits([[]], pool))

    credit = because_you_liked(liked_paper.title)
    assert [credit in r for r in reasons] == [False, False, True, False]  # never itself


class _Pool:
    """What _term_shares reads of a CandidatePool: its TF-IDF rows, indices sorted per row."""

    def __init__(self, vectors: sparse.csr_matrix) -> None:
        self.vectors = vectors


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    papers=st.integers(min_value=0, max_value=12),
    density=st.sampled_from([0.0, 0.05, 0.3, 1.0]),
    terms=st.integers(min_value=0, max_value=6),
)
def test_term_shares_are_each_terms_weight_times_its_value_in_the_pick(seed, papers, density, terms) -> None:
    rng = np.random.default_rng(seed)
    vectors = sparse.random(papers, 40, density=density, format="csr", random_state=rng)
    vectors.sort_indices()
    columns = rng.integers(0, 40, size=terms)
    query = QueryTerms(
        grams=[f"g{c}" for c in columns],
        quotes=[f"g{c}" for c in columns],
        columns=columns.astype(np.int64),
        weights=rng.normal(size=terms),
        words=[frozenset({f"g{c}"}) for c in columns],
    )
    top = rng.permutation(papers)[: rng.integers(0, papers + 1)] if papers else np.array([], dtype=np.intp)

    shares = _term_shares(query, _Pool(vectors), top)

    dense = vectors.toarray()
    pairs = list(zip(columns, query.weights, strict=True))
    expected = np.array([[w * dense[p, c] if dense[p, c] != 0 else 0.0 for c, w in pairs] for p in top])
    expected = expected.reshape(len(top), terms)
    assert np.array_equal(shares, expected)
