from __future__ import annotations

from functools import lru_cache

from django import forms

from newsletter.models import Subscriber, available_timezones
from newsletter.selectors import Preferences, preferences_stored
from newsletter.services.addresses import email_normalize
from newsletter.services.learning.library_formats import (
    MAX_BYTES,
    MAX_ENTRIES,
    LibraryError,
    LibraryItem,
    library_parse,
)
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


class LibraryForm(forms.Form):
    """Papers the reader has read (learning.library): pasted, or a BibTeX / RIS export. Read here,
    so every rejected line is shown next to its field; nothing is imported while any is."""

    library_text = forms.CharField(
        required=False,
        # Characters, a bound above the 2 MB limit that library_parse checks in bytes.
        max_length=MAX_BYTES,
        label="Papers you have read",
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
        help_text="One per line: an arXiv id or link (abs or pdf), a DOI, or a title. Papers we have "
        "count as “More like this”; the others teach your digest what you read.",
    )
    library_file = forms.FileField(
        required=False,
        label="Or upload your library",
        widget=forms.ClearableFileInput(attrs={"accept": ".bib,.bibtex,.ris,.txt"}),
        help_text=f"A BibTeX (.bib) or RIS (.ris) export from Zotero, Mendeley or your reference "
        f"manager: at most {MAX_ENTRIES} papers and {MAX_BYTES // 1024 // 1024} MB.",
    )

    def clean(self) -> dict:
        cleaned = super().clean()
        self._library: list[LibraryItem] = []
        upload = cleaned.get("library_file")
        sources = [("library_text", cleaned.get("library_text") or "")]
        if upload:
            if upload.size > MAX_BYTES:
                self.add_error("library_file", f"The file is larger than {MAX_BYTES // 1024 // 1024} MB.")
            else:
                sources.append(("library_file", upload.read()))
        for name, data in sources:
            if not (data.strip() if isinstance(data, str) else data):
                continue
            try:
                parsed = library_parse(data=data)
            except LibraryError as exc:
                self.add_error(name, str(exc))
                continue
            for rejected in parsed.rejected:
                self.add_error(name, f"Line {rejected.line}: {rejected.reason}.")
            self._library.extend(parsed.items)
        if len(self._library) > MAX_ENTRIES:
            self.add_error(None, f"{len(self._library)} papers: at most {MAX_ENTRIES} can be added at once.")
        return cleaned

    def library_items(self) -> list[LibraryItem]:
        """The entries read, once the form is valid."""
        return self._library if self.is_valid() else []


class SubscribeForm(EmailForm, LibraryForm, PreferencesForm):
    field_order = ["email"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            # Only a blank sign-up form takes the browser's time zone (static/js/timezone.js); a
            # re-displayed form or the manage page keeps the zone the person chose.
            self.fields["timezone"].widget.attrs["data-detect"] = "browser"


class RequestLinkForm(EmailForm):
    """ "Send me a new link" (/manage/)."""
