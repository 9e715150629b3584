"""Ingestion: documents in (gRPC, files, documents.raw), cleaned documents and snapshots out."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import AsyncIterator

from llmops.contracts.events import DocumentCleaned, DocumentRaw, IngestionBatchCompleted
from llmops.contracts.rpc.ingestion.v1 import ingestion_pb2_grpc
from llmops.core.artifacts import ArtifactStore
from llmops.core.convert import copy_fields
from llmops.core.documents import SourceDocument
from llmops.core.service import Deferred, Runtime
from llmops.ingestion.batches import Ingestor
from llmops.ingestion.domain.pipeline import PipelineConfig
from llmops.ingestion.domain.quality import QualityConfig
from llmops.ingestion.grpc_server import IngestionServicer, dataset_problem
from llmops.ingestion.settings import Settings
from llmops.ingestion.store.batches import FAILED, BatchStore

log = logging.getLogger(__name__)


def pipeline_config(s: Settings) -> PipelineConfig:
    """The pipeline and quality settings named alike in ``s``; the rest keep their defaults."""
    return copy_fields(PipelineConfig, s, quality=copy_fields(QualityConfig, s), pii_kinds=s.pii.kind_set())


class IngestionService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ingestor: Deferred[Ingestor] = Deferred("the ingestor")

    def register(self, runtime: Runtime) -> None:
        runtime.bus.publishes(DocumentCleaned, IngestionBatchCompleted)
        runtime.grpc.add(
            ingestion_pb2_grpc.add_IngestionServiceServicer_to_server,
            IngestionServicer(self.ingestor, self.settings.roots()),
            "llmops.ingestion.v1.IngestionService",
        )
        runtime.bus.consume_batches(
            DocumentRaw,
            self.settings.consumer_group("raw"),
            self._on_raw,
            max_records=self.settings.raw_batch_max_records,
            timeout_ms=self.settings.raw_batch_timeout_ms,
        )

    async def start(self, runtime: Runtime) -> None:
        s = self.settings
        for root in s.roots():
            root.mkdir(parents=True, exist_ok=True)
        store = runtime.own(BatchStore(s.resolved_database_url()))
        runtime.deliver_with(store)
        self.ingestor.set(
            Ingestor(
                pipeline_config(s),
                store,
                ArtifactStore(s.platform.resolved_artifacts_url()),
                s.platform.data_dir / "ingestion" / "near_dup_index",
            )
        )

    async def _on_raw(self, events: list[DocumentRaw]) -> None:
        by_dataset: dict[str, list[DocumentRaw]] = defaultdict(list)
        for event in events:
            if problem := dataset_problem(event.dataset):
                # The batch consumer retries a failing batch one by one, so only this event is dead-lettered.
                raise ValueError(problem)
            by_dataset[event.dataset].append(event)
        for dataset, group in by_dataset.items():

            async def items(group: list[DocumentRaw] = group) -> AsyncIterator[SourceDocument]:
                for position, e in enumerate(group, 1):
                    yield copy_fields(
                        SourceDocument,
                        e,
                        position=position,
                        doc_id=e.document_id,
                        source=e.source or f"kafka:{e.document_id}",
                    )

            record = await self.ingestor().run(dataset, items(), source_description="kafka:documents.raw")
            log.info("documents.raw batch %s: %s", record.batch_id, record.counts)
            if record.state == FAILED:
                # Not committed: the bus tries the batch again (and, past its budget, one by one).
                reasons = "; ".join(e["reason"] for e in record.errors if e.get("source") == "batch")
                raise RuntimeError(f"documents.raw batch {record.batch_id} failed: {reasons}")
