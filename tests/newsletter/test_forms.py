"""Sign-up, preference and "new link" forms: validation, limits, honeypot."""

from __future__ import annotations

import pytest

from newsletter.forms import PreferencesForm, RequestLinkForm, SubscribeForm
from newsletter.selectors import Preferences
from tests.factories import SubscriberFactory, TopicFactory

pytestmark = pytest.mark.django_db


def form_data(**overrides) -> dict:
    data = {
        "email": "ada@example.org",
        "interests": "",
        "excluded_keywords": "",
        "frequency": "daily",
        "weekday": "0",
        "send_hour": "8",
        "timezone": "UTC",
        "papers_per_digest": "10",
        "email_format": "html",
        "website": "",
    }
    data.update(overrides)
    return data


def test_valid_form_gives_normalized_email_and_preferences() -> None:
    topic = TopicFactory()
    form = SubscribeForm(
        form_data(
            email="  Ada@Bücher.DE ",
            topics=[str(topic.pk)],
            interests="  diffusion for audio  ",
            excluded_keywords=" crypto ",
            frequency="weekly",
            weekday="4",
            send_hour="7",
            timezone="America/Argentina/Buenos_Aires",
            papers_per_digest="30",
            email_format="text",
            notify_empty="on",
        )
    )

    assert form.is_valid(), form.errors
    assert form.cleaned_data["email"] == "ada@xn--bcher-kva.de"
    assert form.preferences() == Preferences(
        topic_ids=(topic.pk,),
        interests="diffusion for audio",
        excluded_keywords="crypto",
        frequency="weekly",
        weekday=4,
        send_hour=7,
        timezone="America/Argentina/Buenos_Aires",
        papers_per_digest=30,
        email_format="text",
        notify_empty=True,
    )
    assert form.is_bot() is False


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("email", "", "This field is required."),
        ("email", "ada@", "Enter a valid email address."),
        ("email", "a" * 250 + "@example.org", "at most 254 characters"),
        ("email", '"ada lovelace"@example.org', "Enter a valid email address."),
        ("interests", "x" * 1001, "at most 1000 characters"),
        ("excluded_keywords", "x" * 501, "at most 500 characters"),
        ("interests", "null\x00byte", "Null characters are not allowed."),
        ("website", "x" * 201, "at most 200 characters"),
        ("frequency", "hourly", "Select a valid choice."),
        ("weekday", "7", "Select a valid choice."),
        ("send_hour", "24", "Select a valid choice."),
        ("timezone", "Mars/Olympus_Mons", "Select a valid choice."),
        ("papers_per_digest", "0", "greater than or equal to 1"),
        ("papers_per_digest", "31", "less than or equal to 30"),
        ("papers_per_digest", "many", "Enter a whole number."),
        ("email_format", "pdf", "Select a valid choice."),
        ("topics", ["999999"], "Select a valid choice."),
    ],
)
def test_invalid_input_gives_an_error_on_the_field(field: str, value, message: str) -> None:
    form = SubscribeForm(form_data(**{field: value}))

    assert not form.is_valid()
    assert message in " ".join(form.errors[field])
    assert list(form.errors) == [field]


def test_limits_match_the_database_columns() -> None:
    """The form refuses what the columns could not hold, so a POST never ends in a database error."""
    from newsletter.models import Subscriber

    form = SubscribeForm()
    for name in ["email", "interests", "excluded_keywords"]:
        assert form.fields[name].max_length == Subscriber._meta.get_field(name).max_length


def test_honeypot_marks_bots() -> None:
    form = SubscribeForm(form_data(website="https://spam.example"))
    assert form.is_valid()
    assert form.is_bot() is True

    link_form = RequestLinkForm({"email": "ada@example.org", "website": "x"})
    assert link_form.is_valid()
    assert link_form.is_bot() is True


def test_only_a_blank_sign_up_form_takes_the_browsers_time_zone() -> None:
    """static/js/timezone.js pre-fills only a select marked data-detect="browser"."""
    marker = 'data-detect="browser"'
    assert marker in str(SubscribeForm()["timezone"])
    assert marker not in str(SubscribeForm(form_data(timezone="UTC"))["timezone"])
    subscriber = SubscriberFactory(timezone="UTC")
    assert marker not in str(PreferencesForm(initial=PreferencesForm.initial_for(subscriber))["timezone"])


def test_preferences_form_round_trips_a_subscriber() -> None:
    topic = TopicFactory()
    subscriber = SubscriberFactory(
        topics=[topic], interests="rl", frequency="weekly", weekday=2, timezone="Asia/Tokyo"
    )
    initial = PreferencesForm.initial_for(subscriber)
    data = {key: value for key, value in initial.items() if key not in ("topics", "notify_empty")}
    data["topics"] = [str(t.pk) for t in initial["topics"]]

    form = PreferencesForm(data)

    assert form.is_valid(), form.errors
    prefs = form.preferences()
    assert (prefs.topic_ids, prefs.interests, prefs.weekday, prefs.timezone) == (
        (topic.pk,),
        "rl",
        2,
        "Asia/Tokyo",
    )


def test_sign_up_and_manage_forms_take_followed_authors() -> None:
    sign_up = SubscribeForm(form_data(followed_authors="  Łukasz Kaiser,\nAda Lovelace  "))
    too_long = PreferencesForm(form_data(followed_authors="x" * 1001))

    assert sign_up.is_valid(), sign_up.errors
    assert sign_up.preferences().followed_authors == "Łukasz Kaiser,\nAda Lovelace"
    assert PreferencesForm.initial_for(SubscriberFactory(followed_authors="Ada"))["followed_authors"] == "Ada"
    assert not too_long.is_valid() and "followed_authors" in too_long.errors
