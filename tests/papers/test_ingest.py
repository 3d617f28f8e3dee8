"""Ingest: one row per paper whatever the source or order, idempotent re-runs, whole-batch rollback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

import pytest
import time_machine
from django.db import DatabaseError, IntegrityError

from papers.models import Paper, PaperTopic, Topic
from papers.services import ingest
from papers.services.ingest import IngestReport, papers_ingest_bytes, papers_ingest_path
from papers.services.records import title_key
from tests.factories import PaperFactory
from tests.papers.helpers import ABSTRACT, ARXIV_ATOM, HF_JSON, listing_titles, naive_key, sample_counts

pytestmark = pytest.mark.django_db

# Listing dates carry no year, so the day of the run decides them; pin it.
DAY_ONE = datetime(2025, 6, 1, 9, tzinfo=UTC)
DAY_TWO = DAY_ONE + timedelta(days=1)


# Fields whose value must not depend on which source was read first. `source` (where the paper was
# first seen) and `url` (the first link found) legitimately do.
CONTENT_FIELDS = [
    "external_id",
    "title",
    "title_key",
    "abstract",
    "authors",
    "published_at",
    "upvotes",
    "github_url",
    "github_stars",
]


@pytest.fixture(autouse=True)
def _day_one() -> Iterator[None]:
    with time_machine.travel(DAY_ONE, tick=False):
        yield


def ingest_all(paths: list[Path]) -> IngestReport:
    report = IngestReport()
    for path in paths:
        report.merge(papers_ingest_path(path=path, created_before=report.created_ids))
    return report


def snapshot() -> dict[str, dict]:
    """Every paper by title key: its content fields and topic slugs."""
    rows = {}
    for paper in Paper.objects.prefetch_related("topics"):
        row = {name: getattr(paper, name) for name in CONTENT_FIELDS}
        row["topics"] = sorted(t.slug for t in paper.topics.all())
        rows[paper.title_key] = row
    return rows


def hf_json(*papers: dict) -> bytes:
    return json.dumps([{"paper": p} for p in papers]).encode()


def hf_items() -> list[dict]:
    return json.loads(HF_JSON.read_text(encoding="utf-8"))


# --- the shipped samples -----------------------------------------------------------------------


def test_sample_files_yield_one_paper_per_distinct_title(sample_files: list[Path]) -> None:
    listings, distinct = sample_counts(sample_files)

    report = ingest_all(sample_files)

    assert (report.created, report.duplicates, report.updated, report.unchanged) == (
        distinct,
        listings - distinct,
        0,
        0,
    )
    assert report.rejected == [] and report.errors == []
    assert Paper.objects.count() == distinct
    expected_keys = {naive_key(t) for p in sample_files for _, t in listing_titles(p)}
    assert {naive_key(title) for title in Paper.objects.values_list("title", flat=True)} == expected_keys
    assert set(Paper.objects.values_list("source", flat=True)) == {Paper.Source.LISTING}


def test_second_run_over_the_samples_changes_nothing(sample_files: list[Path]) -> None:
    listings, _ = sample_counts(sample_files)
    ingest_all(sample_files)
    before = {p.pk: (p.updated_at, p.abstract, p.published_at) for p in Paper.objects.all()}
    tags_before = set(PaperTopic.objects.values_list("pk", "paper_id", "topic_id", "score"))

    with time_machine.travel(DAY_ONE + timedelta(hours=1), tick=False):
        report = ingest_all(sample_files)

    assert (report.created, report.updated, report.unchanged) == (0, 0, listings)
    assert {p.pk: (p.updated_at, p.abstract, p.published_at) for p in Paper.objects.all()} == before
    assert set(PaperTopic.objects.values_list("pk", "paper_id", "topic_id", "score")) == tags_before


def test_a_paper_listed_twice_keeps_its_earliest_listing_date(sample_files: list[Path]) -> None:
    electra = "ELECTRA: Pre-training Text Encoders as Discriminators Rather Than Generators"
    files_listing_it = [p for p in sample_files if electra in {t for _, t in listing_titles(p)}]
    assert len(files_listing_it) == 2  # listed on Mar 14 and on Mar 11

    ingest_all(sample_files)

    assert Paper.objects.get(title=electra).published_at == datetime(2025, 3, 11, tzinfo=UTC)


def test_topics_are_assigned_on_ingest(sample_files: list[Path]) -> None:
    ingest_all(sample_files)

    def slugs(title: str) -> set[str]:
        return set(Paper.objects.get(title=title).topics.values_list("slug", flat=True))

    assert "speech-audio" in slugs(
        "W2v-BERT: Combining Contrastive Learning and Masked Language Modeling for Self-Supervised Speech "
        "Pre-Training"
    )
    assert "reinforcement-learning" in slugs(
        "Direct Preference Optimization: Your Language Model is Secretly a Reward Model"
    )
    assert "efficiency" in slugs(
        "FineQuant: Unlocking Efficiency with Fine-Grained Weight-Only Quantization for LLMs"
    )
    # Generic LLM papers may fit no specific topic: there is no catch-all "Language models" any more.
    untagged = Paper.objects.filter(topics__isnull=True).count()
    assert untagged < Paper.objects.count() * 0.15
    assert not PaperTopic.objects.filter(score__lte=0).exists()


def test_query_count_per_batch_is_fixed(sample_files: list[Path], django_assert_max_num_queries) -> None:
    model = ingest.topic_model_build(topics=Topic.objects.all())
    records = len(listing_titles(sample_files[0]))
    assert records < ingest.BATCH_SIZE

    # Savepoint, two lookups, insert papers, clear and insert their topics, release: not one per paper.
    with django_assert_max_num_queries(6):
        report = papers_ingest_path(path=sample_files[0], model=model)

    assert report.created == records


def test_progress_is_reported_per_batch(sample_files: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "BATCH_SIZE", 25)
    seen: list[int] = []

    papers_ingest_path(path=sample_files[0], on_progress=seen.append)

    records = len(listing_titles(sample_files[0]))
    assert seen == [25] * (records // 25) + [records % 25]


# --- across sources ----------------------------------------------------------------------------


def test_known_papers_are_enriched_not_duplicated_across_sources(sample_files: list[Path]) -> None:
    ingest_all(sample_files)
    sample_keys = {naive_key(t) for p in sample_files for _, t in listing_titles(p)}
    items = hf_items()
    dpo_title = "Direct Preference Optimization: Your Language Model is Secretly a Reward Model"
    dpo_pk = Paper.objects.get(title=dpo_title).pk
    known = [i for i in items if naive_key(i["paper"]["title"]) in sample_keys]
    assert len(known) == 4

    from_hf = papers_ingest_path(path=HF_JSON)

    assert (from_hf.created, from_hf.updated, from_hf.unchanged) == (len(items) - len(known), len(known), 0)
    dpo = Paper.objects.get(pk=dpo_pk)
    source = items[0]["paper"]
    assert dpo.external_id == source["id"] == "2305.18290"
    assert dpo.title == dpo_title and dpo.source == Paper.Source.LISTING
    assert (dpo.upvotes, dpo.github_url, dpo.github_stars) == (
        source["upvotes"],
        source["githubRepo"],
        source["githubStars"],
    )
    assert dpo.authors == [a["name"] for a in source["authors"]]
    assert dpo.url == "https://huggingface.co/papers/2305.18290"
    assert dpo.published_at == datetime(2023, 5, 29, 17, 57, 46, tzinfo=UTC)  # earlier than the listing

    papers_before_atom = Paper.objects.count()
    from_atom = papers_ingest_path(path=ARXIV_ATOM)

    # DPO is found by id although arXiv capitalizes "Is" and breaks the title over two lines.
    assert Paper.objects.filter(external_id="2305.18290").get().pk == dpo_pk
    assert Paper.objects.get(pk=dpo_pk).title == dpo_title
    sophia = Paper.objects.get(external_id="2305.14342")  # known by title only, until now
    assert sophia.title.startswith("Sophia: A Scalable Stochastic Second-order Optimizer")
    assert sophia.source == Paper.Source.LISTING
    assert sophia.authors == ["Hong Liu", "Zhiyuan Li", "David Hall", "Percy Liang", "Tengyu Ma"]
    assert Paper.objects.count() == papers_before_atom + 2  # Attention; the H1 physics paper
    assert (from_atom.created, from_atom.updated, from_atom.unchanged) == (2, 1, 1)
    assert Paper.objects.get(external_id="hep-ex/0307015").source == Paper.Source.ARXIV


def test_ingesting_the_same_feeds_again_changes_nothing(sample_files: list[Path]) -> None:
    inputs = [*sample_files, HF_JSON, ARXIV_ATOM]
    ingest_all(inputs)
    before = snapshot()
    stamps = dict(Paper.objects.values_list("pk", "updated_at"))

    with time_machine.travel(DAY_TWO, tick=False):
        report = ingest_all(inputs)

    assert (report.created, report.updated) == (0, 0)
    assert snapshot() == before
    assert dict(Paper.objects.values_list("pk", "updated_at")) == stamps


def test_order_of_sources_does_not_change_the_final_rows(sample_files: list[Path]) -> None:
    ingest_all([*sample_files, HF_JSON])
    listing_first = snapshot()
    Paper.objects.all().delete()

    ingest_all([HF_JSON, *sample_files])
    hf_first = snapshot()

    assert hf_first == listing_first
    assert len(hf_first) == sample_counts(sample_files)[1] + 2


def test_a_richer_later_record_updates_the_paper_and_its_topics() -> None:
    title = "Listen, Attend and Spell"
    papers_ingest_bytes(data=hf_json({"title": title, "summary": "A sequence model."}), name="first.json")
    paper = Paper.objects.get()
    assert list(paper.topics.all()) == []

    richer = (
        "We present a neural speech recognition model that transcribes audio of spoken utterances to "
        "characters. The listener is a pyramidal recurrent encoder over filter bank spectra; the speller "
        "is an attention-based decoder. On a Google voice search task the model reaches a word error rate "
        "competitive with state-of-the-art speech recognition systems."
    )
    with time_machine.travel(DAY_TWO, tick=False):
        report = papers_ingest_bytes(
            data=hf_json(
                {
                    "id": "1508.01211v2",
                    "title": title,
                    "summary": richer,
                    "authors": [{"name": "William Chan"}],
                }
            ),
            name="second.json",
        )

    paper.refresh_from_db()
    assert (report.created, report.updated, report.unchanged) == (0, 1, 0)
    assert (paper.external_id, paper.abstract, paper.authors) == ("1508.01211", richer, ["William Chan"])
    assert paper.updated_at == DAY_TWO
    assert "speech-audio" in set(paper.topics.values_list("slug", flat=True))


def test_a_paper_repeated_within_one_run_is_a_merged_duplicate_not_an_update(monkeypatch) -> None:
    monkeypatch.setattr(ingest, "BATCH_SIZE", 2)  # the repeats fall in the same and in a later batch
    short = {"id": "2401.00001", "title": "Sparse Experts", "summary": "Experts."}
    longer = {**short, "summary": "Sparse mixtures of experts route each token to two experts."}
    other = {"id": "2401.00002", "title": "Dense Experts", "summary": "Dense."}

    first = papers_ingest_bytes(data=hf_json(short, longer, other, short), name="day.json")
    second = papers_ingest_bytes(data=hf_json(longer), name="again.json", created_before=first.created_ids)

    assert (first.created, first.duplicates, first.updated, first.unchanged) == (2, 2, 0, 0)
    assert (second.created, second.duplicates, second.updated, second.unchanged) == (0, 1, 0, 0)
    assert Paper.objects.get(external_id="2401.00001").abstract == longer["summary"]
    later_run = papers_ingest_bytes(data=hf_json(longer), name="tomorrow.json")
    assert (later_run.duplicates, later_run.unchanged) == (0, 1)
    assert first.counts() == "2 created, 2 duplicates merged, 0 updated, 0 unchanged, 0 rejected"
    assert later_run.counts() == "0 created, 0 updated, 1 unchanged, 0 rejected"


def test_popularity_never_decreases_when_an_older_file_is_reread() -> None:
    items = hf_items()
    papers_ingest_path(path=HF_JSON)
    before = snapshot()
    older = json.loads(HF_JSON.read_text(encoding="utf-8"))
    for item in older:
        paper = item["paper"]
        paper["upvotes"] = max(paper["upvotes"] - 5, 0)
        if "githubStars" in paper:
            paper["githubStars"] //= 2
        paper["authors"] = paper["authors"][:1]
        paper["summary"] = paper["summary"][:300]

    report = papers_ingest_bytes(data=json.dumps(older).encode(), name="yesterday.json")

    assert (report.created, report.updated, report.unchanged) == (0, 0, len(items))
    assert snapshot() == before

    newer = json.loads(HF_JSON.read_text(encoding="utf-8"))
    newer[0]["paper"]["upvotes"] += 100
    report = papers_ingest_bytes(data=json.dumps(newer).encode(), name="tomorrow.json")

    assert (report.updated, report.unchanged) == (1, len(items) - 1)
    assert Paper.objects.get(external_id="2305.18290").upvotes == items[0]["paper"]["upvotes"] + 100


def test_arxiv_corrects_a_title_when_the_new_title_is_free() -> None:
    PaperFactory(
        external_id="2401.00001", title="Scaling Lawz for Tokenizers", source=Paper.Source.HUGGINGFACE
    )
    feed = ARXIV_ATOM.read_text(encoding="utf-8").replace("1706.03762v7", "2401.00001v2")

    report = papers_ingest_bytes(data=feed.encode(), name="arxiv.xml")

    paper = Paper.objects.get(external_id="2401.00001")
    assert paper.title == "Attention Is All You Need"
    assert paper.title_key == title_key("Attention Is All You Need")
    assert report.updated >= 1


def test_arxiv_keeps_the_title_when_another_paper_already_has_the_new_one() -> None:
    PaperFactory(external_id="2401.00001", title="Scaling Lawz for Tokenizers")
    other = PaperFactory(title="Attention Is All You Need", abstract=ABSTRACT)
    feed = ARXIV_ATOM.read_text(encoding="utf-8").replace("1706.03762v7", "2401.00001v2")

    papers_ingest_bytes(data=feed.encode(), name="arxiv.xml")

    assert Paper.objects.get(external_id="2401.00001").title == "Scaling Lawz for Tokenizers"
    other.refresh_from_db()
    assert other.title == "Attention Is All You Need" and other.external_id is None


def test_markup_in_titles_is_stored_verbatim() -> None:
    title = "<i>In situ</i> alignment of <script>alert('x')</script> LLMs & friends"

    papers_ingest_bytes(data=hf_json({"title": title, "summary": ABSTRACT}), name="x.json")

    assert Paper.objects.get().title == title


# --- failures ----------------------------------------------------------------------------------


def test_rejected_records_do_not_block_the_others() -> None:
    data = hf_json(
        {"id": "2401.00001", "title": "Kept one", "summary": ABSTRACT},
        {"id": "2401.00002", "title": "Negative", "summary": ABSTRACT, "upvotes": -3},
        {"id": "2401.00003", "title": "\u00df" * 300, "summary": ABSTRACT},  # "ss" * 300 once folded
        {"id": "2401.00004", "title": "Kept two", "summary": ABSTRACT},
    )

    report = papers_ingest_bytes(data=data, name="daily.json")

    assert sorted(Paper.objects.values_list("title", flat=True)) == ["Kept one", "Kept two"]
    assert [(name, r.position) for name, r in report.rejected] == [
        ("daily.json", "item 2"),
        ("daily.json", "item 3"),
    ]
    assert (report.created, len(report.rejected)) == (2, 2)


def test_a_file_level_error_creates_no_rows(tmp_path: Path) -> None:
    text = HF_JSON.read_text(encoding="utf-8")
    truncated = tmp_path / "daily.json"
    truncated.write_text(text[: len(text) // 2], encoding="utf-8")

    report = papers_ingest_path(path=truncated)

    assert Paper.objects.count() == 0
    assert report.created == 0
    [(name, message)] = report.errors
    assert name == str(truncated)
    assert message.startswith("line ") and "invalid JSON" in message


def test_an_unreadable_path_is_reported_not_raised(tmp_path: Path) -> None:
    report = papers_ingest_path(path=tmp_path / "missing.txt")

    assert report.errors == [(str(tmp_path / "missing.txt"), "No such file or directory")]


def test_database_error_mid_batch_rolls_the_batch_back_and_a_rerun_completes(
    sample_files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest, "BATCH_SIZE", 40)
    path = sample_files[0]
    titles = [t for _, t in listing_titles(path)]
    assert 40 < len(titles) < 80 and len(set(titles)) == len(titles)
    real_bulk_create = PaperTopic.objects.bulk_create
    calls: list[int] = []

    def fail_second_batch(objs, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise DatabaseError("connection lost")
        return real_bulk_create(objs, *args, **kwargs)

    with (
        mock.patch.object(PaperTopic.objects, "bulk_create", side_effect=fail_second_batch),
        pytest.raises(DatabaseError),
    ):
        papers_ingest_path(path=path)

    # The first batch committed; nothing of the second batch was left behind.
    assert sorted(Paper.objects.values_list("title", flat=True)) == sorted(titles[:40])
    tagged = set(PaperTopic.objects.values_list("paper__title", flat=True))
    assert tagged and tagged <= set(titles[:40])

    report = papers_ingest_path(path=path)

    assert (report.created, report.unchanged) == (len(titles) - 40, 40)
    assert sorted(Paper.objects.values_list("title", flat=True)) == sorted(titles)


def test_an_insert_race_is_retried_without_double_counting(sample_files: list[Path]) -> None:
    real_bulk_create = Paper.objects.bulk_create
    calls: list[int] = []

    def race_once(objs, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise IntegrityError(
                'duplicate key value violates unique constraint "papers_paper_title_key_key"'
            )
        return real_bulk_create(objs, *args, **kwargs)

    with mock.patch.object(Paper.objects, "bulk_create", side_effect=race_once):
        report = papers_ingest_path(path=sample_files[0])

    records = len(listing_titles(sample_files[0]))
    assert len(calls) == 2
    assert report.created == records == Paper.objects.count()
