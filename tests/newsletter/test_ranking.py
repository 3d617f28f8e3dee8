"""Ranking (newsletter.services.ranking) on the real sample papers, and the queries of the hot path."""

from __future__ import annotations

import dataclasses
import random
from datetime import datetime, timedelta

import numpy as np
import pytest
from django.utils import timezone

from newsletter.selectors import digest_preview, interests_preview, profiles_complete
from newsletter.services.candidates import CandidatePool, PhraseHits, Pick, Profile, Taste, implied_topics
from newsletter.services.delivery import deliveries_send
from newsletter.services.dispatch import digests_dispatch
from newsletter.services.ranking import rank
from papers.models import Paper, Topic
from papers.selectors import CandidatePaper, papers_candidates, topic_names
from papers.services.parsers import parse
from papers.services.text import content_tokens, phrase_columns, vectorize
from tests.factories import PaperFactory, SubscriberFactory

pytestmark = pytest.mark.django_db


def pool_now(*, since: datetime | None = None) -> CandidatePool:
    now = timezone.now()
    return CandidatePool(
        papers_candidates(since=since or now - timedelta(days=1), limit=1000), topic_names(), now
    )


def profile(
    *,
    subscriber_id: int = 1,
    interests: str = "",
    topics: tuple[str, ...] = (),
    excluded: str = "",
    limit: int = 10,
    since: datetime | None = None,
) -> Profile:
    topic_ids = tuple(Topic.objects.filter(slug__in=topics).values_list("id", flat=True))
    assert len(topic_ids) == len(topics), "unknown topic slug in the test"
    return Profile(
        subscriber_id=subscriber_id,
        topic_ids=topic_ids,
        interests=interests,
        excluded_keywords=excluded,
        limit=limit,
        since=since or timezone.now() - timedelta(days=1),
    )


def rank_one(
    pr: Profile, pool: CandidatePool, already_sent: set[tuple[int, int]] | None = None
) -> list[Pick]:
    return rank(profiles=[pr], pool=pool, already_sent=already_sent or set())[0]


def text_of(paper: CandidatePaper) -> str:
    return f"{paper.title} {paper.abstract}".lower()


def ids(picks: list[Pick]) -> list[int]:
    return [pick.paper.id for pick in picks]


# --- relevance ---------------------------------------------------------------------------------


def test_speech_recognition_interest_puts_speech_papers_first(sample_papers) -> None:
    pool = pool_now()
    picks = rank_one(profile(interests="speech recognition"), pool)

    assert picks, "the sample data has speech papers"
    assert "speech recognition" in text_of(picks[0].paper)
    # Every pick with "speech" in its title ranks above every pick that never mentions speech.
    about_speech = [i for i, p in enumerate(picks) if "speech" in p.paper.title.lower()]
    unrelated = [i for i, p in enumerate(picks) if "speech" not in text_of(p.paper)]
    assert about_speech
    assert not unrelated or max(about_speech) < min(unrelated)
    # The papers most about speech in the whole pool are all in the digest.
    titled = {p.id for p in pool.papers if "speech" in p.title.lower()}
    assert titled <= set(ids(picks))
    # Each pick says why, in terms of the interest; none is "popular" (no paper here has upvotes).
    assert all(p.reasons for p in picks)
    assert not any("Among the most popular new papers" in p.reasons for p in picks)
    assert all(
        r.startswith(
            ("Mentions “speech recognition”", "Matches your interest in ", "Close to your interests")
        )
        for p in picks
        for r in p.reasons
    )


def test_topic_speech_audio_gets_exactly_the_papers_tagged_with_it(sample_papers) -> None:
    pool = pool_now()
    speech = Topic.objects.get(slug="speech-audio")
    tagged = {p.id for p in pool.papers if speech.id in p.topic_ids}
    assert 0 < len(tagged) < 10, "the test needs fewer tagged papers than the limit"

    picks = rank_one(profile(topics=("speech-audio",), limit=10), pool)

    assert set(ids(picks)) == tagged
    assert all(f"Matches your topic: {speech.name}" in p.reasons for p in picks)


