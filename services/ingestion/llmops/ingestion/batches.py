"""Running one ingestion batch: clean every document, write the snapshot, record and announce.

Batches run one at a time (the dedup memory is shared). Within a batch, nothing already accepted is
lost: a bad item is counted and reported with its position and reason, and the batch goes on. The
dedup memory (exact hashes and the near-duplicate index) is committed only when the batch succeeds,
so a failed batch leaves it as it was.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from llmops.contracts.events import DocumentCleaned, Event, IngestionBatchCompleted
from llmops.core.artifacts import ArtifactStore
from llmops.core.convert import copy_fields
from llmops.core.documents import ReadError, SourceDocument
from llmops.core.sql import utc_now
from llmops.ingestion.domain.dedup import NearDuplicateIndex
from llmops.ingestion.domain.pipeline import (
    BatchCounts,
    CleanedDocument,
    CleaningPipeline,
    PipelineConfig,
    RawDocument,
)
from llmops.ingestion.store.batches import FAILED, RECEIVING, SUCCEEDED, BatchRecord, BatchStore

log = logging.getLogger(__name__)

_DOC_NAMESPACE = uuid.UUID("3b0c5d1e-8f2a-4c6b-9e7d-1a2b3c4d5e6f")
_CHUNK = 256


class _BatchHashes:
    """The exact-dedup memory as the pipeline sees it during one batch: committed plus this batch's."""

    def __init__(self, committed: set[str]) -> None:
        self.committed = committed
        self.new: set[str] = set()

    def __contains__(self, content_hash: object) -> bool:
        return content_hash in self.committed or content_hash in self.new

    def add(self, content_hash: str) -> None:
        self.new.add(content_hash)


def snapshot_id_of(dataset: str, docs: list[CleanedDocument]) -> str:
    """Content address of a snapshot: the dataset and the (id, content hash) of every document, in order."""
    digest = hashlib.sha256(dataset.encode())
    for doc in docs:
        digest.update(b"\0" + doc.doc_id.encode() + b"\0" + doc.content_hash.encode())
    return "snap-" + digest.hexdigest()[:32]


