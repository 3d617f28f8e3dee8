"""Publication dates outside 1990-01-01 .. one year ahead are rejected per record with the reason, a
batch keeps its valid records, and rows stored before the bounds existed are repaired (issue 18 item 3)."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse

from newsletter.services.tokens import Purpose, token_make
from papers.models import Paper
from papers.services.ingest import papers_ingest_bytes
from papers.services.parsers import parse
from tests.factories import PaperFactory, SubscriberFactory
from tests.papers.helpers import ABSTRACT

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 10, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _now() -> Iterator[None]:
    with time_machine.travel(NOW, tick=False):
        yield


def hf(*papers: dict) -> bytes:
    return json.dumps([{"paper": paper} for paper in papers]).encode()


def hf_paper(arxiv_id: str, published: str | None, title: str = "Date probe") -> dict:
    return {"id": arxiv_id, "title": title, "summary": "abc", "publishedAt": published}


@pytest.mark.parametrize(
    "published",
    [
        "9999-12-31T23:59:59-01:00",  # the probe: year 10000 in UTC
        "0001-01-01T00:00:00+01:00",  # the probe: 1 BC in UTC
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00Z",
        "1989-12-31T23:59:59Z",
        "2027-03-03T10:00:00Z",  # a year and a day ahead
    ],
)
def test_an_out_of_range_date_rejects_the_record_with_its_reason(published: str) -> None:
    report = papers_ingest_bytes(data=hf(hf_paper("2501.00101", published)), name="probe.json")

    assert report.created == 0
    assert not Paper.objects.exists()
    [(name, rejection)] = report.rejected
    assert (name, rejection.position) == ("probe.json", "item 1")
    assert "publication date" in rejection.reason
    assert "1990-01-01" in rejection.reason


@pytest.mark.parametrize(
    ("published", "stored"),
    [
        ("1990-01-01T00:00:00Z", datetime(1990, 1, 1, tzinfo=UTC)),
        ("2027-03-02T10:00:00Z", datetime(2027, 3, 2, 10, tzinfo=UTC)),  # a year ahead, exactly
        ("2026-03-02T10:00:00+14:00", datetime(2026, 3, 1, 20, tzinfo=UTC)),
    ],
)
def test_dates_at_the_bounds_are_kept(published: str, stored: datetime) -> None:
    report = papers_ingest_bytes(data=hf(hf_paper("2501.00101", published)), name="ok.json")

    assert report.rejected == []
    assert Paper.objects.get().published_at == stored


def test_an_offset_postgresql_cannot_store_loses_nothing_of_the_batch() -> None:
    # +16:00 is a valid Python offset but not a PostgreSQL one: it crashed the batch and lost the
    # valid paper next to it. The instant is stored in UTC.
    batch = hf(
        hf_paper("2501.00101", "2025-05-01T10:00:00+16:00", title="Far east"),
        hf_paper("2501.00102", "2025-05-01T10:00:00Z", title="A valid neighbour"),
    )

    report = papers_ingest_bytes(data=batch, name="batch.json")

    assert (report.created, report.rejected, report.errors) == (2, [], [])
    assert dict(Paper.objects.values_list("title", "published_at")) == {
        "Far east": datetime(2025, 4, 30, 18, tzinfo=UTC),
        "A valid neighbour": datetime(2025, 5, 1, 10, tzinfo=UTC),
    }


def test_a_bad_date_never_costs_the_valid_records_of_the_batch() -> None:
    batch = hf(
        hf_paper("2501.00101", "9999-12-31T23:59:59-01:00", title="Year ten thousand"),
        hf_paper("2501.00102", "2025-05-01T10:00:00Z", title="A valid neighbour"),
        hf_paper("2501.00103", "0001-01-01T00:00:00+01:00", title="One BC"),
    )

    report = papers_ingest_bytes(data=batch, name="batch.json")

    assert report.created == 1
    assert [r.position for _, r in report.rejected] == ["item 1", "item 3"]
    assert list(Paper.objects.values_list("title", flat=True)) == ["A valid neighbour"]


def test_arxiv_and_listing_dates_have_the_same_bounds() -> None:
    atom = (
        '<feed xmlns="http://www.w3.org/2005/Atom"><entry><id>http://arxiv.org/abs/2501.00101v1</id>'
        "<title>Old</title><summary>abc</summary><published>1970-01-01T00:00:00Z</published></entry></feed>"
    )
    listing = f"Jan 1, 1970\n\nAn old paper\n\n{ABSTRACT}\n"

    for data in (atom.encode(), listing.encode()):
        result = parse(data)
        assert result.records == []
        [rejection] = result.rejections
        assert "publication date 1970-01-01" in rejection.reason


# --- rows stored before the bounds ----------------------------------------------------------------

repair = importlib.import_module("papers.migrations.0005_published_dates_in_range").published_dates_repair


def store_raw_date(paper: Paper, sql_timestamp: str) -> None:
    """What ingest stored before the bounds: values Python cannot even read back."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE papers_paper SET published_at = %s::timestamptz WHERE id = %s", [sql_timestamp, paper.pk]
        )


def test_the_migration_clears_dates_postgresql_stored_but_python_cannot_read() -> None:
    year_10000 = PaperFactory(title="Year ten thousand")
    one_bc = PaperFactory(title="One BC")
    too_old = PaperFactory(title="Too old")
    fine = PaperFactory(title="Fine", published_at=datetime(2025, 5, 1, tzinfo=UTC))
    store_raw_date(year_10000, "10000-01-01 00:59:59+00")
    store_raw_date(one_bc, "0001-12-31 23:00:00+00 BC")
    store_raw_date(too_old, "1970-01-01 00:00:00+00")

    repaired = repair(apps, None)

    assert repaired == 3
    assert dict(Paper.objects.values_list("title", "published_at")) == {
        "Year ten thousand": None,
        "One BC": None,
        "Too old": None,
        "Fine": fine.published_at,
    }
    assert repair(apps, None) == 0  # a second run finds nothing


def test_after_the_repair_pages_digests_and_the_admin_work(mailoutbox) -> None:
    year_10000 = PaperFactory(title="Quantization for year ten thousand", abstract="quantization " * 5)
    store_raw_date(year_10000, "10000-01-01 00:59:59+00")
    subscriber = SubscriberFactory(interests="quantization", next_send_at=NOW - timedelta(minutes=1))
    operator = get_user_model().objects.create_superuser("ops", "ops@example.org", "pw")
    staff = Client()
    staff.force_login(operator)

    repair(apps, None)

    manage = Client().get(f"/manage/{token_make(subscriber=subscriber, purpose=Purpose.MANAGE)}/")
    assert manage.status_code == 200
    assert b"Quantization for year ten thousand" in manage.content
    assert staff.get(reverse("admin:papers_paper_changelist")).status_code == 200
    assert staff.get(reverse("admin:papers_paper_change", args=[year_10000.pk])).status_code == 200
    out = StringIO()
    call_command("send_digests", "--now", stdout=out)
    assert out.getvalue().startswith("1 sent")
    assert "Quantization for year ten thousand" in mailoutbox[0].body
