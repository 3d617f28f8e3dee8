"""A digest of the Hugging Face daily-papers fixture, as the pipeline records it: the papers ingested
by the real ingest, a delivery, and its picks stored, so the email and the web copy can be built."""

from __future__ import annotations

from pathlib import Path

from newsletter.models import Delivery, DeliveryItem
from newsletter.selectors import picks_recorded
from newsletter.services.candidates import Pick
from papers.models import Paper
from papers.services.ingest import papers_ingest_path
from tests.factories import DeliveryFactory, SubscriberFactory

HF_JSON = Path(__file__).resolve().parent.parent / "fixtures" / "hf_daily_papers.json"
REASONS = ["Matches your topic: Language models"]


def hf_digest(*, first: bool = True, email: str = "reader@example.org") -> tuple[Delivery, list[Pick]]:
    """The fixture's papers in file order (DPO first) as one delivery's recorded picks."""
    report = papers_ingest_path(path=HF_JSON)
    assert not report.errors and not report.rejected
    delivery = DeliveryFactory(subscriber=SubscriberFactory(email=email), first=first)
    papers = list(Paper.objects.order_by("id"))
    for position, paper in enumerate(papers, start=1):
        DeliveryItem.objects.create(
            delivery=delivery,
            subscriber=delivery.subscriber,
            paper=paper,
            position=position,
            score=1.0 / position,
            reasons=REASONS,
        )
    return delivery, picks_recorded(delivery_ids=[delivery.pk])[delivery.pk]
