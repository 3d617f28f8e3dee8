"""A reader's library: reading pasted lines, BibTeX and RIS (learning.library_formats), importing
them (learning.library) and what the imported entries do to the reader model and the digest."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from newsletter.library_selectors import library_titles
from newsletter.models import Feedback, LibraryEntry, ReaderModel, Subscriber
from newsletter.selectors import (
    Preferences,
    digest_preview,
    papers_already_sent,
    profiles_build,
)
from newsletter.services.learning.library import (
    library_clear,
    library_entry_remove,
    library_import,
)
from newsletter.services.learning.library_formats import (
    MAX_BYTES,
    MAX_ENTRIES,
    LibraryError,
    LibraryItem,
    library_parse,
)
from newsletter.services.learning.reader_model import reader_model_fit
from newsletter.services.subscription import subscriber_subscribe
from papers.models import Paper
from tests.factories import PaperFactory, SubscriberFactory

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "library"

MOLECULES = (
    "We study equivariant message passing neural networks for molecular property prediction, "
    "protein graphs and drug discovery on molecular graphs."
)


def _parse(name: str):
    return library_parse(data=(FIXTURES / name).read_bytes())


# --- reading -----------------------------------------------------------------------------------


def test_a_bibtex_export_gives_ids_titles_and_abstracts_with_their_lines() -> None:
    parsed = _parse("library.bib")

    assert parsed.format == "bibtex"
    assert not parsed.rejected
    assert [(i.line, i.arxiv_id, i.doi) for i in parsed.items] == [
        (3, "1706.03762", ""),  # eprint + archivePrefix
        (11, "", "10.1145/1234567.7654321"),
        (19, "2401.04088", ""),  # Google Scholar: journal = {arXiv preprint arXiv:...}
        (25, "", ""),
    ]
    assert parsed.items[0].title == "Attention Is All You Need"  # braces and LaTeX decoded
    assert parsed.items[1].abstract.startswith("We study equivariant message passing")
    assert parsed.items[3].title == "Reinforcement Learning: An Introduction"


def test_a_ris_export_gives_the_same_papers() -> None:
    parsed = _parse("library.ris")

    assert parsed.format == "ris"
    assert not parsed.rejected
    assert [(i.line, i.arxiv_id, i.doi, i.title) for i in parsed.items] == [
        (1, "1706.03762", "", "Attention Is All You Need"),  # from the versioned arXiv link
        (7, "", "10.1145/1234567.7654321", "Message Passing on Molecular Graphs with Equivariant Networks"),
    ]
    assert "equivariant" in parsed.items[1].abstract


@pytest.mark.parametrize(
    ("line", "arxiv_id", "doi", "title"),
    [
        ("2401.12345", "2401.12345", "", ""),
        ("2401.12345v3", "2401.12345", "", ""),
        ("arXiv:2401.12345v2", "2401.12345", "", ""),
        ("arXiv:hep-th/9901001", "hep-th/9901001", "", ""),
        ("https://arxiv.org/abs/2401.12345v2", "2401.12345", "", ""),
        ("https://arxiv.org/pdf/2401.12345v1.pdf", "2401.12345", "", ""),
        ("http://export.arxiv.org/abs/2401.12345", "2401.12345", "", ""),
        ("arxiv.org/pdf/2401.12345", "2401.12345", "", ""),
        ("https://huggingface.co/papers/2401.12345", "2401.12345", "", ""),
        ("10.1038/Nature14539", "", "10.1038/nature14539", ""),
        ("doi:10.1000/xyz123.", "", "10.1000/xyz123", ""),
        ("https://doi.org/10.1145/3292500", "", "10.1145/3292500", ""),
        ("https://doi.org/10.48550/arXiv.2401.12345", "2401.12345", "", ""),  # arXiv's own DOI
        (
            "  Deep Residual Learning for Image Recognition  ",
            "",
            "",
            "Deep Residual Learning for Image Recognition",
        ),
    ],
)
def test_a_pasted_line_is_an_arxiv_id_a_doi_or_a_title(
    line: str, arxiv_id: str, doi: str, title: str
) -> None:
    (item,) = library_parse(data=line).items

    assert (item.arxiv_id, item.doi, item.title) == (arxiv_id, doi, title)


def test_every_rejected_line_has_its_number_and_a_reason() -> None:
    pasted = "\n".join(
        [
            "2401.12345",
            "# a comment line is skipped",
            "https://example.com/some/paper",
            "2401.123",
            "Mamba",
            "",
            "arXiv:not-an-id",
            "Attention Is All You Need",
        ]
    )

    parsed = library_parse(data=pasted)

    assert [i.line for i in parsed.items] == [1, 8]
    reasons = {r.line: r.reason for r in parsed.rejected}
    assert set(reasons) == {3, 4, 5, 7}
    assert "only arXiv, Hugging Face paper and DOI links" in reasons[3]
    assert "is not an arXiv id" in reasons[4]
    assert "too short for a title" in reasons[5]
    assert "is not an arXiv id" in reasons[7]


def test_bad_bibtex_and_ris_entries_are_rejected_by_line() -> None:
    bibtex = _parse("bad_entries.bib")
    ris = _parse("no_end.ris")

    assert [i.line for i in bibtex.items] == [1, 14]
    assert [(r.line, r.reason) for r in bibtex.rejected] == [
        (5, "no title, arXiv id or DOI"),
        (10, "not valid BibTeX (an unclosed brace or quote?)"),
    ]
    assert [i.title for i in ris.items] == ["Closed Entry About Language Models"]
    assert [(r.line, r.reason) for r in ris.rejected] == [(5, "the entry has no end line (ER  - )")]


def test_a_field_given_twice_rejects_its_bibtex_entry() -> None:
    parsed = library_parse(data="@article{a, title={One Title Here}, title={Another Title}}\n")

    assert not parsed.items
    assert parsed.rejected[0].reason == "a field appears twice in the entry (title)"


def test_limits_500_entries_and_2_mb() -> None:
    lines = [f"2401.{n:05d}" for n in range(MAX_ENTRIES)]
    assert len(library_parse(data="\n".join(lines)).items) == MAX_ENTRIES

    with pytest.raises(LibraryError, match="501 entries: at most 500"):
        library_parse(data="\n".join([*lines, "2402.00001"]))
    with pytest.raises(LibraryError, match=r"the limit is 2\.0 MB"):
        library_parse(data=b"% padding\n" * (MAX_BYTES // 10 + 1))
    with pytest.raises(LibraryError, match=r"larger than 2\.0 MB"):
        library_parse(data="x" * (MAX_BYTES + 1))


def test_a_file_that_is_not_text_or_holds_no_paper_is_an_error() -> None:
    with pytest.raises(LibraryError, match="not UTF-8 text"):
        _parse("not_text.bib")
    with pytest.raises(LibraryError, match="No paper found"):
        library_parse(data="# only a comment\n\n")


# --- importing ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_papers_we_have_become_likes_and_the_others_are_kept_by_kind() -> None:
    subscriber = SubscriberFactory()
    attention = PaperFactory(title="Attention Is All You Need", external_id="1706.03762")
    by_title = PaperFactory(title="Sparse Mixture of Experts at Scale")
    items = _parse("library.bib").items

    report = library_import(subscriber=subscriber, items=items)

    assert (report.liked, report.abstracts, report.titles, report.waiting) == (2, 1, 1, 0)
    likes = Feedback.objects.filter(subscriber=subscriber, choice=Feedback.Choice.MORE)
    assert set(likes.values_list("paper_id", flat=True)) == {attention.pk, by_title.pk}
    entries = {e.key: e for e in LibraryEntry.objects.filter(subscriber=subscriber)}
    assert entries["arxiv:1706.03762"].paper == attention
    assert entries["arxiv:2401.04088"].paper == by_title  # its arXiv id is unknown; its title is not
    assert entries["doi:10.1145/1234567.7654321"].abstract.startswith("We study equivariant")
    assert entries["title:reinforcement learning an introduction"].paper is None


@pytest.mark.django_db
def test_importing_again_adds_only_what_is_new() -> None:
    subscriber = SubscriberFactory()
    PaperFactory(title="Attention Is All You Need", external_id="1706.03762")
    library_import(subscriber=subscriber, items=_parse("library.bib").items)

    # The RIS export holds the same two papers (one by its arXiv link, one by its DOI).
    report = library_import(
        subscriber=subscriber,
        items=[*_parse("library.ris").items, LibraryItem(line=9, arxiv_id="2405.00001")],
    )

    assert (report.added, report.skipped, report.waiting) == (1, 2, 1)
    assert LibraryEntry.objects.filter(subscriber=subscriber).count() == 5


@pytest.mark.django_db
def test_a_paper_named_twice_in_one_input_is_added_once() -> None:
    subscriber = SubscriberFactory()
    PaperFactory(title="Attention Is All You Need", external_id="1706.03762")
    items = library_parse(
        data="1706.03762\nAttention is all you need\nhttps://arxiv.org/abs/1706.03762v5"
    ).items

    report = library_import(subscriber=subscriber, items=items)

    assert (report.liked, report.skipped) == (1, 2)
    assert Feedback.objects.filter(subscriber=subscriber).count() == 1


@pytest.mark.django_db
def test_removing_an_entry_removes_its_like_and_nothing_else() -> None:
    subscriber = SubscriberFactory()
    paper = PaperFactory(title="Attention Is All You Need", external_id="1706.03762")
    disliked = PaperFactory(title="A paper the reader dismissed")
    Feedback.objects.create(subscriber=subscriber, paper=disliked, choice=Feedback.Choice.LESS)
    library_import(
        subscriber=subscriber, items=library_parse(data="1706.03762\nSome Unknown Paper Title").items
    )
    entry = LibraryEntry.objects.get(subscriber=subscriber, paper=paper)
    other = SubscriberFactory()

    assert library_entry_remove(subscriber=other, entry_id=entry.pk) is False  # not theirs
    assert library_entry_remove(subscriber=subscriber, entry_id=entry.pk) is True

    assert not Feedback.objects.filter(subscriber=subscriber, paper=paper).exists()
    assert Feedback.objects.filter(subscriber=subscriber, paper=disliked).exists()
    assert list(LibraryEntry.objects.filter(subscriber=subscriber).values_list("title", flat=True)) == [
        "Some Unknown Paper Title"
    ]
    assert library_entry_remove(subscriber=subscriber, entry_id=entry.pk) is False  # already gone
    assert library_clear(subscriber=subscriber) == 1
    assert not LibraryEntry.objects.exists()


# --- what the library does to the digest -------------------------------------------------------


@pytest.mark.django_db
def test_abstracts_of_unknown_papers_are_positives_the_model_ranks_a_similar_paper_higher() -> None:
    similar = PaperFactory(title="Graph networks for molecular property prediction", abstract=MOLECULES)
    other = PaperFactory(
        title="A popular paper about cooking",
        abstract="Recipes, kitchens and the chemistry of bread baking at home.",
        upvotes=5000,
    )
    reader = SubscriberFactory()
    library_import(subscriber=reader, items=_parse("library.bib").items)  # no paper of ours in it

    assert not Feedback.objects.filter(subscriber=reader).exists()
    model = reader_model_fit(subscriber_id=reader.pk)

    assert model is not None and model.ratings == 1  # the one abstract
    picks = [pick.paper.id for pick in digest_preview(subscriber=reader, now=timezone.now())]
    assert picks[0] == similar.pk
    assert other.pk not in picks[:1]
    # Without the library the same reader chose nothing: the popular paper came first.
    library_clear(subscriber=reader)
    assert reader_model_fit(subscriber_id=reader.pk) is None
    assert not ReaderModel.objects.filter(subscriber=reader).exists()
    assert digest_preview(subscriber=reader, now=timezone.now())[0].paper.id == other.pk


@pytest.mark.django_db
def test_titles_alone_join_the_interests_ranking_reads() -> None:
    reader = SubscriberFactory(interests="speech recognition")
    PaperFactory(title="Graph networks for molecules", abstract=MOLECULES)
    library_import(
        subscriber=reader,
        items=[
            *library_parse(
                data="Reinforcement Learning: An Introduction\n2405.00001\nGraph networks for molecules"
            ).items,
            LibraryItem(line=4, title="An Unknown Paper With Its Abstract", abstract=MOLECULES),
        ],
    )

    # Not the paper we have (a like), nor the one with an abstract (a positive of the model).
    assert library_titles(subscriber_ids=[reader.pk]) == {
        reader.pk: ["Reinforcement Learning: An Introduction"]
    }
    (profile,) = profiles_build(subscribers=[reader], since=[timezone.now() - timedelta(days=1)])
    assert profile.interests == "speech recognition\nReinforcement Learning: An Introduction"


@pytest.mark.django_db
def test_a_paper_of_the_library_is_never_picked_for_the_digest() -> None:
    reader = SubscriberFactory()
    known = PaperFactory(title="Graph networks for molecules", abstract=MOLECULES)
    neighbour = PaperFactory(title="Equivariant graph networks for proteins", abstract=MOLECULES)
    library_import(subscriber=reader, items=library_parse(data="Graph networks for molecules").items)
    reader_model_fit(subscriber_id=reader.pk)

    assert papers_already_sent(subscriber_ids=[reader.pk], paper_ids=[known.pk, neighbour.pk]) == {
        (reader.pk, known.pk)
    }
    picks = [pick.paper.id for pick in digest_preview(subscriber=reader, now=timezone.now())]
    assert picks[0] == neighbour.pk
    assert known.pk not in picks


@pytest.mark.django_db
def test_a_known_paper_deleted_later_leaves_its_entry() -> None:
    reader = SubscriberFactory()
    paper = PaperFactory(title="Graph networks for molecules", abstract=MOLECULES)
    library_import(subscriber=reader, items=library_parse(data="Graph networks for molecules").items)

    Paper.objects.filter(pk=paper.pk).delete()

    entry = LibraryEntry.objects.get(subscriber=reader)
    assert (entry.paper, entry.title) == (None, "Graph networks for molecules")


@pytest.mark.django_db
def test_a_second_unconfirmed_sign_up_replaces_the_library_of_the_first() -> None:
    PaperFactory(title="Attention Is All You Need", external_id="1706.03762")
    first = library_parse(data="1706.03762\nSome Unknown Paper Title").items
    second = library_parse(data="Another Unknown Paper Title").items

    subscriber_subscribe(email="ada@example.org", preferences=Preferences(), library=first)
    subscriber_subscribe(email="ada@example.org", preferences=Preferences(), library=second)

    (reader,) = Subscriber.objects.all()
    assert reader.status == Subscriber.Status.PENDING
    assert list(LibraryEntry.objects.values_list("title", flat=True)) == ["Another Unknown Paper Title"]
    assert not Feedback.objects.exists()  # the first sign-up's like went with its entry
