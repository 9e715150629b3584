"""A batch's outcome: its record, its dedup memory and its events commit together, and nothing after
the commit can turn a stored success into a failure."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from llmops.contracts import topics
from llmops.core.artifacts import ArtifactStore
from llmops.core.documents import SourceDocument
from llmops.ingestion.batches import Ingestor
from llmops.ingestion.domain.pipeline import PipelineConfig
from llmops.ingestion.store.batches import SUCCEEDED, BatchStore

TEXT = "The station's reactor was serviced on Tuesday; the crew logged every reading by hand. " * 4


async def _items(texts: list[str]) -> AsyncIterator[SourceDocument]:
    for position, text in enumerate(texts, 1):
        yield SourceDocument(text=text, position=position, source=f"doc-{position}")


async def test_a_committed_batch_stays_succeeded_when_the_index_cannot_be_saved(tmp_path: Path) -> None:
    store = BatchStore(f"sqlite:///{tmp_path / 'ingestion.sqlite'}")
    # The index's folder is a file: saving it fails after the batch has committed.
    (tmp_path / "blocked").write_text("not a folder")
    ingestor = Ingestor(
        PipelineConfig(),
        store,
        ArtifactStore(f"file://{tmp_path / 'artifacts'}"),
        tmp_path / "blocked" / "idx",
    )
    record = await ingestor.run("docs", _items([TEXT, TEXT.replace("Tuesday", "a cold Friday morning")]))
    assert record.state == SUCCEEDED and store.get(record.batch_id).state == SUCCEEDED  # type: ignore[union-attr]
    queued = [q.topic for q in store.outbox.pending()]  # type: ignore[union-attr]
    assert queued.count(topics.DOCUMENTS_CLEANED) == record.counts["kept"] >= 1
    assert queued[-1] == topics.INGESTION_BATCH_COMPLETED
    assert len(store.load_hashes()) == record.counts["kept"]
    store.close()
