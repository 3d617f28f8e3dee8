"""Property tests: whatever arrives at a form or a token URL, the answer is never a 500 and no
half-made row is left behind."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.models import Subscriber
from newsletter.services.tokens import Purpose, ascii_id, feedback_token, token_make
from tests.factories import PaperFactory, SubscriberFactory

pytestmark = pytest.mark.django_db

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
text = st.text(max_size=300)
form_value = st.one_of(text, st.integers(-(10**12), 10**12).map(str), st.just(""), st.text(max_size=5000))
FIELDS = [
    "email", "topics", "interests", "excluded_keywords", "frequency", "weekday", "send_hour", "timezone",
    "papers_per_digest", "email_format", "notify_empty", "website",
]  # fmt: skip


@FUZZ
@given(data=st.dictionaries(st.sampled_from(FIELDS), form_value, max_size=len(FIELDS)))
def test_subscribe_form_never_errors(data: dict[str, str]) -> None:
    before = Subscriber.objects.count()
    response = Client().post("/subscribe/", data)
    assert response.status_code in (200, 302, 429)
    after = Subscriber.objects.count()
    if response.status_code == 200:  # the form came back with errors: nothing was written
        assert after == before
    else:
        assert after in (before, before + 1)
        for subscriber in Subscriber.objects.all():
            subscriber.full_clean(exclude=["topics"])  # every stored row is a valid row


@FUZZ
@given(email=form_value, website=st.one_of(st.just(""), text))
def test_request_link_form_never_errors(email: str, website: str) -> None:
    response = Client().post("/manage/", {"email": email, "website": website})
    assert response.status_code in (200, 302, 429)


token = st.one_of(
    st.text(
        alphabet=st.characters(blacklist_characters="/?#%", blacklist_categories=("Cs",)),
        min_size=1,
        max_size=300,
    ),
    st.from_regex(r"[A-Za-z0-9_\-]{10,60}:[A-Za-z0-9_\-]{4,8}:[A-Za-z0-9_\-]{20,50}", fullmatch=True),
)


@FUZZ
@given(
    token=token,
    path=st.sampled_from(
        ["confirm", "manage", "unsubscribe", "digests", "manage/{}/export", "manage/{}/delete"]
    ),
)
def test_token_urls_never_error(token: str, path: str) -> None:
    url = f"/{path.format(token)}/" if "{}" in path else f"/{path}/{token}/"
    client = Client()
    for method in (client.get, client.post):
        response = method(url)
        assert response.status_code in (200, 403, 404, 405), (url, response.status_code)


@FUZZ
@given(body=st.binary(max_size=500))
def test_one_click_unsubscribe_with_any_body(body: bytes) -> None:
    response = Client().post(
        "/unsubscribe/not-a-token/", data=body, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code in (403, 404)


# Ids in links and forms are ASCII digits only: "¹" and "²" pass str.isdigit() but not int(), and
# "٣" (Arabic-Indic three) passes both; each must be an invalid link, never a 500 or another id.
UNICODE_DIGITS = ["¹", "²", "٣", "\uff10", "\U0001d7d7", "①", "٣٣"]  # fullwidth 0, bold 9
DIGITS_LIKE = st.text(alphabet=st.characters(categories=("Nd", "No")), min_size=1, max_size=20)
TOKEN_ROUTES = [
    "confirm/{}/",
    "manage/{}/",
    "manage/{}/export/",
    "manage/{}/delete/",
    "manage/{}/resubscribe/",
    "manage/{}/feedback/remove/",
    "unsubscribe/{}/",
    "digests/{}/",
    "feedback/{}/more/",
    "feedback/{}/less/",
]


def _answers_of(path: str) -> list[int]:
    client = Client()
    return [client.get(path).status_code, client.post(path).status_code]


@pytest.mark.parametrize("route", TOKEN_ROUTES)
@pytest.mark.parametrize("digit", UNICODE_DIGITS)
def test_token_urls_with_unicode_digits_are_invalid_links(route: str, digit: str) -> None:
    subscriber = SubscriberFactory()
    paper = PaperFactory()
    signature = feedback_token(subscriber=subscriber, paper_id=paper.pk).split(".")[2]
    for token in (f"{digit}.1.x", f"1.{digit}.x", f"{digit}.{digit}.{signature}", digit):
        path = "/" + route.format(quote(token))
        assert set(_answers_of(path)) <= {404, 405}, path


@FUZZ
@given(first=DIGITS_LIKE, second=DIGITS_LIKE, route=st.sampled_from(TOKEN_ROUTES))
def test_token_urls_with_any_digits_never_error(first: str, second: str, route: str) -> None:
    path = "/" + route.format(quote(f"{first}.{second}.x"))
    assert set(_answers_of(path)) <= {404, 405}, path


@FUZZ
@given(paper=st.one_of(DIGITS_LIKE, st.sampled_from(["", "-1", "1e3", "9" * 19, "9" * 5000, " 1"])))
def test_removing_feedback_for_any_paper_value_never_errors(paper: str) -> None:
    subscriber = SubscriberFactory()
    token = token_make(subscriber=subscriber, purpose=Purpose.MANAGE)
    response = Client().post(f"/manage/{token}/feedback/remove/", {"paper": paper})
    assert response.status_code == 302


def test_removing_feedback_with_a_superscript_digit_is_a_no_op() -> None:
    subscriber = SubscriberFactory()
    token = token_make(subscriber=subscriber, purpose=Purpose.MANAGE)

    response = Client().post(f"/manage/{token}/feedback/remove/", {"paper": "²"})

    assert response.status_code == 302
    assert response["Location"] == f"/manage/{token}/"


@pytest.mark.parametrize("value", ["0", "7", "123456789012345678"])
def test_ascii_ids_are_read(value: str) -> None:
    assert ascii_id(value) == int(value)


@pytest.mark.parametrize("value", [*UNICODE_DIGITS, "", "-1", "+1", " 1", "1 ", "1_000", "9" * 19, None, 7])
def test_anything_else_is_not_an_id(value: object) -> None:
    assert ascii_id(value) is None
