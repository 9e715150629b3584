"""The reranking stage: "none" keeps search's order, "mmr" moves near-copies of a chunk already picked
down, both return at most top_k hits, and a reranker the service does not know stops it at start."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from qdrant_client import QdrantClient

from llmops.core.embedding import Embedder
from llmops.retrieval.domain.chunking import Chunk
from llmops.retrieval.index import ChunkIndex, Hit, IndexedDocument, Mode
from llmops.retrieval.rerank import FirstStageOrder, MaximalMarginalRelevance, build_reranker
from llmops.retrieval.settings import Settings


def _hit(name: str, score: float, vector: list[float]) -> Hit:
    return Hit(name, name.rstrip("'"), f"text of {name}", score, {}, vector)


# Three near-copies of one chunk score highest, two different chunks a little lower, and one
# unrelated chunk far lower.
HITS = [
    _hit("a", 0.90, [1.0, 0.0, 0.0]),
    _hit("a'", 0.89, [0.99, 0.03, 0.0]),
    _hit("a''", 0.885, [0.99, 0.0, 0.03]),
    _hit("b", 0.85, [0.1, 1.0, 0.0]),
    _hit("c", 0.80, [0.0, 0.1, 1.0]),
    _hit("z", 0.30, [0.0, -1.0, 0.0]),
]


def test_none_returns_the_first_stage_order_cut_to_top_k() -> None:
    none = build_reranker("none")
    assert none.candidates(5) == 5 and not none.needs_vectors
    assert none.rerank("q", HITS, 3) == HITS[:3]
    assert none.rerank("q", HITS, 10) == HITS


def test_mmr_moves_near_copies_below_different_chunks_and_keeps_the_best_first() -> None:
    mmr = build_reranker("mmr", diversity=0.3, candidates_factor=4)
    assert mmr.candidates(5) == 20 and mmr.needs_vectors
    assert [h.chunk_id for h in HITS[:3]] == ["a", "a'", "a''"]
    assert [h.chunk_id for h in mmr.rerank("q", HITS, 3)] == ["a", "b", "c"]
    # All six come back, the copies after the different chunks; scores stay the first stage's.
    reranked = mmr.rerank("q", HITS, 10)
    assert [h.chunk_id for h in reranked] == ["a", "b", "c", "a'", "a''", "z"]
    assert {h.score for h in reranked} == {h.score for h in HITS}
    # Diversity 0 is relevance alone: the first stage's order.
    assert MaximalMarginalRelevance(diversity=0.0).rerank("q", HITS, 6) == HITS


@pytest.mark.parametrize("top_k", [1, 2, 4])
def test_mmr_returns_top_k_hits_without_repeats(top_k: int) -> None:
    reranked = MaximalMarginalRelevance().rerank("q", HITS, top_k)
    assert len(reranked) == top_k and len({h.chunk_id for h in reranked}) == top_k
    assert reranked[0].chunk_id == "a"


def test_mmr_refuses_hits_without_their_vectors() -> None:
    bare = [Hit(h.chunk_id, h.document_id, h.text, h.score, {}) for h in HITS]
    with pytest.raises(ValueError, match="dense vector"):
        MaximalMarginalRelevance().rerank("q", bare, 3)


def test_the_setting_picks_the_reranker_and_an_unknown_one_fails_at_start_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLMOPS_AUTH_DISABLED", "true")
    assert isinstance(Settings().build_reranker(), FirstStageOrder)
    monkeypatch.setenv("LLMOPS_RETRIEVAL_RERANKER", "mmr")
    monkeypatch.setenv("LLMOPS_RETRIEVAL_RERANK_CANDIDATES", "3")
    monkeypatch.setenv("LLMOPS_RETRIEVAL_MMR_DIVERSITY", "0.5")
    assert Settings().build_reranker() == MaximalMarginalRelevance(diversity=0.5, candidates_factor=3)
    monkeypatch.setenv("LLMOPS_RETRIEVAL_RERANKER", "cross-encoder")
    with pytest.raises(ValidationError, match="LLMOPS_RETRIEVAL_RERANKER 'cross-encoder' is not a reranker"):
        Settings()


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture
def client(tmp_path: Path) -> Iterator[QdrantClient]:
    client = QdrantClient(path=str(tmp_path / "qdrant"))
    yield client
    client.close()


def _single_chunk(document_id: str, text: str) -> IndexedDocument:
    return IndexedDocument("notes", document_id, "wiki", "snap-1", [Chunk(0, text, 0, len(text), "", 16)])


def test_search_applies_the_index_reranker(client: QdrantClient, embedder: Embedder) -> None:
    plain = ChunkIndex(client, embedder, embedder.dimension)
    # Strongly diverse, so that the result does not hang on how MiniLM and BM25 score the others.
    diverse = ChunkIndex(client, embedder, embedder.dimension, build_reranker("mmr", diversity=0.7))
    # One note ingested three times under different ids, and other notes.
    copy = "The Zorblat reactor on Kepler station runs on crystallised helium-3."
    plain.index(
        "notes",
        [
            *(_single_chunk(f"copy-{i}", copy) for i in range(3)),
            _single_chunk("staff", "Kepler station's reactor crew is led by Imogen Varga."),
            _single_chunk("mars", "Mars has two small moons, Phobos and Deimos."),
            _single_chunk("bread", "Sourdough bread rises slowly with a wild yeast starter."),
        ],
    )
    question = "What does the Zorblat reactor on Kepler station run on?"
    for mode in Mode:
        first = plain.search("notes", question, 3, mode=mode)
        assert all(h.document_id.startswith("copy-") for h in first), mode
        reranked = diverse.search("notes", question, 2, mode=mode)
        assert len(reranked) == 2 and reranked[0].document_id.startswith("copy-"), mode
        assert not reranked[1].document_id.startswith("copy-"), (mode, reranked[1].document_id)