def test_a_confident_reader_model_takes_over_most_of_the_topics_weight(sample_papers) -> None:
    """The chosen topics count 3 without a model and 1 at full confidence (a topic holds a broad
    field; the likes say which part of it the reader means): a model with no weights of its own
    leaves only the topics term to change: by 2 x the paper's share of full topic strength."""
    pool = pool_now()
    bare = profile(topics=("speech-audio",), limit=300)
    empty = Taste(features=np.zeros(0, np.int32), weights=np.zeros(0, np.float32))
    scores = [
        {p.paper.id: p.score for p in rank_one(dataclasses.replace(bare, taste=t), pool)}
        for t in (dataclasses.replace(empty, confidence=0.0), dataclasses.replace(empty, confidence=1.0))
    ]

    column = pool.topic_column[Topic.objects.get(slug="speech-audio").id]
    strength = {paper.id: pool.topics[j, column] for j, paper in enumerate(pool.papers)}
    assert scores[0] and scores[0].keys() == scores[1].keys()
    for paper_id, score in scores[0].items():
        share = min(strength[paper_id] / 0.5, 1.0)  # ranking.TOPIC_FULL
        assert share > 0
        assert score - scores[1][paper_id] == pytest.approx((3.0 - 1.0) * share, abs=1e-3)


def test_quantization_interest_puts_efficiency_papers_first(sample_papers) -> None:
    pool = pool_now()
    efficiency = Topic.objects.get(slug="efficiency").id
    picks = rank_one(profile(interests="quantization", limit=5), pool)

    assert len(picks) == 5
    assert all("quantiz" in text_of(p.paper) for p in picks)
    assert efficiency in picks[0].paper.topic_ids
    assert picks[0].reasons[0] == "Mentions “quantization”"
    # Papers with quantization in the title outrank those that only mention it.
    in_title = [i for i, p in enumerate(picks) if "quantiz" in p.paper.title.lower()]
    assert in_title == list(range(len(in_title))) and in_title


def test_interest_and_topic_together_rank_above_either_alone(sample_papers) -> None:
    pool = pool_now()
    picks = rank_one(
        profile(interests="retrieval-augmented generation, reranking", topics=("retrieval-rag",)), pool
    )
    rag = Topic.objects.get(slug="retrieval-rag")

    assert all(rag.id in p.paper.topic_ids for p in picks)
    first = picks[0]
    assert first.reasons[0] == f"Matches your topic: {rag.name}"
    assert any(r.startswith("Mentions “retrieval-augmented generation”") for r in first.reasons)
    # Topic plus keyword beats topic only.
    topic_only = [p for p in picks if len(p.reasons) == 1]
    assert topic_only and all(first.score > p.score for p in topic_only)


def test_free_text_interests_match_by_similarity(sample_papers) -> None:
    pool = pool_now()
    picks = rank_one(profile(interests="We build agents that use tools and plan over long horizons"), pool)

    assert picks
    assert all("agent" in content_tokens(text_of(p.paper)) for p in picks[:2])
    assert picks[0].reasons[0].startswith("Matches your interest in ")
    assert "agent" in picks[0].reasons[0]


def test_no_preferences_gets_the_newest_popular_papers() -> None:
    quiet = PaperFactory(title="A quiet paper", upvotes=0)
    loud = PaperFactory(title="A loud paper", upvotes=300, github_stars=5000)
    pool = pool_now()

    picks = rank_one(profile(limit=2), pool)

    assert ids(picks) == [loud.id, quiet.id]
    assert picks[0].reasons == ("Trending: 300 upvotes", "5,000 GitHub stars")
    assert picks[1].reasons == ("Among the most popular new papers",)


def test_a_hashed_column_collision_is_not_a_keyword_hit() -> None:
    # "face year" and "speech recognition" hash to the same feature column of the text model.
    assert phrase_columns("face year") == phrase_columns("speech recognition")
    colliding = PaperFactory(
        title="Estimating age from photographs across decades",
        abstract=(
            "We estimate the age of a person from a photograph. A face year label is attached to every "
            "portrait of a new archive of scanned photographs taken between 1900 and 2000. A convolutional "
            "regressor trained on the archive predicts age within four years on held-out portraits, and "
            "an analysis of errors shows that lighting and film grain explain most of the remaining gap."
        ),
    )
    real = PaperFactory(title="Robust speech recognition", abstract="Speech recognition for noisy audio.")
    pool = pool_now()

    hits = PhraseHits([["speech recognition"]], pool)
    column = {paper.id: j for j, paper in enumerate(pool.papers)}
    assert hits.counts[0, column[real.id]] == 1
    assert hits.counts[0, column[colliding.id]] == 0
    picks = {pick.paper.id: pick for pick in rank_one(profile(interests="speech recognition"), pool)}
    assert next(iter(picks)) == real.id
    assert picks[real.id].reasons[0] == "Mentions “speech recognition”"
    # The shared column still weighs in the TF-IDF similarity (an issue of the text model), but the
    # paper is not said to mention the phrase.
    assert not any(r.startswith("Mentions") for r in getattr(picks.get(colliding.id), "reasons", ()))
    # Nor does the collision exclude a paper.
    assert colliding.id in ids(rank_one(profile(interests="photograph", excluded="speech recognition"), pool))


