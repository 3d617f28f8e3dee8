"""Operator actions in the admin, driven through the admin's own changelist POSTs."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from newsletter.models import Delivery, Subscriber, Suppression
from newsletter.services.tokens import Purpose, link, token_delivery, token_make, token_subscriber
from papers.services.ingest import papers_ingest_path
from tests.factories import DeliveryFactory, PaperFactory, SubscriberFactory
from tests.newsletter.helpers import orphan_pick

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client() -> Client:
    user = get_user_model().objects.create_superuser("ops", "ops@example.org", "pw")
    client = Client()
    client.force_login(user)
    return client


def run_action(client: Client, model: str, action: str, ids: list[int]):
    url = reverse(f"admin:newsletter_{model}_changelist")
    return client.post(url, {"action": action, "_selected_action": ids}, follow=True)


@pytest.mark.parametrize("model", ["subscriber", "delivery", "suppression", "emailevent"])
def test_changelists_render_with_filters_and_search(staff_client: Client, model: str) -> None:
    SubscriberFactory()
    response = staff_client.get(reverse(f"admin:newsletter_{model}_changelist"), {"q": "example"})
    assert response.status_code == 200


def test_papers_admin_pages_render(staff_client: Client, sample_files) -> None:
    papers_ingest_path(path=sample_files[0])
    for name in ("paper", "topic", "feed"):
        assert staff_client.get(reverse(f"admin:papers_{name}_changelist")).status_code == 200


def test_resend_puts_only_failed_deliveries_back(
    staff_client: Client, django_capture_on_commit_callbacks
) -> None:
    failed = DeliveryFactory(status=Delivery.Status.FAILED, attempts=8, last_error="550 no such user")
    sent = DeliveryFactory(status=Delivery.Status.SENT)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run_action(staff_client, "delivery", "resend", [failed.pk, sent.pk])
    failed.refresh_from_db()
    sent.refresh_from_db()
    assert (failed.status, failed.attempts, failed.last_error) == (Delivery.Status.PENDING, 0, "")
    assert sent.status == Delivery.Status.SENT
    assert len(callbacks) == 1  # one chunk queued, after commit


def test_suppress_and_unsuppress_actions(staff_client: Client) -> None:
    subscriber = SubscriberFactory(email="x@example.org")
    run_action(staff_client, "subscriber", "suppress", [subscriber.pk])
    assert Suppression.objects.get(email="x@example.org").reason == Suppression.Reason.MANUAL
    run_action(staff_client, "subscriber", "unsuppress", [subscriber.pk])
    assert not Suppression.objects.exists()


def test_send_test_digest_to_me_records_nothing(staff_client: Client, sample_files, mailoutbox) -> None:
    for path in sample_files:
        papers_ingest_path(path=path)
    subscriber = SubscriberFactory(interests="speech recognition")
    response = run_action(staff_client, "subscriber", "send_test_digest_to_me", [subscriber.pk])
    assert response.status_code == 200
    assert [m.to for m in mailoutbox] == [["ops@example.org"]]
    assert mailoutbox[0].subject.startswith("[Test] ")
    assert not Delivery.objects.exists()
    assert Subscriber.objects.get(pk=subscriber.pk).last_digest_at is None
    # "View in browser" must lead somewhere that works: there is no delivery to show.
    manage = link(subscriber=subscriber, purpose=Purpose.MANAGE)
    assert "/digests/" not in mailoutbox[0].body
    assert manage in mailoutbox[0].body
    assert staff_client.get(manage.removeprefix(settings.SITE_URL)).status_code == 200


def test_revoke_links_invalidates_every_emailed_link(staff_client: Client) -> None:
    subscriber, other = SubscriberFactory(), SubscriberFactory()
    delivery = DeliveryFactory(subscriber=subscriber)
    old = {purpose: token_make(subscriber=subscriber, purpose=purpose) for purpose in Purpose}
    old_digest = token_make(subscriber=subscriber, purpose=Purpose.DIGEST, object_id=delivery.pk)
    kept = token_make(subscriber=other, purpose=Purpose.MANAGE)

    run_action(staff_client, "subscriber", "revoke_links", [subscriber.pk])

    for purpose in (Purpose.CONFIRM, Purpose.MANAGE, Purpose.UNSUBSCRIBE):
        assert token_subscriber(token=old[purpose], purpose=purpose) is None
    assert token_delivery(token=old_digest) is None
    assert token_subscriber(token=kept, purpose=Purpose.MANAGE) == other
    fresh = token_make(subscriber=Subscriber.objects.get(pk=subscriber.pk), purpose=Purpose.MANAGE)
    assert token_subscriber(token=fresh, purpose=Purpose.MANAGE) == subscriber


def test_a_delivery_page_shows_a_pick_whose_paper_is_gone(staff_client: Client) -> None:
    # DeliveryItem has no foreign keys in the database: until the sweeper runs, a pick can point at a
    # paper deleted meanwhile. The delivery's page still opens (the paper shows as empty).
    delivery = DeliveryFactory()
    paper = PaperFactory()
    gone_id = paper.pk
    paper.delete()
    orphan_pick(delivery_id=delivery.pk, subscriber_id=delivery.subscriber_id, paper_id=gone_id)

    response = staff_client.get(reverse("admin:newsletter_delivery_change", args=[delivery.pk]))

    assert response.status_code == 200
