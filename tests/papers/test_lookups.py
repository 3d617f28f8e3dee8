import pytest
from django.db import connection
from django.db.models import Q
from django.test.utils import CaptureQueriesContext

from newsletter.models import Delivery, Subscriber
from papers.models import Paper
from tests.factories import DeliveryFactory, PaperFactory, SubscriberFactory

pytestmark = pytest.mark.django_db


def test_in_array_finds_what_in_finds_with_one_parameter():
    papers = PaperFactory.create_batch(4)
    ids = [papers[0].pk, papers[2].pk, papers[3].pk, 10**12, None]
    with CaptureQueriesContext(connection) as queries:
        found = sorted(Paper.objects.filter(id__in_array=ids).values_list("id", flat=True))
    assert found == sorted(Paper.objects.filter(id__in=ids).values_list("id", flat=True))
    assert found == sorted([papers[0].pk, papers[2].pk, papers[3].pk])
    assert "= ANY(" in queries[0]["sql"]


def test_in_array_on_text_and_foreign_keys():
    subscribers = SubscriberFactory.create_batch(3)
    deliveries = [DeliveryFactory(subscriber=s) for s in subscribers]
    emails = [subscribers[0].email, subscribers[2].email, "nobody@example.org"]
    assert set(Subscriber.objects.filter(email__in_array=emails)) == {subscribers[0], subscribers[2]}
    chosen = [subscribers[1].pk]
    assert list(Delivery.objects.filter(subscriber_id__in_array=chosen)) == [deliveries[1]]
    assert list(Delivery.objects.filter(subscriber__in_array=chosen)) == [deliveries[1]]


def test_an_empty_list_matches_nothing_without_a_query(django_assert_num_queries):
    PaperFactory()
    with django_assert_num_queries(0):
        assert list(Paper.objects.filter(id__in_array=[])) == []
    assert Paper.objects.filter(Q(id__in_array=[]) | Q(title_key__in_array=[])).count() == 0


def test_a_subquery_stays_an_in():
    paper = PaperFactory()
    assert list(Paper.objects.filter(id__in_array=Paper.objects.values("id"))) == [paper]
