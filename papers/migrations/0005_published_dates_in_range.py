"""Clear publication dates outside 1990-01-01 .. one year ahead, stored before ingest checked them.

PostgreSQL keeps years Python cannot represent (10000, 1 BC): reading such a row raised DataError on
the manage page, in send_digests and in the admin. The update runs in SQL, so no bad row is ever
read into Python. The date becomes NULL, not the ingestion date: NULL means "unknown", pages and
emails then show the ingestion date anyway (newsletter.services.render), and a later record of the
same paper with a sane date fills it in (ingest keeps the earliest known date).
"""

from datetime import UTC, datetime, timedelta

from django.db import migrations
from django.db.models import Q

# Frozen copies of papers.services.records' bounds: a migration must not change with the code.
EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)
AHEAD = timedelta(days=365)


def published_dates_repair(apps, schema_editor) -> int:
    Paper = apps.get_model("papers", "Paper")
    latest = datetime.now(UTC) + AHEAD
    return Paper.objects.filter(Q(published_at__lt=EARLIEST) | Q(published_at__gt=latest)).update(
        published_at=None
    )


class Migration(migrations.Migration):
    dependencies = [("papers", "0004_paper_abstract_clean")]

    operations = [migrations.RunPython(published_dates_repair, migrations.RunPython.noop, elidable=True)]
