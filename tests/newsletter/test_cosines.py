"""What reader feedback costs a chunk, kept exact: the liked papers' cosines kept per process
(newsletter.services.cosines), the models' scores by `dense_product`, the liked papers taken from the
chunk's candidates (profiles_complete). Each must give what the plain computation gives, bit for bit."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone
from scipy import sparse

from newsletter.models import Feedback
from newsletter.selectors import profiles_build
from newsletter.services import cosines
from newsletter.services.candidates import CandidatePool, paper_vectors
from newsletter.services.learning.reader_model import reader_model_fit
from newsletter.services.ranking import dense_product
from papers.selectors import papers_candidates, topic_names
from tests.factories import SubscriberFactory


def test_dense_product_is_the_sparse_product_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    a = sparse.random(30, 2000, density=0.05, format="csr", dtype=np.float32, random_state=rng)
    b = sparse.random(2000, 40, density=0.05, format="csr", dtype=np.float32, random_state=rng)
    a = a.tolil()
    a[3, :] = 0  # an empty row
    a = a.tocsr()

    assert dense_product(a, b).tobytes() == (a @ b).toarray().tobytes()
    empty = sparse.csr_matrix((0, 2000), dtype=np.float32)
    assert dense_product(empty, b).shape == (0, 40)


@pytest.mark.django_db
def test_kept_cosines_are_the_products_and_computed_once_per_paper_and_pool(
    sample_papers, monkeypatch
) -> None:
    now = timezone.now()
    pool = CandidatePool(papers_candidates(since=now - timedelta(days=1), limit=1000), topic_names(), now)
    papers = pool.papers[:12]
    kept = cosines.CosineRows(max_cells=10**6)
    computed: list[int] = []

    def counting(groups):
        computed.append(sum(len(g) for g in groups))
        return paper_vectors(groups)

    monkeypatch.setattr(cosines, "paper_vectors", counting)
    first = kept.rows(papers[:8], pool)
    again = kept.rows(papers[4:12], pool)

    direct = (paper_vectors([papers])[0] @ pool.vectors_t).toarray()
    assert first.tobytes() == direct[:8].tobytes()
    assert again.tobytes() == direct[4:12].tobytes()
    assert computed == [8, 4]  # the second call computed only the papers not seen before

    edited = dataclasses.replace(papers[0], abstract=papers[0].abstract + " Edited.")
    (row,) = kept.rows([edited], pool)
    assert computed == [8, 4, 1]
    assert row.tobytes() == (paper_vectors([[edited]])[0] @ pool.vectors_t).toarray()[0].tobytes()

    # Another pool (other papers, or the same papers with an edited text): computed again.
    smaller = CandidatePool(pool.papers[1:], topic_names(), now)
    assert kept.rows(papers[4:5], smaller).shape == (1, len(pool) - 1)
    assert computed == [8, 4, 1, 1]


@pytest.mark.django_db
def test_kept_cosines_stay_within_their_bound(sample_papers) -> None:
    now = timezone.now()
    pool = CandidatePool(papers_candidates(since=now - timedelta(days=1), limit=1000), topic_names(), now)
    kept = cosines.CosineRows(max_cells=5 * len(pool))
    for start in range(0, 30, 3):
        rows = kept.rows(pool.papers[start : start + 3], pool)
        assert rows.shape == (3, len(pool))
    assert kept._cells <= 5 * len(pool)


@pytest.mark.django_db
def test_liked_papers_among_the_candidates_are_not_read_again(
    sample_papers, django_assert_num_queries
) -> None:
    reader = SubscriberFactory(interests="")
    liked = sample_papers[:3]
    Feedback.objects.bulk_create(
        Feedback(subscriber=reader, paper=p, choice=Feedback.Choice.MORE) for p in liked
    )
    reader_model_fit(subscriber_id=reader.pk)
    now = timezone.now()
    candidates = papers_candidates(since=now - timedelta(days=1), limit=1000)
    since = [now - timedelta(days=1)]

    (alone,) = profiles_build(subscribers=[reader], since=since)
    # topics, library titles, reader models; no papers query (no title to look up, all liked known)
    with django_assert_num_queries(3):
        (known,) = profiles_build(subscribers=[reader], since=since, known=candidates)

    assert [(p.id, p.title, p.abstract) for p in known.taste.liked] == [
        (p.id, p.title, p.abstract) for p in alone.taste.liked
    ]
    assert len(known.taste.liked) == 3
