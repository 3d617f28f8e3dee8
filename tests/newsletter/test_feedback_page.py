"""The "More like this" / "Not for me" links of the digests (newsletter.reader_views.feedback) and their
tokens (newsletter.services.tokens.feedback_token): GET records nothing, POST records and undoes,
a bad link is the 404 page, the endpoint is rate limited; the manage page lists and removes marks."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from newsletter.models import Delivery, DeliveryItem, Feedback, ReaderModel, Subscriber
from newsletter.services.operator import subscribers_links_revoke
from newsletter.services.tokens import Purpose, feedback_link, feedback_token, feedback_token_load, token_make
from papers.models import Paper
from tests.factories import DeliveryFactory, PaperFactory, SubscriberFactory
from tests.newsletter.helpers import INVALID_LINK_TEXT, csrf_token, manage_data, submit, url

pytestmark = pytest.mark.django_db


def feedback_url(subscriber: Subscriber, paper_id: int, choice: str = "more") -> str:
    return f"/feedback/{feedback_token(subscriber=subscriber, paper_id=paper_id)}/{choice}/"


def choice_of(subscriber: Subscriber, paper) -> str | None:
    return (
        Feedback.objects.filter(subscriber=subscriber, paper=paper).values_list("choice", flat=True).first()
    )


# --- tokens ------------------------------------------------------------------------------------


def test_a_feedback_token_is_deterministic_short_and_names_its_pair() -> None:
    subscriber, paper = SubscriberFactory(), PaperFactory()

    token = feedback_token(subscriber=subscriber, paper_id=paper.pk)

    assert token == feedback_token(subscriber=subscriber, paper_id=paper.pk)
    assert len(token) < 70
    assert subscriber.token_key[:12] not in token  # the fingerprint is signed, not carried
    assert feedback_token_load(token=token) == (subscriber, paper.pk)
    assert feedback_link(subscriber=subscriber, paper_id=paper.pk).endswith(f"/feedback/{token}/")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # signature
        lambda t: "9" + t,  # subscriber id
        lambda t: t.split(".")[0] + ".1" + t.split(".", 1)[1],  # paper id
        lambda t: t.replace(".", ":"),
        lambda t: t + "." + t,
        lambda t: "",
        lambda t: "x" * 500,
    ],
)
def test_a_tampered_feedback_token_loads_nothing(tamper) -> None:
    subscriber, paper = SubscriberFactory(), PaperFactory()

    assert feedback_token_load(token=tamper(feedback_token(subscriber=subscriber, paper_id=paper.pk))) is None


def test_other_purposes_tokens_are_no_feedback_tokens() -> None:
    subscriber = SubscriberFactory()
    for purpose in (Purpose.MANAGE, Purpose.UNSUBSCRIBE):
        assert feedback_token_load(token=token_make(subscriber=subscriber, purpose=purpose)) is None


def test_rotating_the_token_key_revokes_feedback_links() -> None:
    subscriber, paper = SubscriberFactory(), PaperFactory()
    token = feedback_token(subscriber=subscriber, paper_id=paper.pk)

    subscribers_links_revoke(subscriber_ids=[subscriber.pk])

    assert feedback_token_load(token=token) is None


def test_links_signed_with_a_previous_secret_keep_working_during_rotation(settings) -> None:
    subscriber, paper = SubscriberFactory(), PaperFactory()
    token = feedback_token(subscriber=subscriber, paper_id=paper.pk)

    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-" + "x" * 40

    assert feedback_token_load(token=token) == (subscriber, paper.pk)


# --- the page ----------------------------------------------------------------------------------


def test_get_shows_the_paper_and_one_button_and_records_nothing(client: Client) -> None:
    subscriber, paper = SubscriberFactory(), PaperFactory(title="Sparse attention at scale")

    response = client.get(feedback_url(subscriber, paper.pk))

    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    content = response.content.decode()
    assert "Sparse attention at scale" in content
    assert content.count('type="submit"') == 1
    assert not Feedback.objects.exists()


def test_post_records_the_choice_fits_the_model_and_offers_undo(
    client: Client, django_capture_on_commit_callbacks
) -> None:
    subscriber, paper = SubscriberFactory(), PaperFactory()
    page = feedback_url(subscriber, paper.pk, "more")

    with django_capture_on_commit_callbacks(execute=True):
        response = submit(client, page)

    assert response.status_code == 302 and response["Location"] == page
    assert choice_of(subscriber, paper) == Feedback.Choice.MORE
    assert ReaderModel.objects.filter(subscriber=subscriber).exists()  # the fit task ran (eager)
    shown = client.get(page).content.decode()
    assert "Saved." in shown
    assert 'name="undo"' in shown

    with django_capture_on_commit_callbacks(execute=True):
        submit(client, page, {"undo": "1"})

    assert choice_of(subscriber, paper) is None
    assert not ReaderModel.objects.filter(subscriber=subscriber).exists()


# --- what the page says a like did ------------------------------------------------------------------

SPEECH = "speech recognition, text to speech"


def sent(subscriber: Subscriber, paper: Paper) -> None:
    delivery = DeliveryFactory(subscriber=subscriber, period="2026-03-01", status=Delivery.Status.SENT)
    DeliveryItem.objects.create(
        delivery=delivery, subscriber=subscriber, paper=paper, position=0, score=1.0, reasons=[]
    )


def state(client: Client, page: str) -> str:
    html = client.get(page).content.decode()
    return " ".join(html[html.index('id="feedback-state"') :].split("</p>")[0].split())


def test_the_saved_page_says_the_next_digest_leads_with_papers_like_it_when_it_does(
    client: Client, django_capture_on_commit_callbacks, sample_papers
) -> None:
    subscriber = SubscriberFactory(interests=SPEECH, papers_per_digest=10)
    ask2mask = Paper.objects.get(title__startswith="Ask2Mask:")
    sent(subscriber, ask2mask)
    page = feedback_url(subscriber, ask2mask.pk, "more")

    with django_capture_on_commit_callbacks(execute=True):
        submit(client, page)

    w2v_bert = Paper.objects.get(title__startswith="W2v-BERT:")
    assert (
        f"Your next digest will lead with papers like this one, starting with “{w2v_bert.title}”."
        in state(client, page)
    )


def test_the_manage_page_preview_credits_the_like_once_the_model_is_fitted(
    client: Client, django_capture_on_commit_callbacks, sample_papers
) -> None:
    subscriber = SubscriberFactory(interests=SPEECH, papers_per_digest=10)
    ask2mask = Paper.objects.get(title__startswith="Ask2Mask:")
    sent(subscriber, ask2mask)
    manage_url = url("manage", subscriber, Purpose.MANAGE)
    assert "Because you liked" not in client.get(manage_url).content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        submit(client, feedback_url(subscriber, ask2mask.pk, "more"))

    html = client.get(manage_url).content.decode()
    first = html[html.index('id="preview"') :].split('class="reasons"')[1].split("</ul>")[0]
    assert f"Because you liked “{ask2mask.title}”" in first


def test_until_the_model_is_fitted_the_page_promises_nothing(client: Client, sample_papers) -> None:
    subscriber = SubscriberFactory(interests=SPEECH, papers_per_digest=10)
    ask2mask = Paper.objects.get(title__startswith="Ask2Mask:")
    page = feedback_url(subscriber, ask2mask.pk, "more")

    submit(client, page)  # the fit is queued on commit, which the test transaction never reaches

    assert not ReaderModel.objects.filter(subscriber=subscriber).exists()
    shown = state(client, page)
    assert "learning from it: reload this page in a moment" in shown
    assert "lead" not in shown


def test_a_like_that_does_not_lead_the_digest_is_not_said_to(
    client: Client, django_capture_on_commit_callbacks, sample_papers
) -> None:
    # A followed author's paper takes the first place of every digest.
    Paper.objects.filter(title__startswith="Dolma:").update(authors=["Luca Soldaini"])
    subscriber = SubscriberFactory(interests=SPEECH, papers_per_digest=10, followed_authors="Luca Soldaini")
    ask2mask = Paper.objects.get(title__startswith="Ask2Mask:")
    sent(subscriber, ask2mask)
    page = feedback_url(subscriber, ask2mask.pk, "more")

    with django_capture_on_commit_callbacks(execute=True):
        submit(client, page)

    shown = state(client, page)
    assert "lead" not in shown
    assert re.search(r"Your next digest has \d+ papers? like this one, such as “W2v-BERT:", shown)


def test_a_like_with_nothing_like_it_waiting_says_so(
    client: Client, django_capture_on_commit_callbacks
) -> None:
    subscriber = SubscriberFactory(interests="")
    paper = PaperFactory(title="Message passing on molecules", abstract="Graph networks for chemistry.")
    PaperFactory(title="Cooking pasta", abstract="Boil water, add salt.")
    sent(subscriber, paper)
    page = feedback_url(subscriber, paper.pk, "more")

    with django_capture_on_commit_callbacks(execute=True):
        submit(client, page)

    assert "none of the papers waiting for your next digest is like it yet" in state(client, page)


def test_the_other_link_flips_the_choice(client: Client) -> None:
    subscriber, paper = SubscriberFactory(), PaperFactory()
    submit(client, feedback_url(subscriber, paper.pk, "more"))

    shown = client.get(feedback_url(subscriber, paper.pk, "less")).content.decode()
    assert "replaces your earlier mark" in shown
    submit(client, feedback_url(subscriber, paper.pk, "less"))

    assert choice_of(subscriber, paper) == Feedback.Choice.LESS
    assert Feedback.objects.count() == 1


def test_post_needs_the_csrf_token(client: Client) -> None:
    subscriber, paper = SubscriberFactory(), PaperFactory()
    csrf_client = Client(enforce_csrf_checks=True)

    response = csrf_client.post(feedback_url(subscriber, paper.pk))

    assert response.status_code == 403
    assert not Feedback.objects.exists()


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize(
    "path",
    [
        "/feedback/1.2.bad/more/",
        "/feedback/{token}x/more/",
        "/feedback/{token}/maybe/",
        "/feedback/{other}/more/",  # a paper that is gone
        "/feedback/%00/more/",
        "/feedback/" + "9" * 300 + "/less/",
    ],
)
def test_a_bad_link_is_the_404_page_never_an_error(client: Client, method: str, path: str) -> None:
    subscriber, paper, gone = SubscriberFactory(), PaperFactory(), PaperFactory()
    other = feedback_token(subscriber=subscriber, paper_id=gone.pk)
    gone.delete()

    target = path.format(token=feedback_token(subscriber=subscriber, paper_id=paper.pk), other=other)
    if method == "post":  # a real form post: with the CSRF cookie and token of another page
        response = client.post(target, {"csrfmiddlewaretoken": csrf_token(client.get("/subscribe/"))})
    else:
        response = client.get(target)

    assert response.status_code == 404
    assert INVALID_LINK_TEXT in response.content.decode()
    assert not Feedback.objects.exists()


def test_posts_are_rate_limited_per_client_address(client: Client, settings) -> None:
    settings.NEWSLETTER_FEEDBACK_PER_IP_PER_HOUR = 3
    subscriber = SubscriberFactory()
    papers = [PaperFactory() for _ in range(4)]

    answers = [submit(client, feedback_url(subscriber, p.pk)).status_code for p in papers]
    other_client = submit(Client(REMOTE_ADDR="192.0.2.9"), feedback_url(subscriber, papers[3].pk))

    assert answers == [302, 302, 302, 429]
    assert other_client.status_code == 302
    assert Feedback.objects.count() == 4


# --- the manage page: what you rated, and removing it ------------------------------------------


def test_the_manage_page_lists_rated_papers_and_removes_one(client: Client) -> None:
    subscriber = SubscriberFactory()
    liked, dismissed = PaperFactory(title="A liked paper"), PaperFactory(title="A dismissed paper", url="")
    submit(client, feedback_url(subscriber, liked.pk, "more"))
    submit(client, feedback_url(subscriber, dismissed.pk, "less"))
    manage = url("manage", subscriber, Purpose.MANAGE)

    page = client.get(manage).content.decode()
    assert 'More like this:</span> <a href="' + liked.url in page
    assert 'Not for me:</span> <a href="https://arxiv.org/search/' in page  # linked as in the email

    response = client.post(
        f"{manage}feedback/remove/",
        {"paper": dismissed.pk, "csrfmiddlewaretoken": csrf_token(client.get(manage))},
    )

    assert response.status_code == 302
    assert choice_of(subscriber, dismissed) is None
    assert choice_of(subscriber, liked) == Feedback.Choice.MORE
    rated = client.get(manage).content.decode().split('id="rated"')[1]
    assert "A dismissed paper" not in rated and "A liked paper" in rated


def test_removing_needs_the_subscribers_own_manage_link(client: Client) -> None:
    owner, stranger = SubscriberFactory(), SubscriberFactory()
    paper = PaperFactory()
    submit(client, feedback_url(owner, paper.pk))
    strangers_page = url("manage", stranger, Purpose.MANAGE)

    client.post(
        f"{strangers_page}feedback/remove/",
        {"paper": paper.pk, "csrfmiddlewaretoken": csrf_token(client.get(strangers_page))},
    )
    response = client.post("/manage/bad-token/feedback/remove/", {"paper": paper.pk})

    assert response.status_code in (403, 404)
    assert choice_of(owner, paper) == Feedback.Choice.MORE


def test_changing_the_interests_fits_the_model_again(
    client: Client, django_capture_on_commit_callbacks
) -> None:
    # A model holds the interests as its first positive: after an edit it must not keep the old ones.
    subscriber = SubscriberFactory(interests="graph neural networks", timezone="UTC")
    liked = PaperFactory(title="Message passing on molecules", abstract="Graph networks for chemistry.")
    with django_capture_on_commit_callbacks(execute=True):
        submit(client, feedback_url(subscriber, liked.pk, "more"))
    before = ReaderModel.objects.get(subscriber=subscriber)
    manage_url = url("manage", subscriber, Purpose.MANAGE)

    with django_capture_on_commit_callbacks(execute=True):
        submit(client, manage_url, manage_data(interests="speech recognition for low-resource languages"))

    after = ReaderModel.objects.get(subscriber=subscriber)
    assert after.fitted_at > before.fitted_at
    assert after.features != before.features  # the new interests' words are among its features

    with django_capture_on_commit_callbacks(execute=True):
        submit(client, manage_url, manage_data(interests="speech recognition for low-resource languages"))

    assert ReaderModel.objects.get(subscriber=subscriber).fitted_at == after.fitted_at  # unchanged: no fit
