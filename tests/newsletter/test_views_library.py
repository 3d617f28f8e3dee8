"""The library on the sign-up and manage pages, through Django's test client: pasting and uploading,
rejected lines shown next to their field with nothing imported, removal, export, erasure, and a
sign-up's library taking effect when its address is confirmed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from newsletter.models import Feedback, LibraryEntry, ReaderModel, Subscriber
from newsletter.services.learning.library_formats import MAX_BYTES
from newsletter.services.tokens import Purpose
from tests.factories import PaperFactory, SubscriberFactory
from tests.newsletter.helpers import csrf_token, link_token, signup_data, submit, url

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "library"


def _upload(name: str, content: bytes | None = None) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content if content is not None else (FIXTURES / name).read_bytes())


def _add(client: Client, subscriber: Subscriber, **data):
    page = client.get(url("manage", subscriber, Purpose.MANAGE))
    return client.post(
        url("library_add", subscriber, Purpose.MANAGE), {**data, "csrfmiddlewaretoken": csrf_token(page)}
    )


# --- manage page -------------------------------------------------------------------------------


def test_the_manage_page_shows_the_library_form_with_labels(client: Client) -> None:
    subscriber = SubscriberFactory()

    html = client.get(url("manage", subscriber, Purpose.MANAGE)).content.decode()

    assert 'id="library"' in html
    assert 'enctype="multipart/form-data"' in html
    assert '<label for="id_library_text">Papers you have read' in html
    assert '<label for="id_library_file">Or upload your library' in html
    assert 'aria-describedby="id_library_file_helptext"' in html


def test_pasting_adds_entries_likes_known_papers_and_fits_the_model(
    client: Client, django_capture_on_commit_callbacks
) -> None:
    subscriber = SubscriberFactory()
    paper = PaperFactory(title="Attention Is All You Need", external_id="1706.03762")

    with django_capture_on_commit_callbacks(execute=True):
        response = _add(
            client, subscriber, library_text="https://arxiv.org/abs/1706.03762v7\nSome Paper We Do Not Have"
        )

    assert response.status_code == 302
    assert response["Location"].endswith("#library")
    assert Feedback.objects.get(subscriber=subscriber).paper == paper
    assert LibraryEntry.objects.filter(subscriber=subscriber).count() == 2
    assert ReaderModel.objects.filter(subscriber=subscriber).exists()  # fitted by the queued task
    page = client.get(response["Location"]).content.decode()
    assert "Added 2 papers to your library (1 papers we have, now liked; 1 titles added" in page
    assert "Liked:</span>" in page and "Some Paper We Do Not Have" in page


def test_uploading_a_bibtex_export_imports_it(client: Client) -> None:
    subscriber = SubscriberFactory()

    response = _add(client, subscriber, library_file=_upload("library.bib"))

    assert response.status_code == 302
    assert LibraryEntry.objects.filter(subscriber=subscriber).count() == 4


def test_uploading_a_ris_export_imports_it(client: Client) -> None:
    subscriber = SubscriberFactory()

    response = _add(client, subscriber, library_file=_upload("library.ris"))

    assert response.status_code == 302
    assert set(LibraryEntry.objects.values_list("key", flat=True)) == {
        "arxiv:1706.03762",
        "doi:10.1145/1234567.7654321",
    }


def test_a_rejected_line_shows_its_number_and_reason_next_to_the_field_and_nothing_is_imported(
    client: Client,
) -> None:
    subscriber = SubscriberFactory()
    PaperFactory(title="Attention Is All You Need", external_id="1706.03762")

    response = _add(client, subscriber, library_text="1706.03762\n<b>x</b>\nhttps://example.com/p")

    assert response.status_code == 200
    html = response.content.decode()
    assert "Nothing was added" in html
    assert "Line 2: too short for a title" in html
    assert "Line 3: only arXiv, Hugging Face paper and DOI links can be read" in html
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html  # the input is kept, escaped
    assert 'aria-describedby="id_library_text_error' in html or 'aria-invalid="true"' in html
    assert not LibraryEntry.objects.exists()
    assert not Feedback.objects.exists()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad_entries.bib", None, "Line 5: no title, arXiv id or DOI."),
        ("not_text.bib", None, "The file is not UTF-8 text."),
        ("big.bib", b"%" * (MAX_BYTES + 1), "The file is larger than 2 MB."),
        ("many.txt", "\n".join(f"2401.{n:05d}" for n in range(501)).encode(), "501 entries: at most 500"),
        ("empty.ris", b"\n\n", "No paper found"),
    ],
)
def test_a_bad_file_is_a_form_error_and_changes_nothing(
    client: Client, name: str, content: bytes | None, message: str
) -> None:
    subscriber = SubscriberFactory()

    response = _add(client, subscriber, library_file=_upload(name, content))

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not LibraryEntry.objects.exists()


def test_an_entry_is_removed_by_a_post_with_csrf_for_its_owner_only(client: Client) -> None:
    subscriber = SubscriberFactory()
    paper = PaperFactory(title="Attention Is All You Need", external_id="1706.03762")
    _add(client, subscriber, library_text="1706.03762")
    entry = LibraryEntry.objects.get()
    remove_url = url("library_remove", subscriber, Purpose.MANAGE)
    page = client.get(url("manage", subscriber, Purpose.MANAGE))
    stranger = SubscriberFactory()

    assert client.get(remove_url).status_code == 405
    assert Client(enforce_csrf_checks=True).post(remove_url, {"entry": entry.pk}).status_code == 403
    # Another reader's link cannot remove it.
    client.post(
        url("library_remove", stranger, Purpose.MANAGE),
        {"entry": entry.pk, "csrfmiddlewaretoken": csrf_token(page)},
    )
    assert LibraryEntry.objects.filter(pk=entry.pk).exists()

    response = client.post(remove_url, {"entry": entry.pk, "csrfmiddlewaretoken": csrf_token(page)})

    assert response.status_code == 302
    assert not LibraryEntry.objects.exists()
    assert not Feedback.objects.filter(paper=paper).exists()
    assert "Removed from your library" in client.get(response["Location"]).content.decode()


def test_the_export_holds_the_library(client: Client) -> None:
    subscriber = SubscriberFactory()
    PaperFactory(
        title="Attention Is All You Need", external_id="1706.03762", url="https://arxiv.org/abs/1706.03762"
    )
    _add(client, subscriber, library_file=_upload("library.bib"))

    data = json.loads(client.get(url("export", subscriber, Purpose.MANAGE)).content)

    by_title = {e["title"]: e for e in data["library"]}
    assert by_title["Attention Is All You Need"]["paper_url"] == "https://arxiv.org/abs/1706.03762"
    assert by_title["Message Passing on Molecular Graphs with Equivariant Networks"]["doi"] == (
        "10.1145/1234567.7654321"
    )
    assert by_title["Message Passing on Molecular Graphs with Equivariant Networks"]["abstract"]


def test_delete_everything_erases_the_library(client: Client) -> None:
    subscriber = SubscriberFactory()
    _add(client, subscriber, library_file=_upload("library.bib"))
    assert LibraryEntry.objects.exists()
    delete_url = url("delete", subscriber, Purpose.MANAGE)

    client.post(delete_url, {"csrfmiddlewaretoken": csrf_token(client.get(delete_url))})

    assert not Subscriber.objects.exists()
    assert not LibraryEntry.objects.exists()


# --- sign-up -----------------------------------------------------------------------------------


def test_a_sign_up_library_waits_for_the_confirmation_then_the_model_is_fitted(
    client: Client, send_emails, mailoutbox, django_capture_on_commit_callbacks
) -> None:
    paper = PaperFactory(title="Attention Is All You Need", external_id="1706.03762")
    page = client.get("/subscribe/")
    assert '<label for="id_library_text">' in page.content.decode()

    with send_emails():
        response = client.post(
            "/subscribe/",
            {
                **signup_data("ada@example.org", interests=""),
                "library_text": "arXiv:1706.03762",
                "library_file": _upload("library.ris"),
                "csrfmiddlewaretoken": csrf_token(page),
            },
        )

    assert response.status_code == 302
    subscriber = Subscriber.objects.get()
    assert subscriber.status == Subscriber.Status.PENDING
    # Both inputs, once each: the RIS file names the same arXiv paper.
    assert LibraryEntry.objects.filter(subscriber=subscriber).count() == 2
    assert Feedback.objects.get(subscriber=subscriber).paper == paper
    assert not ReaderModel.objects.exists()

    confirm_url = f"/confirm/{link_token(mailoutbox[0], 'confirm')}/"
    with django_capture_on_commit_callbacks(execute=True):
        confirmed = submit(client, confirm_url)

    assert confirmed.status_code == 302
    subscriber.refresh_from_db()
    assert subscriber.status == Subscriber.Status.ACTIVE
    model = ReaderModel.objects.get(subscriber=subscriber)
    assert model.liked == [paper.pk] and model.ratings == 2  # the like and the abstract


def test_a_sign_up_with_a_rejected_line_shows_the_form_again_and_sends_nothing(
    client: Client, mailoutbox
) -> None:
    response = submit(client, "/subscribe/", {**signup_data("ada@example.org"), "library_text": "Mamba"})

    assert response.status_code == 200
    assert "Line 1: too short for a title" in response.content.decode()
    assert not Subscriber.objects.exists()
    assert not mailoutbox


def test_a_sign_up_for_an_unsubscribed_address_adds_its_library_only_when_confirmed(
    client: Client, send_emails, mailoutbox
) -> None:
    owner = SubscriberFactory(
        email="ada@example.org", status=Subscriber.Status.UNSUBSCRIBED, next_send_at=None
    )
    kept = PaperFactory(title="A paper the owner kept in the library")
    new = PaperFactory(title="Attention Is All You Need", external_id="1706.03762")
    _add_for_owner = LibraryEntry.objects.create(
        subscriber=owner, key="title:x", title=kept.title, paper=kept
    )

    with send_emails():
        submit(client, "/subscribe/", {**signup_data("ada@example.org"), "library_text": "1706.03762"})

    owner.refresh_from_db()
    assert owner.status == Subscriber.Status.UNSUBSCRIBED
    assert list(LibraryEntry.objects.filter(subscriber=owner)) == [_add_for_owner]
    assert owner.pending_preferences["library"][0]["arxiv_id"] == "1706.03762"

    submit(client, f"/confirm/{link_token(mailoutbox[0], 'confirm')}/")

    owner.refresh_from_db()
    assert owner.status == Subscriber.Status.ACTIVE and owner.pending_preferences is None
    assert set(LibraryEntry.objects.filter(subscriber=owner).values_list("paper_id", flat=True)) == {
        kept.pk,
        new.pk,
    }


def test_a_strangers_later_sign_up_with_another_library_voids_the_owners_link(
    client: Client, send_emails, mailoutbox
) -> None:
    """The confirmation link covers the library too (tokens bind a link to what it activates)."""
    for library in ("Attention Is All You Need", "Some Paper A Stranger Wants Liked"):
        with send_emails():
            submit(
                Client(enforce_csrf_checks=True),
                "/subscribe/",
                {**signup_data("ada@example.org"), "library_text": library},
            )
    owners_link, strangers_link = (f"/confirm/{link_token(m, 'confirm')}/" for m in mailoutbox)

    assert client.get(owners_link).status_code == 404
    assert client.get(strangers_link).status_code == 200
    assert list(LibraryEntry.objects.values_list("title", flat=True)) == ["Some Paper A Stranger Wants Liked"]
