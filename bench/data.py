"""Synthetic but realistic benchmark data, built from the shipped sample papers.

Papers are variants of the 281 real sample papers (sentences of each abstract reordered, one sentence
borrowed from another paper), so the text statistics are real ones. Subscribers get 0-3 topics,
interests taken from real paper titles and keyword lists, varied time zones, hours and sizes.
`feedback_create` then gives a share of them "More like this" / "Not for me" marks and fits their
models with the production fit (newsletter.services.learning.reader_model), for the with-feedback phases.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction

from newsletter.models import Feedback, Subscriber
from newsletter.services.learning.reader_model import reader_model_fit
from papers.models import Paper, PaperTopic, Topic
from papers.services.latex import latex_to_text
from papers.services.parsers import parse_listing
from papers.services.records import title_key
from papers.services.tagging import papers_tag, topic_model_build
from papers.services.text import SAMPLE_DATA_DIR

TIMEZONES = [
    "UTC", "Europe/Berlin", "Europe/London", "America/New_York", "America/Los_Angeles",
    "Asia/Kolkata", "Asia/Shanghai", "Asia/Tokyo", "Australia/Sydney", "America/Sao_Paulo",
]  # fmt: skip
INTEREST_PHRASES = [
    "retrieval augmented generation", "speech recognition", "quantization", "mixture of experts",
    "reinforcement learning from human feedback", "chain-of-thought reasoning", "code generation",
    "vision-language models", "diffusion models", "hallucination", "multilingual", "benchmark",
    "instruction tuning", "agents", "knowledge distillation", "long context", "tokenization",
    "machine translation", "jailbreak", "synthetic data", "small language models", "reranking",
]  # fmt: skip
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def seed_corpus() -> list[tuple[str, str]]:
    seen, corpus = set(), []
    for path in sorted(SAMPLE_DATA_DIR.glob("*.txt")):
        for record in parse_listing(path.read_text(encoding="utf-8")).records:
            if title_key(record.title) not in seen:
                seen.add(title_key(record.title))
                corpus.append((record.title, record.abstract))
    return corpus


def bench_tables_reset() -> None:
    """Empty everything the benchmark writes (bench database only)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE newsletter_deliveryitem, newsletter_delivery, newsletter_subscriber_topics, "
            "newsletter_subscriber, papers_papertopic, papers_paper RESTART IDENTITY CASCADE"
        )


@dataclass
class DataTimings:
    papers_seconds: float
    tagging_seconds: float
    subscribers_seconds: float


def papers_create(*, count: int, rng: random.Random, now: datetime) -> tuple[float, float]:
    """Create `count` papers ingested over the last 36 hours; returns (insert s, tagging s)."""
    corpus = seed_corpus()
    started = time.perf_counter()
    papers = []
    for index in range(count):
        title, abstract = corpus[index % len(corpus)]
        variant = index // len(corpus)
        if variant:
            sentences = _SENTENCE.split(abstract)
            rng.shuffle(sentences)
            other = _SENTENCE.split(corpus[rng.randrange(len(corpus))][1])
            abstract = " ".join([*sentences, rng.choice(other)])
            title = f"{title} (variant {variant})"
        papers.append(
            Paper(
                title=title,
                title_key=title_key(title),
                abstract=abstract,
                abstract_clean=latex_to_text(abstract),
                authors=[f"Author {rng.randrange(10_000)}" for _ in range(rng.randint(1, 8))],
                source=Paper.Source.LISTING,
                upvotes=int(rng.paretovariate(1.2)) if rng.random() < 0.6 else None,
            )
        )
    Paper.objects.bulk_create(papers, batch_size=2000)
    with connection.cursor() as cursor:
        # auto_now_add ignores given values, so spread the ingest times afterwards.
        cursor.execute("UPDATE papers_paper SET ingested_at = %s - (id %% 2160) * interval '1 minute'", [now])
    inserted = time.perf_counter() - started

    started = time.perf_counter()
    model = topic_model_build(topics=Topic.objects.all())
    stored = list(Paper.objects.order_by("id").values_list("id", "title", "abstract"))
    for offset in range(0, len(stored), 5000):
        batch = stored[offset : offset + 5000]
        tags = papers_tag(model=model, titles=[b[1] for b in batch], abstracts=[b[2] for b in batch])
        PaperTopic.objects.bulk_create(
            [
                PaperTopic(paper_id=b[0], topic_id=t, score=s)
                for b, pairs in zip(batch, tags, strict=True)
                for t, s in pairs
            ],
            batch_size=5000,
        )
    return inserted, time.perf_counter() - started