# --- eligibility -------------------------------------------------------------------------------


def test_excluded_keywords_remove_papers(sample_papers) -> None:
    pool = pool_now()
    wanted = profile(interests="speech recognition", limit=20)
    before = rank_one(wanted, pool)
    multimodal = {p.paper.id for p in before if "multimodal" in content_tokens(text_of(p.paper))}
    assert multimodal, "the test needs a multimodal paper among the speech picks"

    after = rank_one(dataclasses.replace(wanted, excluded_keywords="multimodal; vision"), pool)

    assert after
    assert not any({"multimodal", "vision"} & set(content_tokens(text_of(p.paper))) for p in after)
    assert multimodal.isdisjoint(ids(after))
    # Only the excluded papers went; the others keep their order.
    kept = [i for i in ids(before) if i in set(ids(after))]
    assert ids(after)[: len(kept)] == kept


def test_excluded_keywords_match_words_not_substrings() -> None:
    PaperFactory(title="An encoder for images", abstract="We train an encoder.")
    pool = pool_now()

    picks = rank_one(profile(interests="encoder", excluded="code"), pool)

    assert len(picks) == 1


def test_already_sent_papers_never_come_back(sample_papers) -> None:
    pool = pool_now()
    wanted = profile(subscriber_id=7, interests="quantization", limit=5)
    first = rank_one(wanted, pool)

    sent = {(7, paper_id) for paper_id in ids(first[:2])}
    # Pairs of another subscriber change nothing for this one.
    other = {(8, paper_id) for paper_id in ids(first)}
    second = rank_one(wanted, pool, already_sent=sent | other)

    assert set(ids(first[:2])).isdisjoint(ids(second))
    assert ids(second)[:3] == ids(first)[2:5]


def test_window_is_respected() -> None:
    old = PaperFactory(title="Quantization, old")
    new = PaperFactory(title="Quantization, new")
    now = timezone.now()
    Paper.objects.filter(pk=old.pk).update(ingested_at=now - timedelta(days=3))
    Paper.objects.filter(pk=new.pk).update(ingested_at=now - timedelta(hours=1))
    pool = pool_now(since=now - timedelta(days=10))

    assert ids(rank_one(profile(interests="quantization", since=now - timedelta(days=2)), pool)) == [new.id]
    assert set(ids(rank_one(profile(interests="quantization", since=now - timedelta(days=4)), pool))) == {
        old.id,
        new.id,
    }
    assert rank_one(profile(interests="quantization", since=now), pool) == []


def test_limit_is_respected(sample_papers) -> None:
    pool = pool_now()
    ten = rank_one(profile(interests="language model", limit=10), pool)
    three = rank_one(profile(interests="language model", limit=3), pool)

    assert len(ten) == 10
    assert ids(three) == ids(ten)[:3]
    assert rank_one(profile(interests="language model", limit=0), pool) == []


# --- determinism and chunks --------------------------------------------------------------------


def test_order_is_deterministic_and_ties_go_to_the_newer_paper(sample_papers) -> None:
    pool = pool_now()
    # A topic-only profile: many papers tie on the same score.
    wanted = profile(topics=("language-models",), limit=15)
    picks = rank_one(wanted, pool)
    assert len({p.score for p in picks}) < len(picks), "the test needs ties"

    assert [(p.paper.id, p.score, p.reasons) for p in rank_one(wanted, pool)] == [
        (p.paper.id, p.score, p.reasons) for p in picks
    ]
    assert [(p.score, p.paper.id) for p in picks] == sorted(
        ((p.score, p.paper.id) for p in picks), reverse=True
    )
    # The order of the pool does not matter, not even for ties cut at the limit.
    shuffled = list(pool.papers)
    random.Random(4).shuffle(shuffled)
    reordered = CandidatePool(shuffled, topic_names(), timezone.now())
    assert ids(rank_one(wanted, reordered)) == ids(picks)


