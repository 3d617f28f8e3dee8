"""Topic tagging: the default taxonomy, deterministic results, and sensible tags on real papers."""

from __future__ import annotations

import importlib
from collections import Counter
from pathlib import Path

import pytest
from django.apps import apps as django_apps

from papers.models import Feed, PaperTopic, Topic
from papers.services import text
from papers.services.parsers import parse
from papers.services.records import PaperRecord
from papers.services.tagging import MAX_TOPICS_PER_PAPER, TopicModel, papers_tag, topic_model_build
from tests.papers.helpers import ARXIV_ATOM, HF_JSON

pytestmark = pytest.mark.django_db

default_data = importlib.import_module("papers.migrations.0002_default_topics_and_feeds")
specific_topics = importlib.import_module("papers.migrations.0003_specific_topics")


@pytest.fixture(scope="module")
def sample_records() -> dict[str, PaperRecord]:
    """Every distinct paper of the samples and fixtures, by title."""
    paths = [*sorted(text.SAMPLE_DATA_DIR.glob("*.txt")), HF_JSON, ARXIV_ATOM]
    return {r.title: r for path in paths for r in parse(path.read_bytes()).records}


@pytest.fixture
def model() -> TopicModel:
    return topic_model_build(topics=Topic.objects.all())


def by_prefix(records: dict[str, PaperRecord], prefix: str) -> PaperRecord:
    return next(r for title, r in records.items() if title.startswith(prefix))


def tag_slugs(model: TopicModel, title: str, abstract: str) -> list[str]:
    slugs = dict(Topic.objects.values_list("id", "slug"))
    return [
        slugs[topic_id] for topic_id, _ in papers_tag(model=model, titles=[title], abstracts=[abstract])[0]
    ]


def test_default_taxonomy_and_feeds_exist_after_migrations() -> None:
    expected = {slug for slug, *_ in default_data.TOPICS} | set(specific_topics.NEW_SLUGS)

    assert len(expected) == 18
    assert set(Topic.objects.values_list("slug", flat=True)) == expected
    assert all(t.description and len(t.keyword_list) >= 5 for t in Topic.objects.all())
    assert set(Feed.objects.values_list("url", flat=True)) == {url for _, url, _ in default_data.FEEDS}


def test_keyword_list_splits_and_trims() -> None:
    topic = Topic(keywords=" speech,  ASR ,,text-to-speech , ")

    assert topic.keyword_list == ["speech", "ASR", "text-to-speech"]


def test_tagging_is_deterministic(model: TopicModel, sample_records: dict[str, PaperRecord]) -> None:
    titles = list(sample_records)
    abstracts = [r.abstract for r in sample_records.values()]

    first = papers_tag(model=model, titles=titles, abstracts=abstracts)
    second = papers_tag(model=model, titles=titles, abstracts=abstracts)
    # A new model from a fresh query, with the process-wide caches emptied as in a new worker.
    text._idf.cache_clear()
    text.phrase_columns.cache_clear()
    fresh = papers_tag(
        model=topic_model_build(topics=Topic.objects.all()), titles=titles, abstracts=abstracts
    )

    assert first == second == fresh
    # Generic LLM papers may fit no specific topic (there is no catch-all "Language models" any more).
    assert sum(1 for tags in first if tags) > len(first) * 0.85


def test_a_papers_tags_do_not_depend_on_the_rest_of_the_batch(
    model: TopicModel, sample_records: dict[str, PaperRecord]
) -> None:
    records = list(sample_records.values())[:40]

    together = papers_tag(
        model=model, titles=[r.title for r in records], abstracts=[r.abstract for r in records]
    )
    alone = [papers_tag(model=model, titles=[r.title], abstracts=[r.abstract])[0] for r in records]
    reversed_batch = papers_tag(
        model=model, titles=[r.title for r in records[::-1]], abstracts=[r.abstract for r in records[::-1]]
    )

    assert together == alone == reversed_batch[::-1]


