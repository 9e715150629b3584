"""Chunking and BM25 term weights on real text: the Markdown READMEs and licence files that ship with
the installed packages (not written for this test)."""

from __future__ import annotations

import math
import random
import site
from collections import Counter
from pathlib import Path

import pytest

from llmops.retrieval.domain.chunking import ChunkingConfig, chunk_text, sections
from llmops.retrieval.domain.sparse import document_vector, query_vector, terms
from llmops.retrieval.domain.tokens import ModelTokens

CONFIG = ChunkingConfig(max_tokens=128, overlap_tokens=24)


def _real_documents(limit: int = 60) -> list[tuple[str, str]]:
    """(name, text) of Markdown and licence files of installed packages, in a stable order."""
    root = Path(site.getsitepackages()[0])
    paths = (
        sorted(root.glob("*/README.md"))
        + sorted(root.glob("*.dist-info/licenses/*"))
        + sorted(root.glob("*.dist-info/LICENSE*"))
    )
    out = []
    for path in paths:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if 2_000 <= len(text) <= 200_000:
            out.append((str(path.relative_to(root)), text))
    assert len(out) >= 20, f"only {len(out)} real documents found under {root}"
    return out[:limit]


@pytest.fixture(scope="module")
def tokens() -> ModelTokens:
    return ModelTokens()


@pytest.fixture(scope="module")
def chunked(tokens: ModelTokens) -> list[tuple[str, str, list]]:
    return [
        (name, text, chunk_text(text, CONFIG, tokens.count, tokens.offsets))
        for name, text in _real_documents()
    ]


def test_chunks_fit_the_model_cover_the_text_and_keep_to_their_section(
    chunked: list[tuple[str, str, list]], tokens: ModelTokens
) -> None:
    total = overlapping = 0
    for name, text, chunks in chunked:
        assert chunks, name
        covered = bytearray(len(text))
        heading_starts = [start for _, start, _ in sections(text)]
        for chunk in chunks:
            # Fits the embedding model: counted with its own tokenizer, room for [CLS] and [SEP].
            assert tokens.count(chunk.text) <= CONFIG.max_tokens, (name, chunk.position, chunk.tokens)
            assert text[chunk.start : chunk.end] == chunk.text
            # Never across a heading: no section starts strictly inside a chunk.
            assert not any(chunk.start < s < chunk.end for s in heading_starts), (name, chunk.position)
            covered[chunk.start : chunk.end] = b"\x01" * (chunk.end - chunk.start)
        missing = [i for i, c in enumerate(text) if not c.isspace() and not covered[i]]
        assert not missing, f"{name}: {len(missing)} characters in no chunk, first at {missing[0]}"
        for before, after in zip(chunks, chunks[1:], strict=False):
            if after.start < before.end:
                overlapping += 1
                assert before.heading == after.heading
                assert tokens.count(text[after.start : before.end]) <= CONFIG.overlap_tokens + 2
        assert [c.position for c in chunks] == list(range(len(chunks)))
        total += len(chunks)
    mean = sum(c.tokens for _, _, cs in chunked for c in cs) / total
    print(
        f"{len(chunked)} real documents -> {total} chunks, {mean:.0f} tokens on average, "
        f"{overlapping} consecutive pairs overlapping"
    )
    assert overlapping > 0


def test_chunking_is_deterministic_and_headings_are_kept(tokens: ModelTokens) -> None:
    text = "Intro line.\n\n# Install\n\nRun pip.\n\nUsage\n-----\n\nCall it.\n"
    chunks = chunk_text(text, CONFIG, tokens.count, tokens.offsets)
    assert [(c.heading, c.text) for c in chunks] == [
        ("", "Intro line."),
        ("Install", "# Install\n\nRun pip."),
        ("Usage", "Usage\n-----\n\nCall it."),
    ]
    assert chunk_text(text, CONFIG, tokens.count, tokens.offsets) == chunks
    with pytest.raises(ValueError, match="overlap_tokens"):
        ChunkingConfig(max_tokens=64, overlap_tokens=40)


def test_bm25_finds_a_chunk_from_its_rarest_words_on_real_text(chunked: list[tuple[str, str, list]]) -> None:
    chunks = [c.text for _, _, cs in chunked for c in cs]
    vectors = [dict(zip(v.indices, v.values, strict=True)) for v in map(document_vector, chunks)]
    df = Counter(i for v in vectors for i in v)
    n = len(vectors)

    def idf(i: int) -> float:  # Qdrant's IDF modifier (BM25's)
        return math.log(1 + (n - df[i] + 0.5) / (df[i] + 0.5))

    rng = random.Random(7)
    at1 = at3 = asked = 0
    for pick in rng.sample(range(n), 200):
        words = sorted(set(terms(chunks[pick])), key=lambda t: df[query_vector(t).indices[0]])[:3]
        if len(words) < 3:
            continue
        query = query_vector(" ".join(words))
        weights = list(zip(query.indices, query.values, strict=True))
        scores = [sum(w * v.get(i, 0.0) * idf(i) for i, w in weights) for v in vectors]
        # The source's rank; chunks with its exact text (licences repeat) or its score tie with it.
        rank = sum(1 for j in range(n) if scores[j] > scores[pick] and chunks[j] != chunks[pick])
        asked += 1
        at1 += rank == 0
        # Its neighbours share words with it (the overlap), so the top 3 is the fair test.
        at3 += rank < 3
    print(
        f"BM25 on {n} real chunks, {asked} queries of each chunk's three rarest words: "
        f"source first {at1 / asked:.2f}, in the top 3 {at3 / asked:.2f}"
    )
    assert asked >= 150 and at3 / asked >= 0.9 and at1 / asked >= 0.7


def test_bm25_weights_saturate_with_frequency_and_ignore_stop_words() -> None:
    assert terms("The cat and THE hat") == ["cat", "hat"]
    once = dict(zip(*vars(document_vector("kafka broker")).values(), strict=True))
    thrice = dict(zip(*vars(document_vector("kafka kafka kafka broker")).values(), strict=True))
    (kafka,) = query_vector("kafka").indices
    assert once[kafka] < thrice[kafka] < 3 * once[kafka]
    assert query_vector("the a of").indices == []
    assert document_vector("Kafka") == document_vector("kafka")