def test_a_chunk_ranks_each_subscriber_as_if_alone(sample_papers) -> None:
    now = timezone.now()
    some = Paper.objects.order_by("id")[:40]
    # Some popularity, so that the popularity signal takes part too.
    for index, paper in enumerate(some):
        Paper.objects.filter(pk=paper.pk).update(upvotes=index * 7, github_stars=index * 40)
    pool = pool_now()
    profiles = [
        profile(subscriber_id=1, interests="speech recognition"),
        profile(subscriber_id=2, topics=("efficiency",), interests="quantization, pruning", limit=6),
        profile(subscriber_id=3, interests="retrieval", excluded="multimodal"),
        profile(subscriber_id=4),
        profile(subscriber_id=5, topics=("safety-alignment", "reinforcement-learning"), limit=3),
        profile(subscriber_id=6, interests="agents, tool use", since=now + timedelta(days=1)),
        profile(subscriber_id=7, interests="Benchmarks for evaluating code generation by language models"),
    ]
    already_sent = {(2, pick.paper.id) for pick in rank_one(profiles[1], pool)[:2]}

    together = rank(profiles=profiles, pool=pool, already_sent=already_sent)
    alone = [rank_one(pr, pool, already_sent) for pr in profiles]

    assert together == alone
    assert together[5] == []  # nothing is in a window that starts tomorrow
    assert sum(len(picks) for picks in together) > 30


# --- queries of the hot path -------------------------------------------------------------------


def _due_subscribers(count: int) -> None:
    past = timezone.now() - timedelta(minutes=1)
    topics = list(Topic.objects.all())
    for index in range(count):
        SubscriberFactory(
            next_send_at=past,
            interests=["speech recognition", "quantization", "retrieval, reranking", ""][index % 4],
            topics=[topics[index % len(topics)]],
            papers_per_digest=5,
            email_format=["html", "text"][index % 2],
        )


def _dispatch(count: int) -> list[int]:
    _due_subscribers(count)
    (chunk,) = digests_dispatch(chunk_size=1000)
    assert len(chunk) == count
    return chunk


# Queries of deliveries_send for a chunk, whatever its size: is the brake on, claim (4 with the
# savepoint), reload, suppressions, recorded picks, candidates (2), topics, sent (and rated) pairs,
# subscribers' topics, the titles of their libraries (learning.library), their fitted feedback
# models, the topics' texts (for the topics interests imply), insert of the picks (returning what it
# kept: no read-back), topic names, the brake check, the SET / RESET of synchronous_commit around the
# sending, and the synchronous write that makes the chunk's outcomes durable (4 with the savepoint).
# On top of these, one UPDATE per email sent. (Interests that may name a paper, or liked papers to
# name in reasons, add one query for those papers.)
SEND_QUERIES_PER_CHUNK = 24


@pytest.mark.parametrize("count", [20, 40])
def test_send_queries_are_fixed_per_chunk_plus_one_per_email(
    sample_papers, django_assert_max_num_queries, count: int
) -> None:
    chunk = _dispatch(count)

    with django_assert_max_num_queries(SEND_QUERIES_PER_CHUNK + count) as captured:
        result = deliveries_send(delivery_ids=chunk)

    assert len(result.sent) == count
    marked_sent = [
        q["sql"]
        for q in captured.captured_queries
        if q["sql"].startswith("UPDATE newsletter_delivery SET status = 'sent'")
    ]
    assert len(marked_sent) == count
    assert len(captured) - count == SEND_QUERIES_PER_CHUNK


# Due ids, then per chunk: lock and re-check, insert deliveries (returning their ids), move the
# schedules (and the savepoint pair of the chunk's transaction).
DISPATCH_QUERIES_ONE_CHUNK = 6


@pytest.mark.parametrize("count", [20, 40])
def test_dispatch_queries_do_not_grow_with_subscribers(
    sample_papers, django_assert_num_queries, count: int
) -> None:
    _due_subscribers(count)

    with django_assert_num_queries(DISPATCH_QUERIES_ONE_CHUNK):
        chunks = digests_dispatch(chunk_size=1000)

    assert [len(c) for c in chunks] == [count]


# --- interests that name a paper ---------------------------------------------------------------


def test_an_interest_naming_a_paper_gets_papers_like_it(sample_papers) -> None:
    named = Paper.objects.get(title__startswith="DeBERTaV3:")
    # Typed loosely: the match is on the normalized title, as ingest dedupes.
    typed = named.title.upper().replace(":", " -") + "  "
    (pr,) = profiles_complete([profile(interests=f"{typed}; quantization")], models=False)
    pool = pool_now()

    picks = rank_one(pr, pool)

    assert [a.id for a in pr.anchors] == [named.pk]
    assert len(picks) == 10
    assert named.pk not in ids(picks)  # what the reader named, they know
    similar = [p for p in picks if f"Similar to “{named.title}”" in p.reasons]
    assert len(similar) >= 5
    assert any("Mentions “quantization”" in p.reasons for p in picks)


