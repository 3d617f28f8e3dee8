"""Cosines of given papers (the ones readers liked or named) with a candidate pool, kept per process.

Every chunk of a dispatch round ranks nearly the same pool, and readers like the same recent papers
(at 10,000 subscribers, the 60 readers with a model in a chunk liked ~350 distinct papers, the same
ones chunk after chunk). Their cosines with the pool were a product per chunk, a third of what the
feedback models cost a chunk.

A cosine computed once is exactly the one the next chunk would compute: the sparse product sums a
pair's shared features in column order, whatever other rows the two matrices hold, and a paper's
TF-IDF row depends on its title and abstract only (the IDF is fixed per process). So rows are kept
per pool, a pool being its papers with their text fingerprints (CandidatePool.key), and per paper by
its id and text: an edited paper, in the pool or liked, is computed again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from newsletter.services.candidates import CandidatePool, paper_vectors, text_fingerprint
from papers.selectors import CandidatePaper

# A row is 4 bytes per pool paper: 16 MB at most, e.g. 8,000 papers' rows with a 500-paper pool,
# 800 with the largest pool (NEWSLETTER_MAX_CANDIDATES).
MAX_CELLS = 4_000_000


class CosineRows:
    """Cosine rows of papers with the latest pools, least recently used dropped first."""

    def __init__(self, max_cells: int) -> None:
        self.max_cells = max_cells
        self._cells = 0
        # pool key -> (paper id, text fingerprint) -> the paper's cosines with that pool's papers
        self._pools: OrderedDict[tuple, dict[tuple[int, int], np.ndarray]] = OrderedDict()

    def rows(self, papers: Sequence[CandidatePaper], pool: CandidatePool) -> np.ndarray:
        """len(papers) x len(pool): each paper's cosines with every paper of the pool (float32). A
        paper may come more than once (readers like the same papers): it is computed once."""
        if not papers:
            return np.zeros((0, len(pool)), dtype=np.float32)
        kept = self._pools.setdefault(pool.key, {})
        self._pools.move_to_end(pool.key)
        keys = [(paper.id, text_fingerprint(paper)) for paper in papers]
        missing = {key: paper for key, paper in zip(keys, papers, strict=True) if key not in kept}
        if missing:
            vectors, _ = paper_vectors([list(missing.values())])
            computed = (vectors @ pool.vectors_t).toarray()
            for key, row in zip(missing, computed, strict=True):
                kept[key] = row
            self._cells += len(missing) * len(pool)
        result = np.array([kept[key] for key in keys], dtype=np.float32).reshape(len(keys), len(pool))
        self._bound()
        return result

    def _bound(self) -> None:
        """Drop the least recently used pools, then the oldest rows of the latest one."""
        while self._cells > self.max_cells and self._pools:
            key, rows = next(iter(self._pools.items()))
            if len(self._pools) > 1:
                del self._pools[key]
                self._cells -= sum(len(row) for row in rows.values())
                continue
            while self._cells > self.max_cells and rows:
                self._cells -= len(rows.pop(next(iter(rows))))
            break


_cosines = CosineRows(max_cells=MAX_CELLS)


def pool_cosines(
    groups: Sequence[Sequence[CandidatePaper]], pool: CandidatePool
) -> tuple[np.ndarray, np.ndarray]:
    """Cosines of the groups' papers with the pool, a row per paper of each group, and where each
    group's rows start. Each distinct paper is computed once per process and pool."""
    offsets = np.zeros(len(groups) + 1, dtype=np.int64)
    np.cumsum([len(group) for group in groups], out=offsets[1:])
    return _cosines.rows([paper for group in groups for paper in group], pool), offsets
