from __future__ import annotations

from functools import lru_cache

from django import forms

from newsletter.models import Subscriber, available_timezones
from newsletter.selectors import Preferences, preferences_stored
from newsletter.services.addresses import email_normalize
from papers.models import Topic

MAX_PAPERS = 30


@lru_cache(maxsize=1)
def timezone_choices() -> list[tuple[str, str]]:
    return [(name, name.replace("_", " ")) for name in sorted(available_timezones())]


class PreferencesForm(forms.Form):
    topics = forms.ModelMultipleChoiceField(
        queryset=Topic.objects.all(), required=False, widget=forms.CheckboxSelectMultiple
    )
    interests = forms.CharField(
        required=False,
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text='Describe what you want to read, e.g. "papers like retrieval-augmented generation '
        'for code", or a few keywords separated by commas.',
    )
    excluded_keywords = forms.CharField(
        required=False,
        max_length=500,
        label="Never show papers mentioning",
        help_text="Comma-separated words or phrases.",
    )
    followed_authors = forms.CharField(
        required=False,
        max_length=1000,
        label="Authors you follow",
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Names separated by commas or lines: their new papers are always in your digest.",
    )
    frequency = forms.ChoiceField(choices=Subscriber.Frequency.choices, initial=Subscriber.Frequency.DAILY)
    weekday = forms.TypedChoiceField(
        choices=Subscriber.Weekday.choices, coerce=int, initial=0, label="Day (weekly digests)"
    )
    send_hour = forms.TypedChoiceField(
        choices=[(h, f"{h:02d}:00") for h in range(24)], coerce=int, initial=8, label="Time of day"
    )
    timezone = forms.ChoiceField(choices=(), initial="UTC", label="Time zone")
    papers_per_digest = forms.IntegerField(min_value=1, max_value=MAX_PAPERS, initial=10)
    email_format = forms.ChoiceField(choices=Subscriber.Format.choices, initial=Subscriber.Format.HTML)
    notify_empty = forms.BooleanField(
        required=False, label="Weekly: tell me when there is nothing new (instead of skipping the email)"
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["timezone"].choices = timezone_choices()

    def preferences(self) -> Preferences:
        data = self.cleaned_data
        return Preferences(
            topic_ids=tuple(sorted(t.pk for t in data["topics"])),
            interests=data["interests"].strip(),
            excluded_keywords=data["excluded_keywords"].strip(),
            followed_authors=data["followed_authors"].strip(),
            frequency=data["frequency"],
            weekday=data["weekday"],
            send_hour=data["send_hour"],
            timezone=data["timezone"],
            papers_per_digest=data["papers_per_digest"],
            email_format=data["email_format"],
            notify_empty=data["notify_empty"],
        )

    @classmethod
    def initial_for(cls, subscriber: Subscriber) -> dict:
        return {"topics": list(subscriber.topics.all()), **preferences_stored(subscriber)}


class EmailForm(forms.Form):
    """An address plus a honeypot: hidden from people by CSS, filled in by naive bots."""

    email = forms.CharField(max_length=254, label="Email address", widget=forms.EmailInput)
    website = forms.CharField(
        required=False,
        max_length=200,
        label="Leave this field empty",
        widget=forms.TextInput(attrs={"tabindex": "-1", "autocomplete": "off"}),
    )

    def clean_email(self) -> str:
        return email_normalize(self.cleaned_data["email"])

    def is_bot(self) -> bool:
        return bool(self.cleaned_data.get("website"))


class SubscribeForm(EmailForm, PreferencesForm):
    field_order = ["email"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            # Only a blank sign-up form takes the browser's time zone (static/js/timezone.js); a
            # re-displayed form or the manage page keeps the zone the person chose.
            self.fields["timezone"].widget.attrs["data-detect"] = "browser"


class RequestLinkForm(EmailForm):
    """ "Send me a new link" (/manage/)."""
