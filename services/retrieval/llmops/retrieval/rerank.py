"""A second stage after search: the index fetches more candidates than asked for, a reranker reorders
them, and the first ``top_k`` are returned.

``none`` keeps the first stage's order. ``mmr`` (maximal marginal relevance) trades relevance for
diversity: each pick is the candidate with the best ``(1 - diversity) * relevance - diversity *
(its highest cosine to a chunk already picked)``, relevance being the first stage's score scaled to
[0, 1] over the candidates, so the first stage's best chunk always comes first and a near-copy of a
chunk already picked moves down. Scores stay the first stage's (what ``score_threshold`` applied to);
the order is the reranker's. No cross-encoder ships with any installed package, and nothing here
downloads weights; ``tests/bench/retrieval.py`` measures what a reranker does to nDCG@10.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from llmops.retrieval.index import Hit

RERANKERS = ("none", "mmr")


class Reranker(Protocol):
    """Reorders a first stage's hits (best first) and keeps ``top_k`` of them."""

    # Whether the hits must carry their dense vectors (``Hit.vector``).
    needs_vectors: bool

    def candidates(self, top_k: int) -> int:
        """How many hits the first stage should fetch for a request of ``top_k``."""
        ...

    def rerank(self, query: str, hits: Sequence[Hit], top_k: int) -> list[Hit]: ...


class FirstStageOrder:
    """The ``none`` reranker: the first stage's hits as they come."""

    needs_vectors = False

    def candidates(self, top_k: int) -> int:
        return top_k

    def rerank(self, query: str, hits: Sequence[Hit], top_k: int) -> list[Hit]:
        return list(hits[:top_k])


@dataclass(frozen=True)
class MaximalMarginalRelevance:
    """The ``mmr`` reranker: diverse hits, from ``candidates_factor * top_k`` candidates."""

    diversity: float = 0.3
    candidates_factor: int = 4
    needs_vectors = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.diversity <= 1.0:
            raise ValueError(f"diversity must be in [0, 1], got {self.diversity}")
        if self.candidates_factor < 1:
            raise ValueError(f"candidates_factor must be at least 1, got {self.candidates_factor}")

    def candidates(self, top_k: int) -> int:
        return top_k * self.candidates_factor

    def rerank(self, query: str, hits: Sequence[Hit], top_k: int) -> list[Hit]:
        if len(hits) <= 1 or top_k <= 1:
            return list(hits[:top_k])
        if any(h.vector is None for h in hits):
            raise ValueError("mmr needs each hit's dense vector; search with the reranker's needs_vectors")
        vectors = np.array([h.vector for h in hits], dtype=np.float32)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        # Opposite vectors count as unrelated, not as a bonus.
        similarity = np.clip(vectors @ vectors.T, 0.0, 1.0)
        scores = np.array([h.score for h in hits], dtype=np.float64)
        spread = scores.max() - scores.min()
        relevance = (scores - scores.min()) / spread if spread > 0 else np.ones_like(scores)
        picked = [int(np.argmax(relevance))]
        closest = similarity[picked[0]].astype(np.float64)
        left = np.ones(len(hits), dtype=bool)
        left[picked[0]] = False
        while len(picked) < min(top_k, len(hits)):
            value = (1.0 - self.diversity) * relevance - self.diversity * closest
            value[~left] = -np.inf
            best = int(np.argmax(value))
            picked.append(best)
            left[best] = False
            closest = np.maximum(closest, similarity[best])
        return [hits[i] for i in picked]


def build_reranker(name: str, *, diversity: float = 0.3, candidates_factor: int = 4) -> Reranker:
    """The reranker called ``name`` (one of RERANKERS)."""
    if name == "none":
        return FirstStageOrder()
    if name == "mmr":
        return MaximalMarginalRelevance(diversity, candidates_factor)
    raise ValueError(f"unknown reranker {name!r}; known: {', '.join(RERANKERS)}")
