"""Property tests: whatever arrives at a form or a token URL, the answer is never a 500 and no
half-made row is left behind."""

from __future__ import annotations

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.models import Subscriber

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
