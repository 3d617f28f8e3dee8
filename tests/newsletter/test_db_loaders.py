from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.db import connection
from psycopg.postgres import types as pg_types
from psycopg.pq import Format

from newsletter.db_loaders import _TimestamptzLoader
from newsletter.models import Delivery
from tests.factories import DeliveryFactory

pytestmark = pytest.mark.django_db


def _loader() -> type:
    connection.ensure_connection()
    return connection.connection.adapters.get_loader(pg_types["timestamptz"].oid, Format.TEXT)


def test_connections_load_timestamptz_with_the_fast_loader_in_djangos_time_zone():
    loader = _loader()
    assert issubclass(loader, _TimestamptzLoader)
    assert loader.timezone is connection.timezone


def test_timestamps_load_as_django_loads_them():
    moments = [
        datetime(2026, 12, 5, 19, 10, 27, 358240, tzinfo=UTC),
        datetime(1999, 1, 1, tzinfo=timezone(timedelta(hours=-5))),
        datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
    ]
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::timestamptz, %s::timestamptz, %s::timestamptz", moments)
        loaded = cursor.fetchone()
    assert list(loaded) == moments
    assert all(value.tzinfo is connection.timezone for value in loaded)


def test_a_model_reads_back_what_it_stored():
    delivery = DeliveryFactory(claimed_at=datetime(2026, 12, 5, 8, 0, 1, 5, tzinfo=UTC))
    loaded = Delivery.objects.select_related("subscriber").get(pk=delivery.pk)
    assert loaded.claimed_at == delivery.claimed_at
    assert loaded.claimed_at.tzinfo is connection.timezone
    assert loaded.subscriber.created_at == delivery.subscriber.created_at