def test_tags_are_ranked_capped_and_positive(
    model: TopicModel, sample_records: dict[str, PaperRecord]
) -> None:
    records = list(sample_records.values())

    results = papers_tag(
        model=model, titles=[r.title for r in records], abstracts=[r.abstract for r in records]
    )

    assert max(len(tags) for tags in results) == MAX_TOPICS_PER_PAPER
    for tags in results:
        scores = [score for _, score in tags]
        assert scores == sorted(scores, reverse=True)
        assert all(score > 0 for score in scores)
        assert len({topic_id for topic_id, _ in tags}) == len(tags)


@pytest.mark.parametrize(
    ("prefix", "slug"),
    [
        ("W2v-BERT:", "speech-audio"),
        ("Ask2Mask:", "speech-audio"),
        ("Augmentation Invariant Discrete Represen", "speech-audio"),
        ("Robust Speech Recognition via Large-Scal", "speech-audio"),
        ("FineQuant:", "efficiency"),
        ("EdgeQAT:", "efficiency"),
        ("LoRA:", "efficiency"),
        ("A Survey on Mixture of Experts", "efficiency"),
        ("RAG and RAU:", "retrieval-rag"),
        ("MMed-RAG:", "retrieval-rag"),
        ("Mistral-SPLADE:", "retrieval-rag"),
        ("Direct Preference Optimization:", "reinforcement-learning"),
        ("C3oT:", "reasoning"),
        ("A Lightweight Framework for High-Quality", "code"),
        ("MT-Ladder:", "multilingual"),
        ("FactCheckmate:", "safety-alignment"),
        ("SEED-Bench-2:", "evaluation-benchmarks"),
        ("SEED-Bench-2:", "multimodal"),
        ("MLLM-Tool:", "agents-tools"),
        ("A Survey of Large Language Models", "language-models"),
    ],
)
def test_real_papers_get_their_topic(
    model: TopicModel, sample_records: dict[str, PaperRecord], prefix: str, slug: str
) -> None:
    record = by_prefix(sample_records, prefix)

    assert slug in tag_slugs(model, record.title, record.abstract)


@pytest.mark.parametrize(
    ("prefix", "slug"),
    [
        ("W2v-BERT:", "code"),
        ("FineQuant:", "speech-audio"),
        ("Robust Speech Recognition via Large-Scal", "retrieval-rag"),
        ("A Lightweight Framework for High-Quality", "speech-audio"),
    ],
)
def test_real_papers_do_not_get_unrelated_topics(
    model: TopicModel, sample_records: dict[str, PaperRecord], prefix: str, slug: str
) -> None:
    record = by_prefix(sample_records, prefix)

    assert slug not in tag_slugs(model, record.title, record.abstract)


@pytest.mark.parametrize(
    ("title", "abstract"),
    [
        (
            "Sourdough fermentation in cold climates",
            "We measured how long rye sourdough starters take to rise in unheated farmhouse kitchens across "
            "three winters, and how flour from local mills changes the crumb and sourness of the bread.",
        ),
        (
            "Nesting success of tidal marsh sparrows",
            "Saltmarsh sparrows nest in high marsh grasses that flood during spring tides. Over four "
            "breeding seasons we monitored 212 nests in Connecticut marshes and found that nest elevation "
            "and tide timing explained most failures.",
        ),
    ],
)
def test_papers_unrelated_to_ml_get_no_topics(model: TopicModel, title: str, abstract: str) -> None:
    assert tag_slugs(model, title, abstract) == []


def test_a_particle_physics_paper_gets_at_most_one_topic(
    model: TopicModel, sample_records: dict[str, PaperRecord]
) -> None:
    physics = next(r for r in sample_records.values() if r.external_id == "hep-ex/0307015")

    assert len(tag_slugs(model, physics.title, physics.abstract)) <= 1