class Ingestor:
    def __init__(
        self,
        config: PipelineConfig,
        store: BatchStore,
        artifacts: ArtifactStore,
        index_path: Path,
    ) -> None:
        self.config = config
        self.store = store
        self.artifacts = artifacts
        self.index_path = index_path
        self.index = self._load_index()
        self.hashes = store.load_hashes()
        self._lock = asyncio.Lock()

    def _load_index(self) -> NearDuplicateIndex:
        if self.index_path.exists():
            return NearDuplicateIndex.load(self.index_path, verify_margin=self.config.near_dup_verify_margin)
        return self.config.new_index()

    def get(self, batch_id: str) -> BatchRecord | None:
        return self.store.get(batch_id)

    async def run(
        self,
        dataset: str,
        items: AsyncIterator[SourceDocument | ReadError],
        *,
        source_description: str = "",
        metadata: dict[str, str] | None = None,
    ) -> BatchRecord:
        """Ingest ``items`` as one batch of ``dataset`` and return its record (SUCCEEDED or FAILED)."""
        async with self._lock:
            record = BatchRecord(
                batch_id=f"batch-{uuid.uuid4()}",
                dataset=dataset,
                state=RECEIVING,
                source_description=source_description,
                metadata=dict(metadata or {}),
            )
            await asyncio.to_thread(self.store.create, record)
            hashes = _BatchHashes(self.hashes)
            pipeline = CleaningPipeline(self.config, self.index, hashes)
            kept: list[CleanedDocument] = []
            try:
                chunk: list[SourceDocument | ReadError] = []
                async for item in items:
                    chunk.append(item)
                    if len(chunk) >= _CHUNK:
                        kept.extend(await asyncio.to_thread(self._clean, pipeline, dataset, chunk))
                        chunk = []
                if chunk:
                    kept.extend(await asyncio.to_thread(self._clean, pipeline, dataset, chunk))
                record.snapshot_id, record.snapshot_uri = await asyncio.to_thread(
                    self._write_snapshot, dataset, kept
                )
                record.state = SUCCEEDED
                self._close(record, pipeline)
                # The record, the dedup memory and every event commit together (the outbox): a batch
                # that shows SUCCEEDED is announced, also when Kafka is away at that moment.
                await asyncio.to_thread(
                    self.store.finish,
                    record,
                    hashes=[(d.content_hash, d.doc_id, record.batch_id) for d in kept],
                    announce=self._events(record, kept),
                )
            except Exception as exc:
                log.exception("batch %s failed", record.batch_id)
                record.state = FAILED
                pipeline.counts.record_error(0, "batch", f"batch failed: {exc}")
                # The in-memory index may hold this batch's documents: go back to the committed one.
                self.index = await asyncio.to_thread(self._load_index)
                self._close(record, pipeline)
                await asyncio.to_thread(self.store.finish, record)
                return record
            # Committed: the batch succeeded whatever happens next. Only kept documents are
            # remembered, in memory as on disk.
            self.hashes |= {d.content_hash for d in kept}
            try:
                await asyncio.to_thread(self.index.save, self.index_path)
            except OSError:
                # Exact dedup (in the database) still holds; the near-duplicate index on disk lags
                # behind the one in memory until the next batch saves it.
                log.exception("batch %s: cannot save the near-duplicate index", record.batch_id)
            return record

    @staticmethod
    def _close(record: BatchRecord, pipeline: CleaningPipeline) -> None:
        """Set the outcome's counts, errors and end time on ``record`` (before it is stored)."""
        record.counts = _counts(pipeline.counts)
        record.errors = [asdict(e) for e in pipeline.counts.item_errors]
        record.completed_at = utc_now()

    def _clean(
        self, pipeline: CleaningPipeline, dataset: str, items: list[SourceDocument | ReadError]
    ) -> list[CleanedDocument]:
        kept = []
        for item in items:
            if isinstance(item, ReadError):
                pipeline.record_error(item.position, item.source, item.reason)
                continue
            doc_id = item.doc_id or str(
                uuid.uuid5(_DOC_NAMESPACE, f"{dataset}|{item.source}|{item.position}")
            )
            outcome = pipeline.process(copy_fields(RawDocument, item, doc_id=doc_id))
            if outcome.kept and outcome.doc is not None:
                kept.append(outcome.doc)
        return kept

    def _write_snapshot(self, dataset: str, docs: list[CleanedDocument]) -> tuple[str, str]:
        snapshot_id = snapshot_id_of(dataset, docs)
        key = f"snapshots/{dataset}/{snapshot_id}.parquet"
        if self.artifacts.exists(key):  # content-addressed: the same content is already there
            return snapshot_id, self.artifacts.uri(key)
        table = pa.table(
            {
                "document_id": [d.doc_id for d in docs],
                "text": [d.text for d in docs],
                "content_hash": [d.content_hash for d in docs],
                "source": [d.source for d in docs],
                "position": pa.array([d.position for d in docs], type=pa.int64()),
                "metadata": [json.dumps(dict(d.metadata), sort_keys=True) for d in docs],
                "pii_redacted": [json.dumps(dict(d.pii_counts), sort_keys=True) for d in docs],
            },
            metadata={"dataset": dataset, "snapshot_id": snapshot_id},
        )
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        return snapshot_id, self.artifacts.write_bytes(key, buffer.getvalue())

    @staticmethod
    def _events(record: BatchRecord, docs: list[CleanedDocument]) -> list[Event]:
        events: list[Event] = [
            copy_fields(
                DocumentCleaned,
                d,
                document_id=d.doc_id,
                dataset=record.dataset,
                batch_id=record.batch_id,
                snapshot_id=record.snapshot_id,
                pii_redacted=d.pii_counts,
            )
            for d in docs
        ]
        events.append(
            IngestionBatchCompleted(
                batch_id=record.batch_id,
                dataset=record.dataset,
                snapshot_id=record.snapshot_id,
                snapshot_uri=record.snapshot_uri,
                counts={k: v for k, v in record.counts.items() if isinstance(v, int)},
            )
        )
        return events


def _counts(counts: BatchCounts) -> dict:
    return {k: v for k, v in asdict(counts).items() if k != "item_errors"}