@pytest.mark.parametrize("index", range(4))
def test_the_first_title_of_each_seed_list_fills_a_digest(sample_papers, sample_files, index: int) -> None:
    first_title = parse(sample_files[index].read_bytes()).records[0].title
    now = timezone.now()

    picks = interests_preview(
        interests=first_title, topic_ids=[], limit=11, since=now - timedelta(days=1), now=now
    )

    assert len(picks) == 11
    assert all(p.reasons[0] == f"Similar to “{first_title}”" for p in picks[:5])


def test_a_sentence_that_names_no_paper_still_fills_the_digest(sample_papers) -> None:
    picks = rank_one(
        profile(interests="How should masked language models be pre-trained for understanding?"), pool_now()
    )

    assert len(picks) == 10
    assert picks[0].reasons[0].startswith("Matches your interest in “")


# --- followed authors --------------------------------------------------------------------------


def test_papers_by_a_followed_author_come_first_with_their_reason(sample_papers) -> None:
    by_her = PaperFactory(
        title="Protein folding with diffusion", abstract="Proteins fold.", authors=["Zoë Ł. Müller-Öz", "Bob"]
    )
    pool = pool_now()
    reader = dataclasses.replace(
        profile(interests="speech recognition", limit=3), followed_authors="Nobody Known; zoe l muller oz"
    )

    picks = rank_one(reader, pool)

    assert picks[0].paper.id == by_her.pk  # unrelated to the interests, yet always in, and first
    assert picks[0].reasons[0] == "By Zoë Ł. Müller-Öz, whom you follow"
    assert len(picks) == 3
    assert all("whom you follow" not in " ".join(p.reasons) for p in picks[1:])


def test_a_followed_authors_paper_still_respects_window_history_and_exclusions() -> None:
    old = PaperFactory(title="Old work", authors=["Ada Lovelace"])
    sent = PaperFactory(title="Sent work", authors=["Ada Lovelace"])
    excluded = PaperFactory(title="Blockchain work", abstract="A blockchain.", authors=["Ada Lovelace"])
    fresh = PaperFactory(title="Fresh work", authors=["ADA  LOVELACE"])
    Paper.objects.filter(pk=old.pk).update(ingested_at=timezone.now() - timedelta(days=3))
    reader = dataclasses.replace(
        profile(excluded="blockchain", since=timezone.now() - timedelta(days=1)),
        followed_authors="Ada Lovelace",
    )

    picks = rank_one(reader, pool_now(since=timezone.now() - timedelta(days=5)), already_sent={(1, sent.pk)})

    assert ids(picks)[0] == fresh.pk
    assert {old.pk, sent.pk, excluded.pk}.isdisjoint(ids(picks))


def test_the_followed_authors_preference_reaches_the_digest() -> None:
    PaperFactory(title="Unrelated cooking", abstract="Recipes.", authors=["Grace Hopper"], upvotes=0)
    subscriber = SubscriberFactory(interests="", followed_authors="grace hopper")

    (pick,) = [
        p
        for p in digest_preview(subscriber=subscriber, now=timezone.now())
        if p.paper.title == "Unrelated cooking"
    ]
    assert pick.reasons[0] == "By Grace Hopper, whom you follow"


def test_a_narrow_interest_is_filled_up_with_papers_that_share_a_term(
    sample_papers,
) -> None:
    pool = pool_now()
    interests = "speech recognition"
    sharing = int(((vectorize([interests]) @ pool.vectors_t).toarray() > 0).sum())

    picks = rank_one(profile(interests=interests, limit=60), pool)

    assert sharing >= 20
    assert len(picks) == min(60, sharing)  # not cut short while such papers remain
    assert "speech recognition" in text_of(picks[0].paper)
    mentions = [bool({"speech", "recognition"} & set(content_tokens(text_of(p.paper)))) for p in picks]
    assert sum(mentions) >= len(picks) - 2  # (hashed features: a rare collision shares a column)


def test_interests_imply_the_topics_their_text_is_closest_to() -> None:
    topics = {
        1: "Speech & audio. Speech recognition and synthesis. speech recognition, ASR, text to speech",
        2: "Code generation. Models that write code. code generation, program synthesis, compiler",
    }

    implied = implied_topics(["end-to-end speech recognition", "", "program synthesis for code"], topics)

    assert implied == [((1, 1.0),), (), ((2, 1.0),)]
    assert implied_topics(["speech recognition"], {}) == [()]