def subscribers_create(*, count: int, rng: random.Random, now: datetime) -> float:
    started = time.perf_counter()
    topic_ids = list(Topic.objects.values_list("id", flat=True))
    titles = [t for t, _ in seed_corpus()]
    subscribers = []
    for index in range(count):
        kind = rng.random()
        if kind < 0.4:
            interests = ", ".join(rng.sample(INTEREST_PHRASES, rng.randint(1, 3)))
        elif kind < 0.8:
            interests = f"papers like {rng.choice(titles)}"
        else:
            interests = ""
        subscribers.append(
            Subscriber(
                email=f"bench{index}@example.org",
                status=Subscriber.Status.ACTIVE,
                interests=interests,
                excluded_keywords="survey" if rng.random() < 0.1 else "",
                frequency=Subscriber.Frequency.WEEKLY if rng.random() < 0.3 else Subscriber.Frequency.DAILY,
                weekday=rng.randrange(7),
                send_hour=rng.randrange(24),
                timezone=rng.choice(TIMEZONES),
                papers_per_digest=rng.choice([5, 10, 10, 15, 20]),
                email_format=Subscriber.Format.TEXT if rng.random() < 0.1 else Subscriber.Format.HTML,
                confirmed_at=now,
            )
        )
    Subscriber.objects.bulk_create(subscribers, batch_size=5000)
    through = Subscriber.topics.through
    ids = list(Subscriber.objects.order_by("id").values_list("id", flat=True))
    through.objects.bulk_create(
        [through(subscriber_id=i, topic_id=t) for i in ids for t in rng.sample(topic_ids, rng.randint(0, 3))],
        batch_size=10_000,
    )
    return time.perf_counter() - started


FEEDBACK_SHARE = 0.3  # of the subscribers (issue 9: 30%, 20 marks each)
FEEDBACK_PER_READER = 20


def feedback_create(*, rng: random.Random, now: datetime) -> float:
    """Give FEEDBACK_SHARE of the subscribers FEEDBACK_PER_READER marks each (half liked, half
    dismissed, on papers of the last day, as from recent digests) and fit their models; seconds taken."""
    started = time.perf_counter()
    subscriber_ids = list(Subscriber.objects.order_by("id").values_list("id", flat=True))
    readers = rng.sample(subscriber_ids, round(len(subscriber_ids) * FEEDBACK_SHARE))
    papers = list(Paper.objects.filter(ingested_at__gt=now - timedelta(days=1)).values_list("id", flat=True))
    marks = []
    for reader in readers:
        for number, paper_id in enumerate(rng.sample(papers, FEEDBACK_PER_READER)):
            choice = Feedback.Choice.MORE if number % 2 == 0 else Feedback.Choice.LESS
            marks.append(Feedback(subscriber_id=reader, paper_id=paper_id, choice=choice))
    Feedback.objects.bulk_create(marks, batch_size=10_000)
    for reader in readers:
        reader_model_fit(subscriber_id=reader)
    # Statistics, as autovacuum would gather them in production (it is off on the benchmark's
    # server): without them the chunks' model and history queries ran 20-40% slower in deliver-fb.
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE newsletter_feedback, newsletter_readermodel")
    return time.perf_counter() - started


def feedback_clear() -> None:
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE newsletter_feedback, newsletter_readermodel")


def bench_data_create(*, subscribers: int, papers: int, seed: int, now: datetime) -> DataTimings:
    rng = random.Random(seed)
    bench_tables_reset()
    papers_seconds, tagging_seconds = papers_create(count=papers, rng=rng, now=now)
    subscribers_seconds = subscribers_create(count=subscribers, rng=rng, now=now)
    return DataTimings(papers_seconds, tagging_seconds, subscribers_seconds)


def deliveries_reset(*, now: datetime) -> None:
    """Make every subscriber due again with a one-day window, and forget what was sent."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE newsletter_deliveryitem, newsletter_delivery RESTART IDENTITY")
        Subscriber.objects.update(
            next_send_at=now - timedelta(minutes=1), last_digest_at=now - timedelta(days=1)
        )
