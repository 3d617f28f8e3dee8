"""factory_boy factories shared by the whole suite."""

from __future__ import annotations

import factory
from django.utils import timezone

from newsletter.models import Delivery, Subscriber
from papers.models import Paper, Topic
from papers.services.latex import latex_to_text
from papers.services.records import title_key


class TopicFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Topic
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"topic-{n}")
    name = factory.Sequence(lambda n: f"Topic {n}")
    description = ""
    keywords = ""


class PaperFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Paper

    title = factory.Sequence(lambda n: f"A study of things number {n}")
    title_key = factory.LazyAttribute(lambda o: title_key(o.title))
    abstract = "We study things. The results are good and the method is general."
    abstract_clean = factory.LazyAttribute(lambda o: latex_to_text(o.abstract))
    authors = factory.LazyFunction(lambda: ["Ada Lovelace", "Alan Turing"])
    source = Paper.Source.LISTING
    upvotes = None


class SubscriberFactory(factory.django.DjangoModelFactory):
    """An active subscriber due for nothing yet; pass next_send_at to make one due."""

    class Meta:
        model = Subscriber
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"reader{n}@example.org")
    status = Subscriber.Status.ACTIVE
    confirmed_at = factory.LazyFunction(timezone.now)
    timezone = "UTC"
    send_hour = 8
    frequency = Subscriber.Frequency.DAILY

    @factory.post_generation
    def topics(self, create: bool, extracted, **kwargs) -> None:
        if create and extracted:
            self.topics.set(extracted)


class DeliveryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Delivery

    subscriber = factory.SubFactory(SubscriberFactory)
    period = factory.Sequence(lambda n: f"2026-01-{(n % 28) + 1:02d}-{n}")
    scheduled_for = factory.LazyFunction(timezone.now)
    window_start = factory.LazyFunction(lambda: timezone.now() - timezone.timedelta(days=7))
    window_end = factory.LazyFunction(timezone.now)
    queued_at = factory.LazyFunction(timezone.now)