def test_edited_keywords_change_tagging(sample_records: dict[str, PaperRecord]) -> None:
    physics = next(r for r in sample_records.values() if r.external_id == "hep-ex/0307015")
    speech = by_prefix(sample_records, "Ask2Mask:")
    before = topic_model_build(topics=Topic.objects.all())
    assert "interpretability" not in tag_slugs(before, physics.title, physics.abstract)
    assert "speech-audio" in tag_slugs(before, speech.title, speech.abstract)

    # An operator widens one topic and empties another in the admin.
    Topic.objects.filter(slug="interpretability").update(
        keywords="interpretability, electron, collisions, HERA"
    )
    Topic.objects.filter(slug="speech-audio").update(name="Sound", description="", keywords="")
    after = topic_model_build(topics=Topic.objects.all())

    assert "interpretability" in tag_slugs(after, physics.title, physics.abstract)
    assert "speech-audio" not in tag_slugs(after, speech.title, speech.abstract)


def test_a_new_topic_is_used_without_other_changes(sample_records: dict[str, PaperRecord]) -> None:
    Topic.objects.create(
        slug="medicine",
        name="Medicine & health",
        description="Language and vision models for clinical and biomedical use.",
        keywords="medical, medicine, clinical, health, biomedical, patient",
    )
    model = topic_model_build(topics=Topic.objects.all())
    record = by_prefix(sample_records, "MMed-RAG:")

    assert "medicine" in tag_slugs(model, record.title, record.abstract)


def test_no_papers_or_no_topics_give_no_tags() -> None:
    empty_model = topic_model_build(topics=[])

    assert papers_tag(model=topic_model_build(topics=Topic.objects.all()), titles=[], abstracts=[]) == []
    assert papers_tag(model=empty_model, titles=["A speech paper"], abstracts=["Speech, audio, ASR."]) == [[]]


def test_keywords_match_words_not_substrings(model: TopicModel) -> None:
    # "code" is a keyword of the code topic; "encoder" and "decoded" must not count as hits.
    abstract = (
        "An encoder reads the utterance and a decoder emits characters; decoded hypotheses are rescored. "
        "The encoder and decoder are trained jointly on an encoding of the input."
    )

    assert "code" not in tag_slugs(model, "Encoder-decoder models for sequence transduction", abstract)


def test_sample_data_dir_is_the_shipped_one(sample_files: list[Path]) -> None:
    # The fixed IDF is fitted on these files; moving them would change every vector.
    assert sorted(text.SAMPLE_DATA_DIR.glob("*.txt")) == sample_files


def test_no_default_topic_covers_more_than_40_percent_of_the_sample_papers(sample_papers) -> None:
    counts = Counter(PaperTopic.objects.values_list("topic__slug", flat=True))

    assert len(sample_papers) == 281
    assert counts, "the sample papers are tagged"
    assert max(counts.values()) <= 0.4 * len(sample_papers), counts.most_common(3)


def test_the_specific_topics_migration_renames_and_retags_existing_papers(sample_papers) -> None:
    # The state before the migration: the old catch-all topic on every paper.
    old_slug, old_name, old_description, old_keywords = default_data.TOPICS[0]
    Topic.objects.filter(slug__in=specific_topics.NEW_SLUGS).delete()
    Topic.objects.filter(slug=old_slug).update(
        name=old_name, description=old_description, keywords=old_keywords
    )
    catch_all = Topic.objects.get(slug=old_slug)
    PaperTopic.objects.all().delete()
    PaperTopic.objects.bulk_create(PaperTopic(paper=p, topic=catch_all, score=0.3) for p in sample_papers)

    specific_topics.forward(django_apps, None)

    assert Topic.objects.get(slug=old_slug).name == "Pre-training & architectures"
    assert set(specific_topics.NEW_SLUGS) <= set(Topic.objects.values_list("slug", flat=True))
    counts = Counter(PaperTopic.objects.values_list("topic__slug", flat=True))
    assert max(counts.values()) <= 0.4 * len(sample_papers)
    assert counts["fine-tuning"] and counts["long-context"] and counts["nlp-tasks"]
