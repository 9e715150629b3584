"""The chunk index on Qdrant (qdrant-client's local mode, the one-machine default; the same calls
go to a server by URL) with the real MiniLM embeddings: re-indexing replaces a document's chunks,
redelivery changes nothing, and the three search modes find what they should."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from llmops.core.embedding import Embedder
from llmops.core.errors import InvalidArgument, NotFound
from llmops.retrieval.domain.chunking import ChunkingConfig, chunk_text
from llmops.retrieval.domain.tokens import ModelTokens
from llmops.retrieval.index import ChunkIndex, IndexedDocument, Mode, point_id

CONFIG = ChunkingConfig(max_tokens=48, overlap_tokens=0)

FACTS = """# The Zorblat reactor

The Zorblat reactor on Kepler station runs on crystallised helium-3 and was commissioned in 2091.

# Staff

The chief engineer of Kepler station is Imogen Varga, who keeps a pet axolotl named Pickle.

# Supplies

Kepler station receives its water from comet ice harvested by the tug Ptarmigan every forty days.
"""


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture
def index(tmp_path: Path, embedder: Embedder) -> Iterator[ChunkIndex]:
    client = QdrantClient(path=str(tmp_path / "qdrant"))
    yield ChunkIndex(client, embedder, embedder.dimension)
    client.close()


def _document(text: str, document_id: str = "kepler") -> IndexedDocument:
    tokens = ModelTokens()
    chunks = chunk_text(text, CONFIG, tokens.count, tokens.offsets)
    return IndexedDocument("station", document_id, "wiki", "snap-1", chunks)


def test_reindexing_a_changed_document_leaves_exactly_its_new_chunks(index: ChunkIndex) -> None:
    first = _document(FACTS)
    assert index.index("station", [first]) == 3
    other = _document("# Elsewhere\n\nMars has two moons.", "mars")
    index.index("station", [other])
    # Redelivery: the same document again changes nothing.
    assert index.index("station", [first]) == 3
    assert index.count("station") == 4 and index.count("station", "kepler") == 3
    changed = _document(FACTS.split("# Supplies")[0].replace("2091", "2093"))
    assert index.index("station", [changed]) == 2
    assert index.count("station", "kepler") == 2 and index.count("station", "mars") == 1
    hits = index.search("station", "When was the reactor commissioned?", 10, filter={"document_id": "kepler"})
    assert sorted(h.chunk_id for h in hits) == sorted(point_id("station", "kepler", p) for p in (0, 1))
    assert any("2093" in h.text for h in hits) and not any(
        "2091" in h.text or "comet" in h.text for h in hits
    )


@pytest.mark.parametrize("mode", list(Mode))
def test_each_mode_finds_the_chunk_that_holds_the_fact(index: ChunkIndex, mode: Mode) -> None:
    index.index("station", [_document(FACTS)])
    index.index("station", [_document("# Elsewhere\n\nMars has two moons, Phobos and Deimos.", "mars")])
    questions = {
        "Who is the chief engineer of Kepler station?": "Imogen Varga",
        "Where does the station's water come from?": "comet ice",
        "What fuel does the Zorblat reactor use?": "helium-3",
    }
    for question, fact in questions.items():
        (best, *_rest) = index.search("station", question, 2, mode=mode)
        assert fact in best.text, (mode, question, best.text)
        assert best.payload["document_id"] == "kepler" and best.payload["heading"]


def test_bad_searches_get_clear_errors(index: ChunkIndex) -> None:
    index.index("station", [_document(FACTS)])
    with pytest.raises(InvalidArgument, match="query is empty"):
        index.search("station", "  ", 3)
    with pytest.raises(NotFound, match="collection 'nowhere' does not exist; known: station"):
        index.search("nowhere", "reactor", 3)
    with pytest.raises(InvalidArgument, match="unknown field\\(s\\) colour"):
        index.search("station", "reactor", 3, filter={"colour": "red"})
    assert index.collections() == ["station"]


def test_settings_refuse_an_overlap_of_half_a_chunk_or_more() -> None:
    from pydantic import ValidationError

    from llmops.retrieval.settings import Settings

    with pytest.raises(ValidationError, match="LLMOPS_RETRIEVAL_CHUNK_OVERLAP_TOKENS \\(100\\)"):
        Settings(chunk_tokens=200, chunk_overlap_tokens=100, auth={"auth_disabled": True})


def test_a_batch_is_embedded_together_and_a_document_given_twice_keeps_its_last_version(
    index: ChunkIndex,
) -> None:
    old = _document(FACTS)
    newer = _document("# Kepler station\n\nKepler station was renamed Varga station in 2095.")
    other = _document("# Elsewhere\n\nMars has two moons.", "mars")
    assert index.index("station", [old, other, newer]) == 2
    assert index.count("station", "kepler") == 1 and index.count("station", "mars") == 1
    (hit,) = index.search("station", "renamed", 1, filter={"document_id": "kepler"})
    assert "Varga station" in hit.text
